use std::time::Instant;
fn main() {
    let cfg = furcate_synth::SynthConfig::default();
    for _ in 0..3 {
        let t = Instant::now();
        let imgs = furcate_synth::generate(&cfg).unwrap();
        let dt = t.elapsed().as_secs_f64();
        println!("{} images in {:.3}s = {:.0}/s", imgs.len(), dt, imgs.len() as f64 / dt);
    }
    let g = furcate_synth::Generator::new(&cfg).unwrap();
    for m in 0..7 {
        let t = Instant::now();
        let start = m * 500;
        let r = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| g.images(start..start + 500).unwrap());
        let dt = t.elapsed().as_secs_f64();
        println!("morph {} ({}) 1 thread: {:.1} us/img", m, r[0].morphology, dt / 500.0 * 1e6);
    }
    let dir = std::env::temp_dir().join("synth_speed_tmp");
    for _ in 0..2 {
        let t = Instant::now();
        let s = furcate_synth::write_dataset(&cfg, &dir, true).unwrap();
        println!("write: {:.3}s, {} bytes", t.elapsed().as_secs_f64(), s.png_bytes);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

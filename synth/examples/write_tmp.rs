use std::time::Instant;
fn main() {
    let cfg = furcate_synth::SynthConfig::default();
    let base = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let _ = std::fs::remove_dir_all(&base);
    for i in 0..3 {
        let dir = base.join(format!("d{i}"));
        let t = Instant::now();
        let s = furcate_synth::write_dataset(&cfg, &dir, false).unwrap();
        println!("fresh write: {:.3}s, {} bytes", t.elapsed().as_secs_f64(), s.png_bytes);
    }
    let t = Instant::now();
    furcate_synth::write_dataset(&cfg, &base.join("d0"), true).unwrap();
    println!("forced write: {:.3}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    std::fs::remove_dir_all(base.join("d1")).unwrap();
    println!("remove: {:.3}s", t.elapsed().as_secs_f64());
    std::fs::remove_dir_all(&base).unwrap();
}

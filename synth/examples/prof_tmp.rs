fn main() {
    let mut cfg = furcate_synth::SynthConfig::default();
    let which: Vec<usize> = std::env::args().skip(1).map(|s| s.parse::<usize>().unwrap()).collect();
    let all = cfg.morphologies.clone();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for m in which {
        cfg.morphologies = vec![all[m].clone()];
        cfg.images_per_class = 100;
        let g = furcate_synth::Generator::new(&cfg).unwrap();
        let mut best = f64::INFINITY;
        for _ in 0..7 {
            let t = std::time::Instant::now();
            let r = pool.install(|| g.images(0..g.len()).unwrap());
            best = best.min(t.elapsed().as_secs_f64() / r.len() as f64);
        }
        println!("{m} {}: {:.1} us", all[m].name, best * 1e6);
    }
}

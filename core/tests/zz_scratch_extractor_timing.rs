use furcate_core::extractor::frozen::BackboneConfig;
use furcate_core::extractor::resnet50::ResNet50;
use furcate_core::runtime::DeviceSpec;
use furcate_core::{BuildContext, FeatureExtractor};
use std::time::Instant;
fn cpu_ticks() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = s.rsplit(')').next().unwrap();
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
#[test]
fn timing() {
    let cl = std::env::var("CL").map(|v| v == "1").unwrap_or(true);
    let cfg = BackboneConfig { size: 128, device: DeviceSpec::Cpu, channels_last: cl, ..Default::default() };
    let n = ResNet50::new(&cfg, &BuildContext::default()).unwrap();
    let x = tch::Tensor::rand([32, 3, 128, 128], (tch::Kind::Float, tch::Device::Cpu));
    let _ = n.extract(&x).unwrap();
    let mut walls = vec![];
    let c0 = cpu_ticks();
    for _ in 0..5 {
        let t = Instant::now();
        let _ = n.extract(&x).unwrap();
        walls.push(t.elapsed().as_secs_f64());
    }
    let cpu = (cpu_ticks() - c0) / 5.0;
    walls.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!(
        "RUST cl={cl} threads {} wall median {:.1} img/s, cpu {:.2} s/pass => {:.1} img/cpu-s",
        tch::get_num_threads(),
        32.0 / walls[2],
        cpu,
        32.0 / cpu
    );
}

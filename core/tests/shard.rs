//! Shards (`--shard I/N`), prediction parts and their merge, and the Slurm
//! job scripts (their text; `tests/slurm.rs` runs them on a real Slurm).

use std::path::{Path, PathBuf};

use furcate_core::shard::{merge_parts, part_of, part_path, Shard};
use furcate_core::slurm::{SlurmJob, SlurmPlan};

#[test]
fn shards_are_balanced_and_cover_every_row_once() {
    for len in 0..40 {
        for count in 1..9 {
            let mut seen = vec![0; len];
            let mut sizes = Vec::new();
            let mut next = 0;
            for index in 0..count {
                let rows = Shard::new(index, count, "--shard").unwrap().rows(len);
                assert_eq!(rows.start, next, "contiguous, in order");
                next = rows.end;
                sizes.push(rows.len());
                for r in rows {
                    seen[r] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "len {len}, {count} shards: {seen:?}");
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "len {len}, {count} shards: {sizes:?}");
        }
    }
}

#[test]
fn shard_parses_i_of_n_and_slurm_variables() {
    assert_eq!(Shard::parse("2/5", "--shard").unwrap(), Shard { index: 2, count: 5 });
    let env = |id: &'static str, count: &'static str| {
        move |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some(id.to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some(count.to_string()),
            _ => None,
        }
    };
    assert_eq!(Shard::from_slurm(env("3", "4"), "--shard").unwrap(), Shard { index: 3, count: 4 });
    let e = Shard::from_slurm(env("3", "1"), "--shard").unwrap_err().to_string();
    assert!(e.starts_with("--shard slurm") && e.contains("out of range"), "{e}");
    let e = Shard::from_slurm(env("x", "1"), "--shard").unwrap_err().to_string();
    assert!(e.contains("SLURM_ARRAY_TASK_ID=x is not a number"), "{e}");
    for bad in ["3", "1/", "-1/2", "1/2/3"] {
        assert!(Shard::parse(bad, "--shard").unwrap_err().to_string().contains(&format!("--shard {bad}")));
    }
}

#[test]
fn parts_are_named_by_shard_and_merge_in_shard_order() {
    let shard = |i| Shard { index: i, count: 3 };
    assert_eq!(part_path(Path::new("out/p.csv"), shard(1)), Path::new("out/p.part-1-of-3.csv"));
    assert_eq!(part_of(Path::new("out/p.part-1-of-3.csv")), Some(shard(1)));
    assert_eq!(part_of(Path::new("out/p.part-3-of-3.csv")), None);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.csv");
    let parts: Vec<PathBuf> = (0..3).map(|i| part_path(&out, shard(i))).collect();
    std::fs::write(&parts[0], "file,x\na,1\nb,2\n").unwrap();
    std::fs::write(&parts[1], "").unwrap(); // a shard with no images
    std::fs::write(&parts[2], "file,x\nc,3").unwrap();
    let given = vec![parts[2].clone(), parts[0].clone(), parts[1].clone()];
    assert_eq!(merge_parts(&given).unwrap(), "file,x\na,1\nb,2\nc,3\n");
    let e = merge_parts(&[parts[0].clone(), parts[0].clone()]).unwrap_err().to_string();
    assert!(e.contains("shard 0 is given twice"), "{e}");
    std::fs::write(&parts[2], "file,y\nc,3\n").unwrap();
    let e = merge_parts(&given).unwrap_err().to_string();
    assert!(e.contains("header differs"), "{e}");
    let other = dir.path().join("p.part-0-of-2.csv");
    std::fs::write(&other, "file,x\n").unwrap();
    let e = merge_parts(&[parts[0].clone(), other]).unwrap_err().to_string();
    assert!(e.contains("is a part of 2 shards"), "{e}");
}

fn plan(job: SlurmJob) -> SlurmPlan {
    SlurmPlan {
        job,
        shards: 8,
        partition: Some("gpu".into()),
        time: Some("2:00:00".into()),
        cpus: Some(4),
        gpus: Some(1),
        furcate: "/opt/furcate/bin/furcate".into(),
        workdir: "/shared/lab's work".into(),
        dir: "/shared/jobs".into(),
        env: vec![("FURCATE_CACHE".into(), "/shared/cache".into())],
    }
}

#[test]
fn slurm_scripts_name_the_shard_resources_and_the_merge() {
    let extract =
        plan(SlurmJob::Extract { config: "run.toml".into(), out: "f.safetensors".into(), train: true });
    let a = extract.array_script().unwrap();
    for line in [
        "#SBATCH --array=0-7",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=2:00:00",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --output=/shared/jobs/logs/%x-%A_%a.out",
        "cd '/shared/lab'\\''s work'",
        "export FURCATE_CACHE='/shared/cache'",
        "'/opt/furcate/bin/furcate' --quiet extract 'run.toml' --shard \"$SLURM_ARRAY_TASK_ID/8\"",
    ] {
        assert!(a.lines().any(|l| l == line), "no line {line:?} in\n{a}");
    }
    let f = extract.finish_script().unwrap();
    assert!(
        f.contains("extract 'run.toml' --out 'f.safetensors'\n") && f.contains("train 'run.toml'\n"),
        "{f}"
    );
    assert!(!f.contains("--array"), "{f}");
    let predict = plan(SlurmJob::Predict {
        run: "runs/a".into(),
        images: vec!["in/x y".into()],
        out: "/o/p.csv".into(),
    });
    let a = predict.array_script().unwrap();
    assert!(
        a.contains("predict 'runs/a' 'in/x y' --shard \"$SLURM_ARRAY_TASK_ID/8\" --out '/o/p.csv'"),
        "{a}"
    );
    let f = predict.finish_script().unwrap();
    assert!(f.contains("predict --merge '/o/p.part-'*'-of-8.csv' --out '/o/p.csv'"), "{f}");
    let none = SlurmPlan { shards: 0, ..predict };
    assert!(none.array_script().unwrap_err().to_string().contains("--shards"));
}

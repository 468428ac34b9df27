//! The feature file format and the content-addressed feature cache.

use std::cell::RefCell;
use std::collections::HashMap;

use furcate_core::features::{
    cache_info, load_features, save_features, CacheDescription, CacheStats, FeatureCache,
};
use tch::Tensor;

/// A stand-in extractor: row i of image hash `h` is `[len(h), first byte of h]`.
fn fake_rows(hashes: &[String], rows: &[usize]) -> Tensor {
    let v: Vec<f32> =
        rows.iter().flat_map(|&i| [hashes[i].len() as f32, hashes[i].as_bytes()[0] as f32]).collect();
    Tensor::from_slice(&v).view([rows.len() as i64, 2])
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn feature_files_round_trip_with_names_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.safetensors");
    let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([3, 2]);
    let meta = HashMap::from([("extractor".to_string(), "x".to_string())]);
    save_features(&path, &t, &names(&["a", "b", "c"]), &meta).unwrap();
    let f = load_features(&path).unwrap();
    assert_eq!(f.names, names(&["a", "b", "c"]));
    assert_eq!(f.metadata["extractor"], "x");
    assert!(f.features.equal(&t));
    // Wrong number of names is refused before writing.
    assert!(save_features(&dir.path().join("g.safetensors"), &t, &names(&["a"]), &meta).is_err());
    assert!(!dir.path().join("g.safetensors").exists());
}

#[test]
fn corrupt_feature_files_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.safetensors");
    save_features(
        &path,
        &Tensor::ones([4, 3], (tch::Kind::Float, tch::Device::Cpu)),
        &names(&["a", "b", "c", "d"]),
        &HashMap::new(),
    )
    .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40; // flip a bit in the feature data
    std::fs::write(&path, &bytes).unwrap();
    let err = load_features(&path).unwrap_err().to_string();
    assert!(err.contains("checksum") && err.contains("f.safetensors"), "{err}");
    std::fs::write(&path, b"garbage").unwrap();
    assert!(load_features(&path).unwrap_err().to_string().contains("not a safetensors file"));
}

#[test]
fn cache_extracts_only_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FeatureCache::new(dir.path(), &FeatureCache::key("{\"type\":\"x\"}", Some("abc"), "resize"));
    let calls = RefCell::new(Vec::new());
    let first = names(&["h1", "h2", "h3"]);
    let (t, stats) = cache
        .get_or_extract(&first, |rows| {
            calls.borrow_mut().push(rows.to_vec());
            Ok(fake_rows(&first, rows))
        })
        .unwrap();
    assert_eq!(stats, CacheStats { hits: 0, extracted: 3 });
    assert!(t.equal(&fake_rows(&first, &[0, 1, 2])));
    // A superset in another order: only the new image is extracted, rows follow the request.
    let second = names(&["h3", "x4", "h1"]);
    let (t, stats) = cache
        .get_or_extract(&second, |rows| {
            calls.borrow_mut().push(rows.to_vec());
            Ok(fake_rows(&second, rows))
        })
        .unwrap();
    assert_eq!(stats, CacheStats { hits: 2, extracted: 1 });
    assert_eq!(calls.borrow().last().unwrap(), &vec![1]);
    assert!(t.equal(&fake_rows(&second, &[0, 1, 2])));
}

#[test]
fn cache_rebuilds_a_corrupt_shard_and_keys_differ_by_weights() {
    let dir = tempfile::tempdir().unwrap();
    let key = FeatureCache::key("{}", Some("w1"), "resize");
    assert_ne!(key, FeatureCache::key("{}", Some("w2"), "resize"));
    assert_ne!(key, FeatureCache::key("{}", Some("w1"), "center_crop"));
    let cache = FeatureCache::new(dir.path(), &key);
    let hashes = names(&["a1", "b2"]);
    let _ = cache.get_or_extract(&hashes, |rows| Ok(fake_rows(&hashes, rows))).unwrap();
    for shard in std::fs::read_dir(cache.dir()).unwrap() {
        std::fs::write(shard.unwrap().path(), b"truncated").unwrap();
    }
    let (t, stats) = cache.get_or_extract(&hashes, |rows| Ok(fake_rows(&hashes, rows))).unwrap();
    assert_eq!(stats.extracted, 2);
    assert!(t.equal(&fake_rows(&hashes, &[0, 1])));
    // The corrupt shard is gone; one good shard remains.
    assert_eq!(std::fs::read_dir(cache.dir()).unwrap().count(), 1);
}

/// Many writers fill one cache at once while it is compacted and read: no
/// row is lost or torn, a reader that loses segments to the compaction
/// still sees every row stored before it started, and `cache_info` counts
/// each entry once, with the description the first segment recorded.
#[test]
fn concurrent_writers_compaction_and_readers_lose_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let description = CacheDescription {
        extractor: "{\"type\":\"x\"}".into(),
        weights_sha256: None,
        fit: "\"resize\"".into(),
    };
    let cache = FeatureCache::for_config(dir.path(), description.clone());
    let hashes: Vec<String> = (0..64).map(|i| format!("h{i:03}")).collect();
    // Half the rows first, then 4 writers store the rest, one row a segment,
    // while segments are folded and the cache is read until they are done.
    let (first, rest) = hashes.split_at(32);
    cache
        .store(&mut HashMap::new(), first.to_vec(), &fake_rows(first, &(0..32).collect::<Vec<_>>()))
        .unwrap();
    let writing = std::sync::atomic::AtomicUsize::new(4);
    let done = || writing.load(std::sync::atomic::Ordering::SeqCst) == 0;
    let reads = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for w in 0..4 {
            let (cache, rest, writing) = (&cache, rest, &writing);
            scope.spawn(move || {
                for one in rest.chunks(1).skip(w).step_by(4) {
                    cache.store(&mut HashMap::new(), one.to_vec(), &fake_rows(one, &[0])).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                writing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        scope.spawn(|| {
            while !done() {
                cache.compact().unwrap();
            }
        });
        for _ in 0..2 {
            scope.spawn(|| {
                while !done() {
                    let known = cache.known();
                    assert!(
                        first.iter().all(|h| known.contains_key(h)),
                        "a reader lost rows stored before it"
                    );
                    reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert!(reads.into_inner() > 0);
    let known = cache.known();
    assert_eq!(known.len(), 64);
    assert!(FeatureCache::gather(&known, &hashes).equal(&fake_rows(&hashes, &(0..64).collect::<Vec<_>>())));
    cache.compact().unwrap();
    let info = cache_info(dir.path()).unwrap();
    assert_eq!(info.folders.len(), 1);
    let f = &info.folders[0];
    assert_eq!((f.entries, f.rows, f.segments, f.temporary), (64, 64, 1, 0));
    assert_eq!(f.config.as_ref(), Some(&description));
    assert_eq!(cache.dir().file_name().unwrap().to_string_lossy(), f.key);
}

//! Head plugins end to end: the example plugin (a focal-loss head) built,
//! named in a config, trained next to a built-in head, saved and used for
//! prediction; and every way loading a plugin can go wrong.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::{self, config_text, dataset_3x6, head, run, s, text, write_config, LITE0_32};

fn dataset(dir: &Path) -> PathBuf {
    dataset_3x6(dir)
}

/// Builds the example and the incompatible plugin with the profile of this
/// test, once per process, and returns their paths.
pub(crate) fn plugins() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        // target/<profile>/deps/tests-<hash>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap();
        let profile = profile_dir.file_name().unwrap().to_str().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "-p", "furcate-plugin-example", "-p", "furcate-plugin-incompatible"])
            .arg("--target-dir")
            .arg(target_dir);
        if profile == "release" {
            build.arg("--release");
        } else if profile != "debug" {
            build.args(["--profile", profile]);
        }
        let o = build.output().expect("cargo runs");
        assert!(o.status.success(), "building the plugins failed:\n{}", text(&o));
        let lib = |name: &str| profile_dir.join(format!("lib{name}.so"));
        (lib("furcate_plugin_example"), lib("furcate_plugin_incompatible"))
    })
}

/// A config with `plugins = [<plugins>]`, a head of `head_type` (with `extra`
/// lines) on the morphology and a built-in regression head.
fn config(dir: &Path, manifest: &Path, plugins: &[&str], head_type: &str, extra: &str) -> PathBuf {
    let list = plugins.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
    let heads =
        format!("{}{extra}\n\n{}", head(head_type, "morphology"), head("regression", "volume_fraction"));
    let training = "test_fraction = 0.25\nseed = 3\nepochs = 40\nlearning_rate = 0.01\n";
    let text = format!("plugins = [{list}]\n\n{}", config_text(manifest, LITE0_32, &heads, training));
    write_config(dir, "run.toml", &text)
}

fn link(target: &Path, link: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn tch_version_matches_the_lock_file() {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"tch\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .expect("tch in Cargo.lock");
    assert_eq!(furcate_core::plugin::TCH_VERSION, version);
}

#[test]
fn plugin_head_trains_next_to_a_builtin_and_predicts() {
    let (example, incompatible) = plugins();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    let lib = dir.path().join("plugins/libfocal.so");
    link(example, &lib);

    // `info --plugin` lists what it provides.
    let o = run(&["info", "--plugin", s(&lib), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info[0]["name"], "furcate-plugin-example");
    assert_eq!(info[0]["head_types"], serde_json::json!(["focal"]));

    // Relative to the config file.
    let cfg = config(dir.path(), &manifest, &["plugins/libfocal.so"], "focal", "gamma = 1.5");
    let out = dir.path().join("run");
    let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
    assert!(o.status.success(), "{}", text(&o));
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["heads"]["morphology"]["type"], "focal");
    assert!(metrics["heads"]["morphology"]["error_rate"].is_number());
    assert!(metrics["heads"]["volume_fraction"]["metrics"]["mae"].is_number());
    // The focal loss went down.
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    let column = history.lines().next().unwrap().split(',').position(|c| c == "train_morphology").unwrap();
    let losses: Vec<f64> =
        history.lines().skip(1).map(|l| l.split(',').nth(column).unwrap().parse().unwrap()).collect();
    assert!(losses.last().unwrap() < &(0.8 * losses[0]), "{losses:?}");
    // The resolved config keeps the plugin head's table; the checkpoint records the plugin.
    let resolved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(resolved.contains("type = \"focal\"") && resolved.contains("gamma = 1.5"), "{resolved}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("checkpoint/state.json")).unwrap()).unwrap();
    let record = &state["plugins"][0];
    assert_eq!(record["file_name"], "libfocal.so");
    assert_eq!(record["name"], "furcate-plugin-example");
    assert_eq!(record["sha256"], info[0]["sha256"]);

    // Predict and eval from the saved run.
    let images = manifest.parent().unwrap().join("images");
    let csv = common::predict_dataset(&out, &manifest, &dir.path().join("pred.csv"));
    assert_eq!(csv.lines().count(), 37);
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let k = header.iter().position(|c| *c == "morphology_pred").expect("a morphology column");
    let classes = std::fs::read_to_string(&manifest).unwrap();
    for row in csv.lines().skip(1) {
        let class = row.split(',').nth(k).unwrap();
        assert!(classes.contains(&format!(",{class},")), "{class} is not a class of the data");
    }
    let o = run(&["eval", s(&out), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(eval["heads"][0]["score"]["error_rate"], metrics["heads"]["morphology"]["error_rate"]);

    // A changed plugin file is refused, before it is loaded.
    link(incompatible, &lib);
    let o = run(&["predict", s(&out), s(&images)]);
    let msg = text(&o);
    assert!(
        !o.status.success() && msg.contains("changed since training") && msg.contains("libfocal.so"),
        "{msg}"
    );
    assert!(msg.contains(record["sha256"].as_str().unwrap()), "{msg}");
    // A missing one too.
    std::fs::remove_file(&lib).unwrap();
    let o = run(&["eval", s(&out)]);
    let msg = text(&o);
    assert!(
        !o.status.success() && msg.contains("missing") && msg.contains("furcate-plugin-example"),
        "{msg}"
    );
}

#[test]
fn plugin_failures_are_clear_errors() {
    let (example, incompatible) = plugins();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let manifest = d.join("manifest.csv"); // never read: every case fails while loading the config
    let check = |name: &str, plugins: &[&str], head_type: &str, extra: &str, expect: &[&str]| {
        let cfg = config(d, &manifest, plugins, head_type, extra);
        let o = run(&["train", s(&cfg), "--out", s(&d.join(name))]);
        let msg = text(&o);
        assert!(!o.status.success(), "{name}: succeeded");
        assert!(!msg.contains("panicked") && o.status.code().is_some(), "{name}: crashed: {msg}");
        for e in expect {
            assert!(msg.contains(e), "{name}: `{e}` not in: {msg}");
        }
    };
    let abi = furcate_core::plugin::ABI_VERSION;
    check(
        "incompatible",
        &[s(incompatible)],
        "focal",
        "",
        &[
            "libfurcate_plugin_incompatible.so",
            "incompatible plugin",
            &format!("plugin ABI {} (this furcate: {abi})", abi + 1000),
            &format!("furcate-core 0.0.0-incompatible (this furcate: {})", furcate_core::VERSION),
            "run.toml line 1",
        ],
    );
    let o = run(&["info", "--plugin", s(incompatible)]);
    assert!(!o.status.success() && text(&o).contains("incompatible plugin"), "{}", text(&o));

    std::fs::write(d.join("notes.so"), "not a library\n").unwrap();
    check("text", &["notes.so"], "focal", "", &["notes.so", "not a loadable library"]);
    if let Some(libc) =
        ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
            .iter()
            .find(|p| Path::new(p).exists())
    {
        check(
            "libc",
            &[libc],
            "focal",
            "",
            &["libc.so.6", "not a furcate plugin", "FURCATE_PLUGIN_DECLARATION"],
        );
    }
    check("missing", &["nowhere/libgone.so"], "focal", "", &["libgone.so", "no such plugin file"]);

    link(example, &d.join("libone.so"));
    link(example, &d.join("libtwo.so"));
    check(
        "twice",
        &["libone.so", "libtwo.so"],
        "focal",
        "",
        &["`focal` is registered twice", "libone.so", "libtwo.so", "furcate-plugin-example"],
    );
    check(
        "unregistered",
        &["libone.so"],
        "focla",
        "",
        &["focla", "line 13", "built-in head types", "libone.so (furcate-plugin-example", "provides: focal"],
    );
    check("unknown_field", &["libone.so"], "focal", "gama = 3.0", &["gama", "line 12"]);
}

/// L-BFGS solves a plugin head as it solves a built-in one: the plugin head
/// reads its own tap (`taps` is the host's key, never handed to the plugin),
/// its weight decay is chosen from a list, the history has one row per
/// iteration, and `eval` rebuilds the same model (taps included) from the
/// checkpoint.
#[test]
fn plugin_head_solved_by_lbfgs_on_its_own_tap() {
    let (example, _) = plugins();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let lib = dir.path().join("libfocal.so");
    link(example, &lib);
    let cfg = config(dir.path(), &manifest, &["libfocal.so"], "focal", "gamma = 1.5\ntaps = [\"stage1\"]");
    let body = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("size = 32", "size = 32\ntaps = [\"stem\", \"stage1\"]")
        .replace("learning_rate = 0.01", "optimizer = \"lbfgs\"\nweight_decay = [1e-4, 1e-2]");
    std::fs::write(&cfg, body).unwrap();
    let out = dir.path().join("run");
    let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("reads stage1"), "{}", text(&o));
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    let choice = &metrics["choices"]["heads"][0];
    assert_eq!(choice["head"], "morphology");
    assert_eq!(choice["taps"], serde_json::json!(["stage1"]));
    assert_eq!(choice["candidates"].as_array().unwrap().len(), 2);
    let wd = choice["weight_decay"].as_f64().unwrap();
    assert!(wd == 1e-4 || wd == 1e-2, "{wd}");
    assert_eq!(metrics["optimizer"], "lbfgs");
    assert_eq!(metrics["standardise_features"], true);
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    let rows = history.lines().count() - 1;
    assert!((1..=40).contains(&rows), "{rows} iterations");
    common::assert_eval_reproduces(&out, &metrics);
}

/// A plugin head that panics or returns an error in `forward`, its loss or
/// `decode` ends `train` with an error naming the plugin's file, the plugin
/// and the head: a non-zero exit (no abort, no re-raised panic) and no
/// finished run folder.
#[test]
fn a_failing_plugin_head_is_an_error_not_an_abort() {
    let (example, _) = plugins();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let lib = dir.path().join("libfocal.so");
    link(example, &lib);
    // (switch, the host's call, the plugin's call, whether it panics)
    let cases = [
        ("panic_in_forward", "forward", "forward", true),
        ("error_in_forward", "forward", "forward", false),
        ("panic_in_loss", "masked_loss", "loss", true),
        ("panic_in_decode", "decode", "decode", true),
        ("error_in_decode", "decode", "decode", false),
    ];
    for (fail, call, inner, panics) in cases {
        let cfg = config(dir.path(), &manifest, &["libfocal.so"], "focal", &format!("fail = \"{fail}\""));
        let out = dir.path().join(format!("run_{fail}"));
        let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
        let msg = text(&o);
        assert!(o.status.code().is_some_and(|c| c != 0), "{fail}: not an error exit ({:?}): {msg}", o.status);
        let expect = [
            "libfocal.so",
            "furcate-plugin-example",
            &format!("head `morphology` {call}"),
            &format!("{inner} fails on purpose"),
        ];
        for e in expect {
            assert!(msg.contains(e), "{fail}: `{e}` not in: {msg}");
        }
        let how = if panics { "panicked in" } else { "failed in" };
        assert!(msg.contains(&format!("{how} head `morphology` {call}")), "{fail}: {msg}");
        assert!(!out.exists(), "{fail}: a run folder was left at {}", out.display());
    }
    // The switch is a field of the head's table like any other: a typo is refused.
    let cfg = config(dir.path(), &manifest, &["libfocal.so"], "focal", "fail = \"panic_in_forwrd\"");
    let o = run(&["train", s(&cfg), "--out", s(&dir.path().join("typo"))]);
    assert!(!o.status.success() && text(&o).contains("panic_in_forwrd"), "{}", text(&o));
}

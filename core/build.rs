// Build script shared by every furcate package that links libtorch (the
// binary includes it with `include!`). It makes the linked artifacts
// (binaries, tests, benches) find libtorch without `LD_LIBRARY_PATH` through
// an rpath, and links `libtorch.so` with `--no-as-needed` so that the CUDA
// kernels register at start-up (tch-rs issues 907 and 980).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    // LIBTORCH wins when it holds a libtorch; else, with LIBTORCH_USE_PYTORCH,
    // the active Python's PyTorch (how `pip install ./python` finds it).
    let libtorch = std::env::var_os("LIBTORCH");
    let usable = libtorch.as_ref().is_some_and(|d| PathBuf::from(d).join("lib").exists());
    let Some(dir) = (if usable { libtorch } else { pytorch_dir().or(libtorch) }) else {
        panic!(
            "LIBTORCH is not set. furcate builds against libtorch 2.11.0 from the PyPI wheel of \
             PyTorch 2.11.0: run `scripts/setup.sh` once (it installs it into a per-user cache \
             and links it as ./.libtorch), set LIBTORCH to a `torch` folder of PyTorch 2.11.0, \
             or set LIBTORCH_USE_PYTORCH=1 with that PyTorch in the active Python."
        )
    };
    let dir = PathBuf::from(dir);
    let dir = dir.canonicalize().unwrap_or(dir);
    let lib = dir.join("lib");
    if !lib.join("libtorch_cpu.so").exists() {
        panic!(
            "LIBTORCH={} holds no lib/libtorch_cpu.so. Run `scripts/setup.sh` to install \
             libtorch 2.11.0 (PyTorch 2.11.0 from PyPI) into the per-user cache.",
            dir.display()
        );
    }
    let version = std::fs::read_to_string(dir.join("version.py"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("__version__ = ").map(|v| v.trim_matches(['\'', '"']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FURCATE_LIBTORCH_DIR={}", dir.display());
    println!("cargo:rustc-env=FURCATE_LIBTORCH_BUILD_VERSION={version}");
    // The compiler, for the plugin ABI check (a plugin must be built by the same rustc).
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc_version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FURCATE_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{}", lib.display());
    println!("cargo:rustc-link-arg=-ltorch");
}

/// With `LIBTORCH_USE_PYTORCH` set (as torch-sys reads it), the `torch` folder
/// of the active Python's PyTorch: `python` in a virtual environment, else
/// `python3` (torch-sys's rule). How `pip install ./python` finds libtorch.
fn pytorch_dir() -> Option<std::ffi::OsString> {
    std::env::var_os("LIBTORCH_USE_PYTORCH")?;
    let python = if std::env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
    let out = std::process::Command::new(python)
        .args(["-c", "import os, torch; print(os.path.dirname(torch.__file__))"])
        .output()
        .ok()?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !dir.is_empty()).then(|| dir.into())
}

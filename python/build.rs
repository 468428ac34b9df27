// Compiles src/tensors.cpp against the headers of the `torch` wheel furcate
// links (LIBTORCH, else with LIBTORCH_USE_PYTORCH the active Python's
// PyTorch, as furcate-core's build script finds it) and links
// libtorch_python. The extension is loaded by `import furcate`, whose
// `__init__` imports `torch` first: libtorch and libtorch_python are then
// already in the process, and the dynamic loader reuses them by their
// sonames, so the extension never loads a second copy. The rpath is only a
// fallback for a wheel installed next to `torch` in the same site-packages.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/tensors.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=FURCATE_PYTHON");
    let python =
        std::env::var("PYO3_PYTHON").or_else(|_| std::env::var("FURCATE_PYTHON")).unwrap_or_else(|_| {
            if std::env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" }.into()
        });
    let ask = |code: &str| -> Option<String> {
        let out = Command::new(&python).args(["-c", code]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let torch = std::env::var_os("LIBTORCH")
        .map(PathBuf::from)
        .filter(|d| d.join("lib").exists())
        .or_else(|| ask("import os, torch; print(os.path.dirname(torch.__file__))").map(PathBuf::from))
        .expect(
            "no libtorch: set LIBTORCH to the `torch` folder of PyTorch 2.11.0, or LIBTORCH_USE_PYTORCH=1",
        );
    let include = ask("import sysconfig; print(sysconfig.get_paths()['include'])")
        .unwrap_or_else(|| panic!("{python} gave no include folder (sysconfig)"));
    let abi = ask("import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))").unwrap_or_else(|| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/tensors.cpp")
        .include(torch.join("include"))
        .include(torch.join("include/torch/csrc/api/include"))
        .include(include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .warnings(false)
        .compile("furcate_tensors");
    let lib = torch.join("lib");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_python");
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
}

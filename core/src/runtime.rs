//! What furcate runs on: libtorch, CPU threads, CUDA devices, and the device
//! a config asks for.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The libtorch version furcate is built for (tch 0.24).
pub const EXPECTED_LIBTORCH: &str = "2.11.0";

/// The libtorch folder furcate was built against.
pub const BUILD_LIBTORCH_DIR: &str = env!("FURCATE_LIBTORCH_DIR");

/// One CUDA device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CudaDevice {
    /// Index, as in `cuda:N`.
    pub index: usize,
    /// Marketing name, where NVML could tell it.
    pub name: String,
    /// Total memory in bytes, where NVML could tell it.
    pub memory_bytes: Option<u64>,
}

/// The libtorch that is loaded in this process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Libtorch {
    /// Version without the local suffix, e.g. `2.11.0`.
    pub version: String,
    /// The full version string, e.g. `2.11.0+cu130`.
    pub full_version: String,
    /// The folder holding `lib/libtorch_cpu.so`.
    pub dir: PathBuf,
}

/// Finds the libtorch this process has loaded (from `/proc/self/maps`,
/// falling back to the folder it was built against) and reads its version.
pub fn libtorch() -> Result<Libtorch> {
    // Touch libtorch so that it is surely mapped.
    let _ = tch::get_num_threads();
    let loaded = std::fs::read_to_string("/proc/self/maps").ok().and_then(|maps| {
        maps.lines().find_map(|l| {
            let path = l.split_whitespace().nth(5)?;
            path.ends_with("/libtorch_cpu.so").then(|| PathBuf::from(path))
        })
    });
    let dir = loaded
        .and_then(|p| p.parent()?.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(BUILD_LIBTORCH_DIR));
    let version_file = dir.join("version.py");
    let text = std::fs::read_to_string(&version_file).map_err(|e| {
        Error::Torch(format!(
            "cannot read the version of the libtorch in {} ({e}); run scripts/setup.sh to \
             install libtorch {EXPECTED_LIBTORCH} (PyTorch {EXPECTED_LIBTORCH} from PyPI)",
            dir.display()
        ))
    })?;
    let full_version = text
        .lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
        .ok_or_else(|| Error::Torch(format!("{} names no __version__", version_file.display())))?;
    let version = full_version.split('+').next().unwrap_or_default().to_string();
    Ok(Libtorch { version, full_version, dir })
}

/// Fails with a message saying how to fix it unless the loaded libtorch is
/// [`EXPECTED_LIBTORCH`].
pub fn check_libtorch() -> Result<Libtorch> {
    let lt = libtorch()?;
    if lt.version != EXPECTED_LIBTORCH {
        return Err(Error::Torch(format!(
            "furcate needs libtorch {EXPECTED_LIBTORCH} but {} holds {}; run scripts/setup.sh \
             (it installs PyTorch {EXPECTED_LIBTORCH} from PyPI into the per-user cache) and rebuild",
            lt.dir.display(),
            lt.full_version
        )));
    }
    Ok(lt)
}

/// The CUDA devices libtorch sees, with names and memory from NVML where available.
pub fn cuda_devices() -> Vec<CudaDevice> {
    let n = if tch::Cuda::is_available() { tch::Cuda::device_count().max(0) as usize } else { 0 };
    let nvml = nvml::Nvml::open();
    (0..n)
        .map(|index| {
            let (name, memory_bytes) = nvml
                .as_ref()
                .and_then(|nv| nv.device(index))
                .map(|(name, mem)| (name, Some(mem)))
                .unwrap_or_else(|| (format!("CUDA device {index}"), None));
            CudaDevice { index, name, memory_bytes }
        })
        .collect()
}

/// Where a computation runs, as written in configs: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The first CUDA device if there is one, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl DeviceSpec {
    /// The tch device, failing when CUDA is asked for but absent.
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            DeviceSpec::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceSpec::Cpu => Ok(tch::Device::Cpu),
            DeviceSpec::Cuda(i) => {
                let n = if tch::Cuda::is_available() { tch::Cuda::device_count() as usize } else { 0 };
                if i >= n {
                    Err(Error::Invalid(format!(
                        "device cuda:{i} was asked for but libtorch sees {n} CUDA device(s)"
                    )))
                } else {
                    Ok(tch::Device::Cuda(i))
                }
            }
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device `{s}`: expected auto, cpu, cuda or cuda:N")),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Device names and memory from NVML (the driver's library), loaded at run time
/// so that machines without a GPU driver need nothing.
mod nvml {
    use libloading::{Library, Symbol};
    use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

    #[repr(C)]
    struct Memory {
        total: u64,
        free: u64,
        used: u64,
    }

    pub struct Nvml {
        lib: Library,
    }

    type Init = unsafe extern "C" fn() -> c_int;
    type Handle = unsafe extern "C" fn(c_uint, *mut *mut c_void) -> c_int;
    type Name = unsafe extern "C" fn(*mut c_void, *mut c_char, c_uint) -> c_int;
    type Mem = unsafe extern "C" fn(*mut c_void, *mut Memory) -> c_int;

    impl Nvml {
        pub fn open() -> Option<Nvml> {
            // SAFETY: NVML is the NVIDIA driver's C library; its init has no preconditions.
            unsafe {
                let lib = Library::new("libnvidia-ml.so.1").ok()?;
                let init: Symbol<Init> = lib.get(b"nvmlInit_v2\0").ok()?;
                (init() == 0).then_some(Nvml { lib })
            }
        }

        pub fn device(&self, index: usize) -> Option<(String, u64)> {
            // SAFETY: the signatures match nvml.h; buffers are sized as NVML asks.
            unsafe {
                let handle_of: Symbol<Handle> = self.lib.get(b"nvmlDeviceGetHandleByIndex_v2\0").ok()?;
                let name_of: Symbol<Name> = self.lib.get(b"nvmlDeviceGetName\0").ok()?;
                let mem_of: Symbol<Mem> = self.lib.get(b"nvmlDeviceGetMemoryInfo\0").ok()?;
                let mut handle = std::ptr::null_mut();
                if handle_of(index as c_uint, &mut handle) != 0 {
                    return None;
                }
                let mut buf = [0 as c_char; 256];
                if name_of(handle, buf.as_mut_ptr(), buf.len() as c_uint) != 0 {
                    return None;
                }
                let name = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
                let mut mem = Memory { total: 0, free: 0, used: 0 };
                if mem_of(handle, &mut mem) != 0 {
                    return None;
                }
                Some((name, mem.total))
            }
        }
    }
}

/// `[runtime]` of a run configuration.
///
/// ```toml
/// [runtime]
/// threads = 4     # CPU threads for libtorch and furcate's own parallel work
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// CPU threads (default: `--threads`, `FURCATE_THREADS`, else the cores
    /// this process may use). `--threads` and `FURCATE_THREADS` win over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

impl RuntimeConfig {
    /// Whether nothing is set (the table is then left out of resolved configs).
    pub fn is_default(&self) -> bool {
        self == &RuntimeConfig::default()
    }
}

/// Threads set by `--threads` or `FURCATE_THREADS` (they win over a config's).
static EXPLICIT_THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
static INTEROP: std::sync::Once = std::sync::Once::new();

/// Sets the CPU threads of libtorch (intra-op `n`, inter-op 1) and of
/// rayon's global pool (image decoding, the synthetic generator) to `n`,
/// else to `FURCATE_THREADS`, else to the cores this process may use
/// (`std::thread::available_parallelism`, which honours CPU affinity and
/// cgroup quotas, so several processes pinned to shared cores do not each
/// start one thread per core of the machine). Call it once, before any
/// parallel work; returns the count. A count given here or by
/// `FURCATE_THREADS` wins over a config's `[runtime] threads`
/// ([`apply_config_threads`]).
pub fn set_threads(n: Option<usize>) -> Result<usize> {
    let from_env = match std::env::var("FURCATE_THREADS") {
        Ok(v) => Some(v.trim().parse::<usize>().map_err(|_| {
            Error::Invalid(format!("FURCATE_THREADS = {v:?}: expected a whole number of threads, at least 1"))
        })?),
        Err(_) => None,
    };
    let explicit = n.or(from_env);
    if explicit == Some(0) {
        return Err(Error::Invalid("--threads 0: use at least 1 thread".into()));
    }
    if let Some(n) = explicit {
        let _ = EXPLICIT_THREADS.set(n);
    }
    let n = explicit.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    apply(n, explicit.is_some());
    keep_freed_memory();
    Ok(n)
}

/// Asks glibc's allocator to keep freed memory for reuse instead of handing
/// it back to the system at once (once per process; elsewhere nothing).
///
/// libtorch allocates each CPU tensor with `malloc`: a full-batch solve
/// frees and allocates the same activations (megabytes each) thousands of
/// times, and with glibc's defaults every such block is a fresh `mmap`
/// whose pages the kernel zeroes again: a third of a trunk solve's time went
/// to that. Blocks up to 32 MiB now come from the heap, whose top is trimmed
/// only beyond 1 GiB of free memory.
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; it is called
        // before furcate's own threads start.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    });
}

/// Applies a config's `[runtime] threads`, unless `--threads` or
/// `FURCATE_THREADS` set the count. rayon's pool takes it when it is not
/// running yet (it starts at the first parallel work).
pub fn apply_config_threads(runtime: &RuntimeConfig) {
    if EXPLICIT_THREADS.get().is_none() {
        if let Some(n) = runtime.threads.filter(|n| *n > 0) {
            apply(n, true);
        }
    }
}

fn apply(n: usize, rayon_too: bool) {
    tch::set_num_threads(i32::try_from(n).unwrap_or(i32::MAX));
    // libtorch refuses a second inter-op setting: once per process.
    INTEROP.call_once(|| tch::set_num_interop_threads(1));
    if rayon_too {
        // Fails only when the global pool already exists; it then keeps its size.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
}

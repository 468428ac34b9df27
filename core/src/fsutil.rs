//! Crash-safe writes, output locks and file hashing.
//!
//! Everything furcate writes that matters (checkpoints, caches, run folders)
//! goes through [`write_atomic`] (or [`write_atomic_with`]) or [`AtomicDir`]:
//! a temporary file or folder next to the target, fsync, one rename, then an
//! fsync of the folder so the rename itself survives a crash. A reader never
//! sees half a file.
//!
//! [`OutputLock`] keeps two processes from writing the same output: an OS
//! advisory lock on a file `.NAME.lock` beside the output, which records who
//! holds it for the message the second process prints.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Writes `bytes` to `path` atomically: temp file in the same folder, fsync,
/// rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file, tmp| file.write_all(bytes).map_err(|e| Error::io(tmp, e)))
}

/// Writes `path` atomically with `write`, which gets the temporary file (in
/// the same folder as `path`, open for writing) and its path, for writers
/// that want a path of their own to write to. The file is then synced and
/// renamed over `path`, and the folder synced. On an error nothing is left
/// behind and `path` is untouched.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut File, &Path) -> Result<()>) -> Result<()> {
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // A temporary file is private (0600) by default; the file it becomes gets
    // the usual permissions (0666 less the umask), like any file furcate writes.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp_path = tmp.path().to_path_buf();
    write(tmp.as_file_mut(), &tmp_path)?;
    tmp.as_file().sync_all().map_err(|e| Error::io(&tmp_path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(&dir).map_err(|e| Error::io(&dir, e))
}

/// A folder built under a temporary name and renamed into place by [`AtomicDir::commit`].
///
/// Dropped without `commit`, it removes the temporary folder, so an
/// interrupted or failed job never leaves a folder that looks complete.
#[derive(Debug)]
pub struct AtomicDir {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicDir {
    /// Starts a folder that will become `target`. With `force`, an existing
    /// `target` is replaced at commit; without it, an existing `target` is an error.
    pub fn new(target: &Path, force: bool) -> Result<Self> {
        if target.exists() && !force {
            return Err(Error::io(
                target,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists (use --force to replace it)",
                ),
            ));
        }
        let tmp = temp_sibling(target);
        let parent = parent_dir(target);
        fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicDir { tmp, target: target.to_path_buf(), committed: false })
    }

    /// The temporary folder to write into.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The final folder name.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Syncs the files written and renames the folder into place.
    pub fn commit(mut self) -> Result<PathBuf> {
        sync_tree(&self.tmp);
        replace_dir(&self.tmp, &self.target)?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

/// Renames the finished folder `tmp` to `target` (a sibling), moving an
/// existing `target` aside first and deleting it once the new folder is in
/// place, then syncs the parent folder. Whether replacing is allowed is the
/// caller's decision.
pub fn replace_dir(tmp: &Path, target: &Path) -> Result<()> {
    if target.symlink_metadata().is_ok() {
        let old = temp_sibling(target);
        fs::rename(target, &old).map_err(|e| Error::io(target, e))?;
        if let Err(e) = fs::rename(tmp, target) {
            // Put the replaced folder back.
            let _ = fs::rename(&old, target);
            return Err(Error::io(target, e));
        }
        let _ = fs::remove_dir_all(&old);
    } else {
        fs::rename(tmp, target).map_err(|e| Error::io(target, e))?;
    }
    let parent = parent_dir(target);
    sync_dir(&parent).map_err(|e| Error::io(&parent, e))
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// The SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The SHA-256 of a byte slice, as lowercase hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The output folder of a file that names one (`out`, relative to the file),
/// else `runs/<file stem>`: experiment and simulation files alike.
pub(crate) fn out_folder(file: &Path, out: Option<&Path>) -> PathBuf {
    match out {
        Some(o) => parent_dir(file).join(o),
        None => PathBuf::from("runs").join(file.file_stem().unwrap_or_default()),
    }
}

/// The folder holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let unique = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    parent_dir(path).join(format!(".{name}.{}.{unique}.tmp", std::process::id()))
}

/// fsyncs a folder, so that the renames inside it are on disk. A file
/// system that cannot sync folders (or a platform that cannot open them) is
/// not an error.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    if cfg!(not(unix)) {
        return Ok(());
    }
    match File::open(dir).and_then(|f| f.sync_all()) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported) => {
            Ok(())
        }
        other => other,
    }
}

/// Removes, below `dir`, the temporary files [`write_atomic`] leaves when a
/// process is killed mid-write (`.NAME.XXXXXX.tmp`), so a resumed run folder
/// does not carry them into the finished one. Returns how many it removed.
pub fn remove_stray_temps(dir: &Path) -> usize {
    remove_stray_temps_older(dir, std::time::Duration::ZERO)
}

/// [`remove_stray_temps`] for the temporary files last modified at least
/// `age` ago: in a folder that other processes may be writing to (a shared
/// feature cache), a running writer's temporary file is young.
pub fn remove_stray_temps_older(dir: &Path, age: std::time::Duration) -> usize {
    let old = |p: &Path| {
        age.is_zero()
            || fs::metadata(p).and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|e| e >= age))
    };
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    for entry in entries.flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        match entry.file_type() {
            Ok(t) if t.is_dir() => removed += remove_stray_temps_older(&p, age),
            Ok(t) if t.is_file() && name.starts_with('.') && name.ends_with(".tmp") && old(&p) => {
                removed += usize::from(fs::remove_file(&p).is_ok());
            }
            _ => {}
        }
    }
    removed
}

fn sync_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                sync_tree(&p);
            } else if let Ok(f) = File::open(&p) {
                let _ = f.sync_all();
            }
        }
    }
    let _ = sync_dir(dir);
}

/// An exclusive lock on an output (a run folder, an experiment folder), held
/// until dropped.
///
/// The lock is an OS advisory lock on `.NAME.lock` beside the output
/// ([`OutputLock::file_for`]); the file records the holder ([`LockHolder`]).
/// The OS releases the lock when its process ends, however it ends, so a lock
/// file left by a killed process holds nothing: the next process takes it
/// over (with a warning naming the dead holder). Dropping the lock removes
/// the file.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
}

/// Who holds an [`OutputLock`], as recorded in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Process id.
    pub pid: u32,
    /// Host name (`?` when unknown).
    pub host: String,
    /// When the lock was taken, in seconds since 1970-01-01 UTC.
    pub since_unix: u64,
    /// The holder's command line.
    pub command: String,
}

impl LockHolder {
    /// This process, now.
    pub fn current() -> LockHolder {
        LockHolder {
            pid: std::process::id(),
            host: host_name(),
            since_unix: unix_now(),
            command: std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// `pid 123 on host h (`furcate train a.toml`), since 2026-12-01 18:40:00 UTC (12 s ago)`.
    pub fn describe(&self) -> String {
        let ago = unix_now().saturating_sub(self.since_unix);
        format!(
            "pid {} on host {} (`{}`), since {} ({ago} s ago)",
            self.pid,
            self.host,
            self.command,
            utc_time(self.since_unix)
        )
    }
}

impl OutputLock {
    /// The lock file of `target`: `.NAME.lock` in the same folder.
    pub fn file_for(target: &Path) -> PathBuf {
        let name =
            target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        parent_dir(target).join(format!(".{name}.lock"))
    }

    /// Takes the lock on `target` (which need not exist). When another
    /// process holds it: with `wait`, blocks until it is released (saying
    /// so once, as a warning); without, fails at once with an I/O error of
    /// kind [`WouldBlock`](std::io::ErrorKind::WouldBlock) that names
    /// `target` and the holder.
    pub fn acquire(target: &Path, wait: bool) -> Result<OutputLock> {
        let path = Self::file_for(target);
        let parent = parent_dir(&path);
        fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let mut said_waiting = false;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let holder = read_holder(&path)
                        .map(|h| h.describe())
                        .unwrap_or_else(|| "a process that has not said who it is yet".into());
                    if !wait {
                        return Err(Error::io(
                            target,
                            std::io::Error::new(
                                std::io::ErrorKind::WouldBlock,
                                format!(
                                    "another furcate process is writing it: {holder}; lock file {}. \
                                     Wait for it to finish, or pass --wait to start when it does",
                                    path.display()
                                ),
                            ),
                        ));
                    }
                    if !said_waiting {
                        tracing::warn!("{}: waiting for {holder} to finish", target.display());
                        said_waiting = true;
                    }
                    file.lock().map_err(|e| Error::io(&path, e))?;
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            // The previous holder removes the file before it lets go: a lock
            // on a file no longer at `path` guards nothing, so start again.
            if !is_file_at(&file, &path) {
                continue;
            }
            let mut lock = OutputLock { file, path };
            lock.record(target)?;
            return Ok(lock);
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes this process into the lock file, warning when it held a
    /// holder that is gone (a process that ended without removing it).
    fn record(&mut self, target: &Path) -> Result<()> {
        let mut old = String::new();
        let _ = self.file.read_to_string(&mut old);
        if let Ok(stale) = serde_json::from_str::<LockHolder>(&old) {
            tracing::warn!(
                "{}: taking over the stale lock of {}, which no longer holds it",
                target.display(),
                stale.describe()
            );
        }
        let json = serde_json::to_vec(&LockHolder::current()).map_err(|e| Error::Invalid(e.to_string()))?;
        let path = &self.path;
        let file = &mut self.file;
        (|| {
            use std::io::Seek as _;
            file.set_len(0)?;
            file.seek(std::io::SeekFrom::Start(0))?;
            file.write_all(&json)?;
            file.sync_all()
        })()
        .map_err(|e| Error::io(path, e))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so that no process locks the old file
        // after this one lets go (one that already opened it sees it is gone).
        if cfg!(unix) {
            let _ = fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

/// The holder recorded in a lock file, if it has a readable one.
fn read_holder(path: &Path) -> Option<LockHolder> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

/// Whether `file` is (still) the file at `path`.
fn is_file_at(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "?".into())
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix time.
fn utc_time(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), by 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", secs / 3_600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::{remove_stray_temps, utc_time, write_atomic};

    #[test]
    fn stray_temps_are_removed_and_finished_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("checkpoint");
        write_atomic(&sub.join("state.json"), b"{}").unwrap();
        std::fs::write(sub.join(".model.safetensors.a1B2c3.tmp"), b"half").unwrap();
        std::fs::write(dir.path().join(".metrics.json.x9Y8z7.tmp"), b"half").unwrap();
        std::fs::write(dir.path().join("notes.tmp"), b"a user's file").unwrap();
        assert_eq!(remove_stray_temps(dir.path()), 2);
        let mut left: Vec<String> = walk(dir.path());
        left.sort();
        assert_eq!(left, ["checkpoint/state.json", "notes.tmp"]);
    }

    fn walk(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()).into_iter().map(|f| format!("{name}/{f}")));
            } else {
                out.push(name);
            }
        }
        out
    }

    #[test]
    fn utc_time_of_known_instants() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        // A leap day of a century year divisible by 400, and the last second of another leap day.
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(utc_time(4_102_444_800), "2100-01-01 00:00:00 UTC");
    }
}

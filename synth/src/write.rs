//! Writing a data set to disk, atomically: PNGs, `manifest.csv`, `config.toml`.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::generate::{Generator, SynthImage};
use crate::{Error, Result, SynthConfig};

/// Threads that fsync the images while they are being made, or delete a
/// replaced data set: they wait on the disk, not the CPU.
const IO_THREADS: usize = 16;

/// Name of the manifest in a data-set folder.
pub const MANIFEST_FILE: &str = "manifest.csv";
/// Name of the copy of the config in a data-set folder.
pub const CONFIG_FILE: &str = "config.toml";
/// Folder of the images inside a data-set folder.
pub const IMAGES_DIR: &str = "images";
/// The manifest's columns, in order. `file` is relative to the manifest;
/// `volume_fraction` is the measured white fraction (6 decimals), the rest
/// are the generation parameters (`plane` is `xy`, `xz`, `yz` or the normal's
/// three components separated by spaces; `seed` is the image's own seed).
pub const MANIFEST_COLUMNS: [&str; 11] = [
    "file",
    "morphology",
    "volume_fraction_class",
    "volume_fraction",
    "target_fraction",
    "sigma_x",
    "sigma_y",
    "sigma_z",
    "plane",
    "rotation",
    "seed",
];

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSummary {
    /// The data-set folder.
    pub out: PathBuf,
    /// Number of images written.
    pub images: usize,
    /// Total size of the PNG files, in bytes.
    pub png_bytes: u64,
}

/// Generates the data set of `cfg` into the folder `out`: one 8-bit grayscale
/// PNG per image under `images/`, [`MANIFEST_FILE`] and [`CONFIG_FILE`].
///
/// The config is validated before anything is written. An existing `out` is
/// an [`Error::OutputExists`] unless `force`, which replaces it. The folder
/// is built under a temporary name beside `out`, synced to disk and renamed
/// into place, so an interrupted run leaves no half data set (and removes its
/// temporary folder when it fails with an error).
pub fn write_dataset(cfg: &SynthConfig, out: &Path, force: bool) -> Result<DatasetSummary> {
    write_dataset_with_progress(cfg, out, force, &|_, _| {})
}

/// [`write_dataset`], calling `progress(done, total)` (from worker threads)
/// after each image is written.
pub fn write_dataset_with_progress(
    cfg: &SynthConfig,
    out: &Path,
    force: bool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<DatasetSummary> {
    let generator = Generator::new(cfg)?;
    if out.symlink_metadata().is_ok() && !force {
        return Err(Error::OutputExists { path: out.to_path_buf() });
    }
    let staging = Staging::create(out)?;
    let images_dir = staging.tmp.join(IMAGES_DIR);
    fs::create_dir(&images_dir).map_err(|e| Error::io(&images_dir, e))?;

    let total = generator.len();
    let digits = (cfg.images_per_class - 1).to_string().len().max(3);
    let done = AtomicUsize::new(0);
    let png_bytes = AtomicU64::new(0);
    let (to_sync, synced) = mpsc::channel::<PathBuf>();
    let synced = Mutex::new(synced);
    let rows = std::thread::scope(|scope| {
        // fsync waits on the disk, not the CPU: a few threads do it while the
        // rayon pool goes on making images (concurrent fsyncs share journal commits).
        let syncers: Vec<_> = (0..IO_THREADS).map(|_| scope.spawn(|| fsync_from(&synced))).collect();
        let rows = (0..total)
            .into_par_iter()
            .map_init(
                || (generator.scratch(), Vec::new(), to_sync.clone()),
                |(scratch, buf, to_sync), i| {
                    let img = generator.image_with(i, scratch)?;
                    let repeat = i % cfg.images_per_class;
                    let file = format!(
                        "{IMAGES_DIR}/{}_{}_{repeat:0digits$}.png",
                        img.morphology, img.volume_fraction_class
                    );
                    let path = staging.tmp.join(&file);
                    buf.clear();
                    encode_png(&img, buf).map_err(|message| Error::Png { path: path.clone(), message })?;
                    fs::write(&path, &buf).map_err(|e| Error::io(&path, e))?;
                    png_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                    // A send fails only once every syncer has stopped on an error,
                    // which joining them reports.
                    let _ = to_sync.send(path);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                    Ok(manifest_row(cfg, &img, &file))
                },
            )
            .collect::<Result<Vec<String>>>();
        drop(to_sync);
        let synced: Result<()> = syncers.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| {
                Err(Error::io(&images_dir, std::io::Error::other("fsync thread panicked")))
            })
        });
        rows.and_then(|rows| synced.map(|()| rows))
    })?;

    let mut manifest = MANIFEST_COLUMNS.join(",");
    manifest.push('\n');
    for row in rows {
        manifest.push_str(&row);
        manifest.push('\n');
    }
    staging.write(MANIFEST_FILE, manifest.as_bytes())?;
    let config =
        format!("# The config `furcate generate` made this data set from.\n{}", cfg.to_toml_string());
    staging.write(CONFIG_FILE, config.as_bytes())?;
    staging.commit(force)?;
    Ok(DatasetSummary { out: out.to_path_buf(), images: total, png_bytes: png_bytes.into_inner() })
}

fn manifest_row(cfg: &SynthConfig, img: &SynthImage, file: &str) -> String {
    let m = &cfg.morphologies[img.morphology_index];
    format!(
        "{file},{},{},{:.6},{:.6},{},{},{},{},{},{}",
        img.morphology,
        img.volume_fraction_class,
        img.volume_fraction,
        img.target_fraction,
        m.sigma_x,
        m.sigma_y,
        m.sigma_z,
        m.plane,
        m.rotation,
        img.seed
    )
}

/// The image as an 8-bit grayscale PNG, with fast compression (binary images
/// compress well even so).
fn encode_png(img: &SynthImage, buf: &mut Vec<u8>) -> std::result::Result<(), String> {
    let side = u32::try_from(img.size).map_err(|e| e.to_string())?;
    let mut encoder = png::Encoder::new(&mut *buf, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(&img.pixels).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())
}

/// A temporary folder beside the target, removed on drop unless committed.
struct Staging {
    tmp: PathBuf,
    target: PathBuf,
    parent: PathBuf,
    committed: bool,
}

/// `parent/.name.what-pid-nanos`: a hidden sibling no other run picks.
fn sibling(parent: &Path, target: &Path, what: &str) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    parent.join(format!(".{name}.{what}-{}-{nanos}", std::process::id()))
}

impl Staging {
    fn create(target: &Path) -> Result<Self> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let tmp = sibling(&parent, target, "tmp");
        fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(Staging { tmp, target: target.to_path_buf(), parent, committed: false })
    }

    /// Writes and fsyncs one file.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.tmp.join(name);
        File::create(&path)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
            .map_err(|e| Error::io(&path, e))
    }

    /// Syncs the folders (the files are synced already), then renames the folder into place
    /// (moving an existing target aside first when `force`).
    fn commit(mut self, force: bool) -> Result<()> {
        sync_dir(&self.tmp.join(IMAGES_DIR))?;
        sync_dir(&self.tmp)?;
        let old = match self.target.symlink_metadata() {
            Err(_) => None,
            Ok(_) if !force => return Err(Error::OutputExists { path: self.target.clone() }),
            Ok(_) => {
                let old = sibling(&self.parent, &self.target, "old");
                fs::rename(&self.target, &old).map_err(|e| Error::io(&self.target, e))?;
                Some(old)
            }
        };
        if let Err(e) = fs::rename(&self.tmp, &self.target) {
            if let Some(old) = &old {
                // Put the replaced data set back.
                let _ = fs::rename(old, &self.target);
            }
            return Err(Error::io(&self.target, e));
        }
        self.committed = true;
        sync_dir(&self.parent)?;
        if let Some(old) = old {
            // The new data set is in place; failing to delete the old one is not an error.
            remove_tree(&old);
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            remove_tree(&self.tmp);
        }
    }
}

/// Removes a replaced data set (a folder or a file), best effort. The images
/// are unlinked by a few threads at once: one after the other each unlink
/// waits on the file system's journal (seconds for a few thousand files).
fn remove_tree(path: &Path) {
    let files: Vec<PathBuf> = fs::read_dir(path.join(IMAGES_DIR))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..IO_THREADS.min(files.len()) {
            scope.spawn(|| {
                while let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let _ = fs::remove_file(file);
                }
            });
        }
    });
    let _ = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// fsyncs the files received until the channel closes; the first error
/// stops this thread (the others drain the channel).
fn fsync_from(paths: &Mutex<mpsc::Receiver<PathBuf>>) -> Result<()> {
    loop {
        // A poisoned lock only means another syncer panicked; the receiver is still fine.
        let next = paths.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(path) = next else { return Ok(()) };
        File::open(&path).and_then(|f| f.sync_all()).map_err(|e| Error::io(&path, e))?;
    }
}

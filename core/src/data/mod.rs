//! Labelled image sets: a manifest CSV or one folder per class, image
//! decoding, the pipeline of real micrographs (intensity, crop, pixel size,
//! tiles, symmetries) and the train/validation/test split.

pub mod augment;
pub mod config;
pub mod image;
pub mod intensity;
pub mod prepare;
pub mod split;
pub mod tiles;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::abridged;
use crate::{Error, Result};
pub use config::{DataConfig, Fit};

/// Collects the results of a parallel pass over a data set's images. On
/// failure the error is the first failing image's in data order, whichever
/// thread finished first, so the same input always names the same file.
pub(crate) fn collect_in_order<T: Send>(
    results: impl rayon::iter::IndexedParallelIterator<Item = Result<T>>,
) -> Result<Vec<T>> {
    results.collect::<Vec<_>>().into_iter().collect()
}

/// File extensions furcate reads as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "tif", "tiff", "jpg", "jpeg", "bmp"];

/// What a data set listing the same image file more than once does
/// (`[data] duplicates`). The same file under two spellings
/// (`images/a.png`, `./images/a.png`) is the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Duplicates {
    /// An error naming both lines of each repeat (the default): a repeated
    /// image may land in both the training and the test part.
    #[default]
    Error,
    /// Keep the first line of each file, drop the others with a warning.
    Drop,
}

impl Duplicates {
    /// Whether this is the default, [`Duplicates::Error`].
    pub fn is_error(&self) -> bool {
        *self == Duplicates::Error
    }
}

/// A labelled image set.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The manifest or class folder the set was read from (named in errors).
    pub source: PathBuf,
    /// Image paths, resolved.
    pub files: Vec<PathBuf>,
    /// Image names as written in the manifest (or relative to the class folder).
    pub names: Vec<String>,
    /// Label columns: column name -> one cell per image (`None` = empty cell).
    pub columns: BTreeMap<String, Vec<Option<String>>>,
    /// Where each sample was declared, for messages (`line 7`, or the folder).
    pub origins: Vec<String>,
}

impl Dataset {
    /// Reads the set a `[data]` table names; relative paths are from `base`.
    /// A file listed twice is handled as `cfg.duplicates` says.
    /// The images of `[data] unlabelled` are appended with empty cells.
    pub fn load(cfg: &DataConfig, base: &Path) -> Result<Dataset> {
        let set = Dataset::load_listed(cfg, base)?.with_duplicates(cfg.duplicates)?;
        if cfg.unlabelled.is_empty() {
            return Ok(set);
        }
        set.with_unlabelled(&unlabelled_files(&cfg.unlabelled, base)?)
    }

    /// This set followed by the images `files`, every label cell empty. A
    /// file that is already in the set is an error naming both.
    pub fn with_unlabelled(mut self, files: &[PathBuf]) -> Result<Dataset> {
        let known: std::collections::HashMap<PathBuf, usize> = self
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()), i))
            .collect();
        for f in files {
            let key = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
            if let Some(&i) = known.get(&key) {
                return Err(Error::data(
                    &self.source,
                    format!(
                        "{} is both labelled ({}) and in data.unlabelled; list it once",
                        f.display(),
                        self.origins[i]
                    ),
                ));
            }
            self.names.push(f.display().to_string());
            self.origins.push(format!("data.unlabelled: {}", f.display()));
            self.files.push(f.clone());
            for cells in self.columns.values_mut() {
                cells.push(None);
            }
        }
        Ok(self)
    }

    /// The images without a label in any of `columns` (the unlabelled ones).
    pub fn unlabelled_rows(&self, columns: &[&str]) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| columns.iter().all(|c| self.columns.get(*c).is_none_or(|v| v[i].is_none())))
            .collect()
    }

    /// [`Dataset::load`] keeping every row as listed, repeats included (for
    /// `furcate check`, which reports them).
    pub fn load_listed(cfg: &DataConfig, base: &Path) -> Result<Dataset> {
        match (&cfg.manifest, &cfg.folders) {
            (Some(m), _) => Dataset::read_manifest(&resolve(base, m), &cfg.image_column),
            (None, Some(f)) => Dataset::from_folders(&resolve(base, f), &cfg.folder_column),
            (None, None) => Err(Error::Invalid("[data] names neither a manifest nor folders".into())),
        }
    }

    /// Reads a manifest CSV: one row per image, `image_column` holding its
    /// path relative to the CSV, every other column a property. A file
    /// listed twice is an error naming both lines ([`Duplicates::Error`]).
    pub fn from_manifest(path: &Path, image_column: &str) -> Result<Dataset> {
        Dataset::from_manifest_with(path, image_column, Duplicates::Error)
    }

    /// [`Dataset::from_manifest`], a file listed twice handled as `duplicates` says.
    pub fn from_manifest_with(path: &Path, image_column: &str, duplicates: Duplicates) -> Result<Dataset> {
        Dataset::read_manifest(path, image_column)?.with_duplicates(duplicates)
    }

    /// Every row of a manifest, repeats included.
    fn read_manifest(path: &Path, image_column: &str) -> Result<Dataset> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::data(
                path,
                "no such manifest (`furcate generate --out DIR` writes a synthetic set with its \
                 manifest.csv; `furcate demo` makes data/synthetic)",
            ),
            _ => Error::io(path, e),
        })?;
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        let headers = reader.headers().map_err(|e| Error::data(path, format!("header: {e}")))?.clone();
        let image_idx = headers.iter().position(|h| h == image_column).ok_or_else(|| {
            Error::data(
                path,
                format!(
                    "line 1: no column `{image_column}` (the image column); columns are: {}",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut set = Dataset {
            source: path.to_path_buf(),
            files: Vec::new(),
            names: Vec::new(),
            columns: headers
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != image_idx)
                .map(|(_, h)| (h.to_string(), Vec::new()))
                .collect(),
            origins: Vec::new(),
        };
        for record in reader.records() {
            let record = record.map_err(|e| Error::data(path, csv_message(&e)))?;
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let name = record.get(image_idx).unwrap_or("");
            if name.is_empty() {
                return Err(Error::data(path, format!("line {line}: empty `{image_column}` cell")));
            }
            for (i, h) in headers.iter().enumerate() {
                if i == image_idx {
                    continue;
                }
                let cell = record.get(i).unwrap_or("");
                let cell = (!cell.is_empty()).then(|| cell.to_string());
                set.columns.get_mut(h).expect("every header has a column").push(cell);
            }
            set.files.push(dir.join(name));
            set.names.push(name.to_string());
            set.origins.push(format!("line {line}"));
        }
        if set.files.is_empty() {
            return Err(Error::data(path, "the manifest lists no images"));
        }
        Ok(set)
    }

    /// Rows that repeat an earlier row's file: `(earlier, repeat)` pairs, in
    /// the order of the repeats, the earlier row being the file's first.
    /// Files are compared by their canonical path (as written, without `.`
    /// parts, when a file cannot be resolved).
    pub fn repeated_files(&self) -> Vec<(usize, usize)> {
        let mut first: HashMap<PathBuf, usize> = HashMap::new();
        let mut pairs = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            let key = std::fs::canonicalize(f).unwrap_or_else(|_| f.components().collect());
            match first.get(&key) {
                Some(&j) => pairs.push((j, i)),
                None => {
                    first.insert(key, i);
                }
            }
        }
        pairs
    }

    /// The set with repeated files ([`Dataset::repeated_files`]) handled as
    /// `duplicates` says: an [`Error::Data`] naming both lines of each repeat
    /// (the first few, and how many), or the repeats dropped with a warning.
    pub fn with_duplicates(self, duplicates: Duplicates) -> Result<Dataset> {
        let pairs = self.repeated_files();
        if pairs.is_empty() {
            return Ok(self);
        }
        let described: Vec<String> = pairs
            .iter()
            .map(|&(j, i)| {
                format!(
                    "{} ({}) lists the file of {} ({})",
                    self.origins[i], self.names[i], self.origins[j], self.names[j]
                )
            })
            .collect();
        match duplicates {
            Duplicates::Error => Err(Error::data(
                &self.source,
                format!(
                    "{} row(s) repeat an image file: {}; remove them, or set `[data] duplicates = \"drop\"` \
                     to keep each file's first row",
                    pairs.len(),
                    abridged(&described, "; ")
                ),
            )),
            Duplicates::Drop => {
                tracing::warn!(
                    "{}: dropped {} row(s) that repeat an image file ([data] duplicates = \"drop\"): {}",
                    self.source.display(),
                    pairs.len(),
                    abridged(&described, "; ")
                );
                let dropped: std::collections::HashSet<usize> = pairs.iter().map(|&(_, i)| i).collect();
                let keep: Vec<usize> = (0..self.len()).filter(|i| !dropped.contains(i)).collect();
                Ok(self.subset(&keep))
            }
        }
    }

    /// Reads one sub-folder of images per class; the class names fill `column`.
    pub fn from_folders(root: &Path, column: &str) -> Result<Dataset> {
        let mut classes: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(|e| Error::io(root, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        classes.sort();
        let mut set = Dataset {
            source: root.to_path_buf(),
            files: Vec::new(),
            names: Vec::new(),
            columns: BTreeMap::from([(column.to_string(), Vec::new())]),
            origins: Vec::new(),
        };
        for class_dir in classes {
            let class = class_dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
            for file in list_images(&class_dir)? {
                let name = format!("{class}/{}", file.file_name().unwrap_or_default().to_string_lossy());
                set.columns.get_mut(column).expect("the class column exists").push(Some(class.clone()));
                set.origins.push(name.clone());
                set.names.push(name);
                set.files.push(file);
            }
        }
        if set.files.is_empty() {
            return Err(Error::data(root, "no class folders with images found"));
        }
        Ok(set)
    }

    /// Unlabelled images: files, and the images inside folders, sorted.
    pub fn from_paths(paths: &[PathBuf]) -> Result<Dataset> {
        let mut files = Vec::new();
        for p in paths {
            // The OS's own error ("No such file or directory"), as reading the file would give.
            if std::fs::metadata(p).map_err(|e| Error::io(p, e))?.is_dir() {
                files.extend(list_images(p)?);
            } else {
                files.push(p.clone());
            }
        }
        if files.is_empty() {
            return Err(Error::Invalid("no images given".into()));
        }
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        Ok(Dataset {
            source: PathBuf::from("command line"),
            origins: names.clone(),
            names,
            files,
            columns: BTreeMap::new(),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the set has no images.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The cells of a label column as borrowed strings.
    pub fn labels(&self, column: &str) -> Result<Vec<Option<&str>>> {
        let col = self.columns.get(column).ok_or_else(|| {
            Error::data(
                &self.source,
                format!(
                    "no column `{column}`; columns are: {}",
                    self.columns.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        Ok(col.iter().map(|c| c.as_deref()).collect())
    }

    /// Empties every label cell of the rows for which `hidden` is true (their
    /// images stay, unlabelled).
    pub fn hide_labels(&mut self, hidden: impl Fn(usize) -> bool) {
        for column in self.columns.values_mut() {
            for (r, cell) in column.iter_mut().enumerate() {
                if hidden(r) {
                    *cell = None;
                }
            }
        }
    }

    /// The same set restricted to `rows`, in that order.
    pub fn subset(&self, rows: &[usize]) -> Dataset {
        Dataset {
            source: self.source.clone(),
            files: rows.iter().map(|&i| self.files[i].clone()).collect(),
            names: rows.iter().map(|&i| self.names[i].clone()).collect(),
            columns: self
                .columns
                .iter()
                .map(|(k, v)| (k.clone(), rows.iter().map(|&i| v[i].clone()).collect()))
                .collect(),
            origins: rows.iter().map(|&i| self.origins[i].clone()).collect(),
        }
    }

    /// Turns a head's [`Error::Label`] into a data error naming the file and line.
    pub fn label_error(&self, column: &str, e: Error) -> Error {
        match e {
            Error::Label { index, message } => Error::data(
                &self.source,
                format!(
                    "{} ({}), column `{column}`: {message}",
                    self.origins.get(index).map(String::as_str).unwrap_or("?"),
                    self.names.get(index).map(String::as_str).unwrap_or("?")
                ),
            ),
            other => other,
        }
    }
}

/// The images `[data] unlabelled` names: each entry a folder (its images),
/// a file, or a glob pattern (`micrographs/**/*.tif`), relative to `base`.
/// An entry that names nothing is an error naming it.
pub fn unlabelled_files(entries: &[String], base: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in entries {
        let path = resolve(base, Path::new(entry));
        let found = if entry.contains(['*', '?', '[']) {
            let pattern = path.to_string_lossy().to_string();
            let paths = glob::glob(&pattern)
                .map_err(|e| Error::Invalid(format!("data.unlabelled: pattern \"{entry}\": {e}")))?;
            let mut matched: Vec<PathBuf> = paths.filter_map(|p| p.ok()).filter(|p| is_image(p)).collect();
            matched.sort();
            matched
        } else if path.is_dir() {
            list_images(&path)?
        } else if path.is_file() {
            vec![path.clone()]
        } else {
            return Err(Error::Invalid(format!(
                "data.unlabelled: \"{entry}\" ({}) is no file, folder or pattern that matches",
                path.display()
            )));
        };
        if found.is_empty() {
            return Err(Error::Invalid(format!(
                "data.unlabelled: \"{entry}\" ({}) holds no images",
                path.display()
            )));
        }
        files.extend(found);
    }
    Ok(files)
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Whether `p` is a file with an image extension ([`IMAGE_EXTENSIONS`]).
pub(crate) fn is_image(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_image(p))
        .collect();
    files.sort();
    Ok(files)
}

fn csv_message(e: &csv::Error) -> String {
    match e.position() {
        Some(p) => format!("line {}: {e}", p.line()),
        None => e.to_string(),
    }
}

//! The pool of unlabelled images as the command line names it: image files,
//! folders (their images, sorted) and glob patterns (`*`, `?`, `[...]`, `**`
//! for any depth of folders; quote them so that the shell leaves them to
//! furcate). Every bad entry is an error naming it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::data::{is_image, Dataset, IMAGE_EXTENSIONS};
use crate::{Error, Result};

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The image files matching the glob `pattern`, sorted.
fn glob(pattern: &Path) -> Result<Vec<PathBuf>> {
    let text = pattern.to_string_lossy();
    let paths = glob::glob(&text).map_err(|e| Error::data(pattern, format!("not a valid pattern: {e}")))?;
    let mut found: Vec<PathBuf> = paths.filter_map(|p| p.ok()).filter(|p| is_image(p)).collect();
    found.sort();
    Ok(found)
}

/// The image files of the pool entries `entries`, in order (a folder's
/// images sorted, a glob's matches sorted), each file once.
///
/// Errors, naming the entry: a path that does not exist, a file that is not
/// an image (by its extension), a folder without images, a pattern that
/// matches no image.
pub fn expand(entries: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if entries.is_empty() {
        return Err(Error::Invalid("no pool images given".into()));
    }
    let mut files = Vec::new();
    for entry in entries {
        let text = entry.to_string_lossy();
        match std::fs::metadata(entry) {
            Ok(m) if m.is_dir() => {
                let listed = Dataset::from_paths(std::slice::from_ref(entry))
                    .map_err(|_| Error::data(entry, "no images in this folder"))?;
                files.extend(listed.files);
            }
            Ok(_) if is_image(entry) => files.push(entry.clone()),
            Ok(_) => {
                return Err(Error::data(
                    entry,
                    format!("not an image file (furcate reads {})", IMAGE_EXTENSIONS.join(", ")),
                ))
            }
            Err(_) if has_wildcard(&text) => {
                let matched = glob(entry)?;
                if matched.is_empty() {
                    return Err(Error::data(entry, "the pattern matches no image file"));
                }
                files.extend(matched);
            }
            Err(e) => return Err(Error::io(entry, e)),
        }
    }
    let mut seen = HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    Ok(files)
}

//! The pool of unlabelled images as the command line names it: image files,
//! folders (their images, sorted) and glob patterns (`*` any run of
//! characters, `?` one character, in any component of the path; quote them
//! so the shell leaves them to furcate). Every bad entry is an error naming it.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use crate::data::{Dataset, IMAGE_EXTENSIONS};
use crate::{Error, Result};

/// Whether `name` has one of the image extensions furcate reads.
fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Whether `name` matches `pattern` (`*`: any run of characters, `?`: one).
///
/// ```
/// use furcate_core::suggest::pool::wildcard;
/// assert!(wildcard("img_*.png", "img_007.png"));
/// assert!(wildcard("img_??.png", "img_07.png"));
/// assert!(!wildcard("img_*.png", "img_007.tif"));
/// assert!(wildcard("*", ""));
/// ```
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point (the last `*`).
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// The files matching the glob `pattern`, sorted.
fn glob(pattern: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = vec![PathBuf::new()];
    for component in pattern.components() {
        let text = component.as_os_str().to_string_lossy();
        let wild = matches!(component, Component::Normal(_)) && has_wildcard(&text);
        let mut next = Vec::new();
        for base in &found {
            if !wild {
                next.push(base.join(component.as_os_str()));
                continue;
            }
            let dir = if base.as_os_str().is_empty() { Path::new(".") } else { base.as_path() };
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && wildcard(&text, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        found = next;
    }
    Ok(found.into_iter().filter(|p| p.is_file() && is_image(p)).collect())
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

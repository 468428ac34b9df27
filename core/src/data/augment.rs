//! `[data] augment`: symmetries of the microstructure, the transformations
//! of the image that leave every label unchanged.
//!
//! ```toml
//! [data]
//! augment = ["hflip", "vflip", "rot180"]  # extra training rows per image
//! tta = true                              # also average them at prediction
//! ```
//!
//! The transformations are the 7 elements of the dihedral group D4 besides
//! the identity, acting on the extractor's square input ([`Transform`]).
//! Every image gets one more row per transformation: its features are
//! extracted and cached like the plain row's, under the plain row's name
//! with the transformation appended (`<sha>#hflip`, `<sha>#tile0,0,256;rot180`).
//!
//! A row made by a transformation is a *view* of its plain row (the same
//! image and tile, read as it is): it carries its image's labels and goes
//! wherever its image goes (training, validation or test part; the same
//! fold), so an image is never split from its views. Training uses every
//! view of the training images; the scores count images: the views of a
//! scored image are either left out (the plain row is scored) or, with
//! `tta`, averaged into one prediction (the mean probability of a class head,
//! the mean value of a value head).
//!
//! Which transformations are safe is the user's knowledge, not furcate's: a
//! rolling direction, or grains elongated along x, change under `rot90`,
//! `rot270`, `transpose` and `antitranspose` (which swap x and y) but not
//! under `hflip`, `vflip` or `rot180`.

use serde::{Deserialize, Serialize};

/// One element of the dihedral group D4 other than the identity, acting on a
/// square image (`x` to the right, `y` down). Rotations are counter-clockwise
/// as the image is seen (`rot90` as numpy's `rot90`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transform {
    /// Mirror left-right: `out[y][x] = in[y][n-1-x]`.
    Hflip,
    /// Mirror top-bottom: `out[y][x] = in[n-1-y][x]`.
    Vflip,
    /// A quarter turn counter-clockwise: `out[y][x] = in[x][n-1-y]`.
    Rot90,
    /// A half turn: `out[y][x] = in[n-1-y][n-1-x]`.
    Rot180,
    /// A quarter turn clockwise: `out[y][x] = in[n-1-x][y]`.
    Rot270,
    /// Mirror about the main diagonal: `out[y][x] = in[x][y]`.
    Transpose,
    /// Mirror about the other diagonal: `out[y][x] = in[n-1-x][n-1-y]`.
    Antitranspose,
}

impl Transform {
    /// Every transformation, in the order of [`Transform::name`]'s list.
    pub const ALL: [Transform; 7] = [
        Transform::Hflip,
        Transform::Vflip,
        Transform::Rot90,
        Transform::Rot180,
        Transform::Rot270,
        Transform::Transpose,
        Transform::Antitranspose,
    ];

    /// Its name in `[data] augment` (and in the cache row's name).
    pub fn name(&self) -> &'static str {
        match self {
            Transform::Hflip => "hflip",
            Transform::Vflip => "vflip",
            Transform::Rot90 => "rot90",
            Transform::Rot180 => "rot180",
            Transform::Rot270 => "rot270",
            Transform::Transpose => "transpose",
            Transform::Antitranspose => "antitranspose",
        }
    }

    /// The transformation named `name`, or a message listing the names.
    pub fn parse(name: &str) -> std::result::Result<Transform, String> {
        Transform::ALL.into_iter().find(|t| t.name() == name).ok_or_else(|| {
            format!(
                "augment: unknown transformation \"{name}\"; expected one of {} (the plain image is \
                 always used)",
                allowed_names()
            )
        })
    }

    /// Whether it swaps the x and y axes (a quarter turn or a diagonal
    /// mirror): such a transformation changes a direction-dependent structure.
    pub fn swaps_axes(&self) -> bool {
        self.map().0
    }

    /// `(swap, flip the source row, flip the source column)`: output pixel
    /// `(y, x)` reads source `(a, b)` where `(a, b) = swap ? (x, y) : (y, x)`,
    /// then `a = n-1-a` and `b = n-1-b` where flipped.
    fn map(&self) -> (bool, bool, bool) {
        match self {
            Transform::Hflip => (false, false, true),
            Transform::Vflip => (false, true, false),
            Transform::Rot180 => (false, true, true),
            Transform::Transpose => (true, false, false),
            Transform::Rot90 => (true, false, true),
            Transform::Rot270 => (true, true, false),
            Transform::Antitranspose => (true, true, true),
        }
    }

    /// The source index of each pixel of an `n x n` image (row-major).
    pub fn source_indices(&self, n: usize) -> Vec<usize> {
        let (swap, flip_a, flip_b) = self.map();
        let mut out = Vec::with_capacity(n * n);
        for y in 0..n {
            for x in 0..n {
                let (mut a, mut b) = if swap { (x, y) } else { (y, x) };
                if flip_a {
                    a = n - 1 - a;
                }
                if flip_b {
                    b = n - 1 - b;
                }
                out.push(a * n + b);
            }
        }
        out
    }

    /// `planes` (each `n x n`, row-major, one after another: a
    /// [`crate::data::image::Pixels`]'s data) transformed, every plane alike.
    pub fn apply(&self, planes: &[f32], n: usize) -> Vec<f32> {
        let source = self.source_indices(n);
        let mut data = Vec::with_capacity(planes.len());
        for plane in planes.chunks_exact(n * n) {
            data.extend(source.iter().map(|&s| plane[s]));
        }
        data
    }

    /// `self` after `first` (`first` applied, then `self`): `None` is the identity.
    pub fn after(&self, first: Transform) -> Option<Transform> {
        // Compose on a 3 x 3 probe: every element of D4 moves it differently.
        let once: Vec<usize> = first.source_indices(3);
        let twice: Vec<usize> = self.source_indices(3).iter().map(|&s| once[s]).collect();
        Transform::ALL.into_iter().find(|t| t.source_indices(3) == twice)
    }
}

/// A warning when `set` is not closed under composition (see
/// [`missing_compositions`]), `None` when it is.
pub fn closure_warning(set: &[Transform]) -> Option<String> {
    let missing = missing_compositions(set);
    if missing.is_empty() {
        return None;
    }
    let names =
        |t: &[Transform]| t.iter().map(|t| format!("\"{}\"", t.name())).collect::<Vec<_>>().join(", ");
    Some(format!(
        "data.augment = [{}]: if these leave every label unchanged, so do their compositions [{}]; add \
         them to train on every view the symmetries give",
        names(set),
        names(&missing)
    ))
}

/// The names `[data] augment` takes, quoted and comma-separated.
pub fn allowed_names() -> String {
    Transform::ALL.iter().map(|t| format!("\"{}\"", t.name())).collect::<Vec<_>>().join(", ")
}

/// The transformations that compose from `set` but are not in it: empty
/// when `set` (with the identity) is a group. If each of `set` leaves the
/// labels unchanged, so does each of these.
pub fn missing_compositions(set: &[Transform]) -> Vec<Transform> {
    let mut closed: Vec<Transform> = set.to_vec();
    loop {
        let mut added = false;
        for a in closed.clone() {
            for b in closed.clone() {
                if let Some(c) = a.after(b) {
                    if !closed.contains(&c) {
                        closed.push(c);
                        added = true;
                    }
                }
            }
        }
        if !added {
            break;
        }
    }
    let mut missing: Vec<Transform> = closed.into_iter().filter(|t| !set.contains(t)).collect();
    missing.sort();
    missing
}

impl Serialize for Transform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Transform::parse(&name).map_err(serde::de::Error::custom)
    }
}

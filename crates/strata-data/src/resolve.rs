//! Finding a data set by name or path.
//!
//! A name resolves, in this order, to:
//! 1. the embedded UCI digits, for the name `digits`, and the generated
//!    two-dimensional sets `moons`, `blobs` and `rings`;
//!    `mnist-canvas` resolves as `mnist` does, then cuts detection windows
//!    from canvases of its images ([`crate::mnist_canvas_split`]);
//! 2. the path itself, when `name_or_path` is an existing folder;
//! 3. `<data_dir>/<name>`, when the caller gives a data folder (a command-line
//!    option, say);
//! 4. `$STRATA_DATA/<name>`;
//! 5. `~/.cache/strata/<name>`;
//! 6. `/usr/share/datasets/<name>` (where Debian's `dataset-fashion-mnist` lives);
//! 7. when downloading is enabled (`STRATA_DOWNLOAD=1`, or [`Resolver::download`]),
//!    a download of a known data set from its official address (or a mirror) into
//!    `~/.cache/strata/<name>`, with MD5 verification (see [`crate::download()`]).
//!
//! A folder counts when it holds a layout this crate reads: MNIST-like IDX files,
//! the CIFAR-10 binary batches, or an image-folder tree `train/<class>/…`,
//! `test/<class>/…`. When none does, the error lists every place looked and why
//! it did not do.

use crate::cifar::{cifar10_binary_dir, load_cifar10_binary};
use crate::dataset::TrainTest;
use crate::digits::digits_split;
use crate::download::{download, official_remote};
use crate::error::{DataError, Result};
use crate::folder::{is_image_folder, load_image_folder_split};
use crate::idx::{is_mnist_like_dir, load_fashion_mnist, load_mnist_like};
use std::path::{Path, PathBuf};

/// The data set names this crate knows; other names resolve as folders too.
pub const KNOWN_DATASETS: [&str; 4] = ["digits", "mnist", "fashion-mnist", "cifar10"];

/// How a resolved data set is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The UCI digits embedded in the library.
    Embedded,
    /// MNIST-like IDX files (`train-images-idx3-ubyte[.gz]`, ...).
    Idx,
    /// The CIFAR-10 binary batches (`data_batch_1.bin`, ..., `test_batch.bin`).
    CifarBinary,
    /// An image-folder tree, `train/<class>/*` and `test/<class>/*`.
    ImageFolder,
    /// Points of the plane generated on the spot ([`crate::plane_split`]).
    Generated,
    /// Windows of canvases of the MNIST files in `path`
    /// ([`crate::mnist_canvas_split`], `dataset = "mnist-canvas"`).
    Canvas,
}

/// Where a data set was found and how it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The data set name (the folder name for a path).
    pub name: String,
    /// The folder, `None` for the embedded digits.
    pub path: Option<PathBuf>,
    /// Its layout.
    pub layout: Layout,
}

impl Resolved {
    /// Reads the train and test sets.
    ///
    /// IDX data whose name contains `fashion` gets Fashion-MNIST's class names,
    /// other IDX data the digits `"0"`–`"9"`.
    pub fn load(&self) -> Result<TrainTest> {
        let path = self.path.as_deref().unwrap_or(Path::new(""));
        let split = match self.layout {
            Layout::Embedded => digits_split(),
            Layout::Generated => crate::plane::plane_split(&self.name)?,
            Layout::Canvas => crate::canvas::mnist_canvas_split(&load_mnist_like(path)?)?,
            Layout::Idx if self.name.contains("fashion") => load_fashion_mnist(path)?,
            Layout::Idx => load_mnist_like(path)?,
            Layout::CifarBinary => load_cifar10_binary(path)?,
            Layout::ImageFolder => load_image_folder_split(path)?,
        };
        // A network sized for the training images would read test images of
        // another shape as scrambled pixels, or fail only after training.
        let (tr, te) = (split.train.image_shape(), split.test.image_shape());
        if !split.test.is_empty() && tr != te {
            return Err(DataError::Invalid(format!(
                "{}: the training images are {}×{}×{} but the test images {}×{}×{}; both splits must have one image shape",
                path.display(),
                tr[0],
                tr[1],
                tr[2],
                te[0],
                te[1],
                te[2]
            )));
        }
        Ok(split)
    }

    /// The test images' shape `[C, H, W]` and the class names, reading no
    /// more than that needs (the MNIST files for `mnist-canvas`, no windows).
    pub fn describe(&self) -> Result<([usize; 3], Vec<String>)> {
        if self.layout == Layout::Canvas {
            let path = self.path.as_deref().unwrap_or(Path::new(""));
            let mnist = load_mnist_like(path)?;
            let mut names = mnist.test.class_names().to_vec();
            names.push(crate::canvas::BACKGROUND.into());
            return Ok((mnist.test.image_shape(), names));
        }
        let split = self.load()?;
        Ok((split.test.image_shape(), split.test.class_names().to_vec()))
    }
}

/// The layout of a folder, if it holds one this crate reads.
pub fn detect_layout(dir: &Path) -> Option<Layout> {
    if is_mnist_like_dir(dir) {
        Some(Layout::Idx)
    } else if cifar10_binary_dir(dir).is_some() {
        Some(Layout::CifarBinary)
    } else if is_image_folder(dir) {
        Some(Layout::ImageFolder)
    } else {
        None
    }
}

/// The folders a name is looked up in, in order (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolver {
    /// A data folder given by the caller, looked in first.
    pub data_dir: Option<PathBuf>,
    /// `$STRATA_DATA`.
    pub env_dir: Option<PathBuf>,
    /// `~/.cache/strata`.
    pub cache_dir: Option<PathBuf>,
    /// `/usr/share/datasets`.
    pub system_dir: Option<PathBuf>,
    /// Whether to download a known data set into `cache_dir` when it is found nowhere.
    pub download: bool,
    /// A base address to download from instead of the official one.
    pub mirror: Option<String>,
}

impl Resolver {
    /// The folders of this process: `data_dir`, `$STRATA_DATA`, `$HOME/.cache/strata`
    /// and `/usr/share/datasets`; downloading is enabled by `STRATA_DOWNLOAD=1` (or
    /// `true`, `yes`), from `$STRATA_MIRROR` if set.
    pub fn from_env(data_dir: Option<&Path>) -> Self {
        let env = |k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Resolver {
            data_dir: data_dir.map(Path::to_path_buf),
            env_dir: env("STRATA_DATA"),
            cache_dir: env("HOME").map(|h| h.join(".cache").join("strata")),
            system_dir: Some(PathBuf::from("/usr/share/datasets")),
            download: std::env::var("STRATA_DOWNLOAD")
                .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes")),
            mirror: std::env::var("STRATA_MIRROR")
                .ok()
                .filter(|m| !m.is_empty()),
        }
    }

    /// Finds `name_or_path`; the error lists every place looked.
    pub fn resolve(&self, name_or_path: &str) -> Result<Resolved> {
        if name_or_path == "digits" {
            return Ok(Resolved {
                name: "digits".into(),
                path: None,
                layout: Layout::Embedded,
            });
        }
        if crate::plane::PLANE_DATASETS.contains(&name_or_path) {
            return Ok(Resolved {
                name: name_or_path.into(),
                path: None,
                layout: Layout::Generated,
            });
        }
        if name_or_path == "mnist-canvas" {
            // Made from MNIST, found (or downloaded) wherever MNIST is.
            let mnist = self.resolve("mnist")?;
            return Ok(Resolved {
                name: name_or_path.into(),
                layout: Layout::Canvas,
                ..mnist
            });
        }
        let mut looked: Vec<(PathBuf, String)> = Vec::new();
        let as_path = Path::new(name_or_path);
        let is_pathlike = name_or_path.contains(std::path::MAIN_SEPARATOR)
            || name_or_path.contains('/')
            || as_path.is_dir();
        let mut candidates = Vec::new();
        if is_pathlike {
            candidates.push(as_path.to_path_buf());
        }
        let name = as_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| name_or_path.to_string());
        if !is_pathlike {
            for base in [
                &self.data_dir,
                &self.env_dir,
                &self.cache_dir,
                &self.system_dir,
            ]
            .into_iter()
            .flatten()
            {
                candidates.push(base.join(&name));
            }
        }
        for dir in candidates {
            if !dir.is_dir() {
                looked.push((dir, "no such folder".into()));
                continue;
            }
            match detect_layout(&dir) {
                Some(layout) => {
                    return Ok(Resolved {
                        name,
                        path: Some(dir),
                        layout,
                    })
                }
                None => looked.push((
                    dir,
                    "holds neither IDX files, CIFAR-10 binary batches nor train/ and test/ image folders".into(),
                )),
            }
        }
        if let (false, Some(remote)) = (is_pathlike, official_remote(&name)) {
            let remote = match &self.mirror {
                Some(m) => remote.with_base_url(m),
                None => remote,
            };
            let from = PathBuf::from(&remote.base_url);
            match (&self.cache_dir, self.download) {
                (Some(cache), true) => match download(&remote, cache) {
                    Ok(dir) => match detect_layout(&dir) {
                        Some(layout) => {
                            return Ok(Resolved {
                                name,
                                path: Some(dir),
                                layout,
                            })
                        }
                        None => looked.push((dir, "downloaded, but holds no known layout".into())),
                    },
                    Err(e) => looked.push((from, format!("download failed: {e}"))),
                },
                (None, true) => looked.push((from, "not downloaded: no cache folder".into())),
                (_, false) => looked.push((
                    from,
                    "not downloaded: downloading is off (STRATA_DOWNLOAD=1 enables it)".into(),
                )),
            }
        }
        Err(DataError::NotFound {
            name: name_or_path.to_string(),
            looked,
        })
    }
}

/// Finds a data set by name or path, looking in the places of
/// [`Resolver::from_env`] (see the module docs for the order).
pub fn resolve(name_or_path: &str, data_dir: Option<&Path>) -> Result<Resolved> {
    Resolver::from_env(data_dir).resolve(name_or_path)
}

/// Finds and reads a data set: [`resolve`] then [`Resolved::load`].
pub fn load(name_or_path: &str, data_dir: Option<&Path>) -> Result<TrainTest> {
    resolve(name_or_path, data_dir)?.load()
}

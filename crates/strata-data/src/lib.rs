//! # strata-data
//!
//! Data set readers and minibatching for strata:
//!
//! - [`Dataset`]: labelled images in NCHW layout (`u8` or `f32` pixels) with class
//!   names, converted to `Tensor<f32>` scaled to `[0, 1]`; subsets and a seeded
//!   validation split.
//! - Readers: IDX files of MNIST and Fashion-MNIST, plain or gzipped
//!   ([`load_mnist_like`]); the CIFAR-10 binary batches ([`load_cifar10_binary`]);
//!   image folders of PNG/JPEG files decoded in parallel ([`load_image_folder_split`]);
//!   and the UCI digits embedded in the library ([`digits`]).
//! - Name resolution ([`resolve`], [`load`]): an explicit path, a caller's data
//!   folder, `$STRATA_DATA/<name>`, `~/.cache/strata/<name>`,
//!   `/usr/share/datasets/<name>`, then (when enabled) a download from the official
//!   address into the cache with MD5 verification ([`download()`]).
//! - Minibatches ([`Batcher`]): seeded shuffling that depends only on the seed and
//!   the epoch, `drop_last`, and a background prefetching thread.
//! - Preprocessing (section 12.4.2, [`FittedPipeline`]): resize and centre crop,
//!   per-pixel whitening, per-image and local contrast normalisation, PCA and ZCA
//!   whitening of whole images ([`whiten`]) and of patches ([`PatchZca`], a fixed
//!   first convolution) — fitted on the training set, stored as named tensors,
//!   applied unchanged to test images.
//! - Augmentation (section 12.4.3, [`Augmentation`]): random crops with padding,
//!   rescale-then-crop, rotations that keep unknown pixels out, flips; run by the
//!   batcher on the prefetch thread with draws fixed by (seed, epoch, batch).
//!   Test-time views: [`multi_crop`]. Image grids as PNG: [`save_grid`].
//!
//! Fitting per-pixel whitening and ZCA on a small in-memory data set
//! ([`FittedPipeline`]):
//!
//! ```rust
//! use strata_data::{Dataset, FittedPipeline, Preprocess};
//!
//! # fn main() -> Result<(), strata_data::DataError> {
//! // Six 1×2×2 images of byte pixels (0..=255) in two classes, held in memory.
//! let pixels: Vec<u8> = vec![10, 200, 30, 40, 20, 180, 60, 80, 30, 220, 90, 20,
//!                            40, 190, 10, 60, 50, 210, 50, 100, 60, 170, 70, 40];
//! let classes = vec!["a".to_string(), "b".to_string()];
//! let mut train = Dataset::from_u8(pixels, [6, 1, 2, 2], vec![0, 1, 0, 1, 0, 1], classes.clone(), 255.0)?;
//! let mut test = Dataset::from_u8(vec![35, 195, 50, 60], [1, 1, 2, 2], vec![0], classes, 255.0)?;
//! // Per-pixel whitening, then ZCA of whole images, fitted on the training set only.
//! let steps = [Preprocess::PixelWhiten { eps: 1e-3 }, Preprocess::Zca { eps: 1e-2 }];
//! let fitted = FittedPipeline::fit_apply(&steps, &mut train)?; // fits, then transforms `train`
//! fitted.apply(&mut test)?; // the training statistics, unchanged
//! assert_eq!((fitted.output_shape(), test.shape()), ([1, 2, 2], [1, 1, 2, 2]));
//! // Every pixel of the whitened training images has mean 0.
//! let z = train.to_tensor()?.into_vec();
//! for p in 0..4 {
//!     let mean = z.iter().skip(p).step_by(4).sum::<f32>() / 6.0;
//!     assert!(mean.abs() < 1e-4, "pixel {p}: mean {mean}");
//! }
//! // The fitted state as named tensors (for a checkpoint) reads back equal.
//! assert_eq!(FittedPipeline::from_tensors(&fitted.to_tensors(), &steps)?, fitted);
//! # Ok(()) }
//! ```
//!
//! Bad input never panics: every reader returns a [`DataError`] naming the file and
//! what was expected and found.
//!
//! ```
//! use std::sync::Arc;
//! use strata_data::{digits_split, Batcher};
//!
//! let data = digits_split(); // embedded: 1,501 train + 296 test 8×8 images
//! let (train, validation) = data.train.split_validation(300, 7)?;
//! assert_eq!((train.len(), validation.len()), (1201, 300));
//!
//! let batcher = Batcher::new(64)?.shuffle(1).drop_last(true);
//! let train = Arc::new(train);
//! for epoch in 0..2 {
//!     for batch in batcher.prefetch(Arc::clone(&train), epoch, 4) {
//!         assert_eq!(batch.images.shape(), &[64, 1, 8, 8]); // pixels / 16, in [0, 1]
//!         assert_eq!(batch.labels.len(), 64);
//!     }
//! }
//! let test_images = data.test.to_tensor()?; // [296, 1, 8, 8]
//! assert_eq!(test_images.shape(), &[296, 1, 8, 8]);
//! # Ok::<(), strata_data::DataError>(())
//! ```
//!
//! Preprocessing fitted on the training set and augmentation on the fly:
//!
//! ```
//! use std::sync::Arc;
//! use strata_data::{digits_split, Augmentation, Batcher, FittedPipeline, Preprocess};
//!
//! let mut data = digits_split();
//! let steps = [Preprocess::PixelWhiten { eps: 1e-2 }, Preprocess::Zca { eps: 0.1 }];
//! let fitted = FittedPipeline::fit_apply(&steps, &mut data.train)?;
//! fitted.apply(&mut data.test)?; // the training statistics, unchanged
//! let saved = fitted.to_tensors(); // named tensors for the checkpoint
//! assert_eq!(FittedPipeline::from_tensors(&saved, &steps)?, fitted);
//!
//! let augment = Augmentation::new(3).crop(8, 8, 1).flip();
//! let batcher = Batcher::new(100)?.shuffle(1).augment(augment);
//! assert_eq!(batcher.check(&data.train)?, [1, 8, 8]);
//! for batch in batcher.prefetch(Arc::new(data.train), 0, 2) {
//!     assert_eq!(batch.images.shape()[1..], [1, 8, 8]);
//! }
//! # Ok::<(), strata_data::DataError>(())
//! ```
//!
//! Reading MNIST from a folder (or by name, see [`resolve`]):
//!
//! ```no_run
//! let mnist = strata_data::load_mnist_like("../shared/data/mnist")?;
//! assert_eq!(mnist.train.shape(), [60_000, 1, 28, 28]);
//! let same = strata_data::load("mnist", Some("../shared/data".as_ref()))?;
//! # Ok::<(), strata_data::DataError>(())
//! ```

#![warn(missing_docs)]

mod augment;
mod batch;
pub mod canvas;
mod cifar;
mod dataset;
mod digits;
mod download;
mod error;
mod folder;
mod geometry;
mod grid;
mod idx;
mod multicrop;
mod normalize;
mod plane;
mod preprocess;
mod preprocess_io;
mod resolve;
mod shuffle;
pub mod whiten;

pub use augment::{AugmentStep, Augmentation};
pub use batch::{Batch, Batcher, Batches, Prefetcher};
pub use canvas::{
    benchmark_canvases, make_canvases, mnist_canvas_split, window_set, with_background, BBox,
    Canvas, CanvasOptions, Object, WindowOptions,
};
pub use cifar::{
    load_cifar10_binary, parse_cifar10_batch, read_cifar10_batch, CIFAR10_CLASSES,
    CIFAR10_RECORD_LEN, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES,
};
pub use dataset::{validation_indices, Dataset, Pixels, TrainTest};
pub use digits::{
    digits, digits_split, parse_digits_csv, DIGITS_CSV_GZ, DIGITS_LEN, DIGITS_TEST_LEN,
};
pub use download::{download, extract_tar_gz, fetch_verified, official_remote, Packing, Remote};
pub use error::{DataError, Result};
pub use folder::{
    list_class_folder, load_class_folder, load_image_folder, load_image_folder_split, read_image,
    ClassFolder, IMAGE_EXTENSIONS,
};
pub use geometry::{
    center_crop, crop_window, crop_window_reflect, flip_horizontal, resize_center_crop,
    resize_image, rotate_crop, rotation_zoom, Filter,
};
pub use grid::{grid_pixels, save_grid, GridOptions, GridScale};
pub use idx::{
    load_fashion_mnist, load_idx_pair, load_mnist_like, read_idx, write_idx, IdxArray,
    FASHION_MNIST_CLASSES, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, MNIST_CLASSES,
};
pub use multicrop::{multi_crop, multi_crop_offsets, translate_views, MULTI_CROP_VIEWS};
pub use normalize::{local_contrast, normalize_image};
pub use plane::{plane_split, PLANE_DATASETS};
pub use preprocess::{FittedPipeline, Preprocess};
pub use resolve::{detect_layout, load, resolve, Layout, Resolved, Resolver, KNOWN_DATASETS};
pub use shuffle::{mix_seed, permutation, shuffle_in_place};
pub use whiten::{Padding, PatchZca, Whitening, WhiteningKind};

//! Image folders: `root/<split>/<class>/*.{png,jpg,jpeg}`.
//!
//! Labels are the indices of the sorted class-folder names; within a class the
//! files are read in sorted order, so a folder always gives the same data set.
//! Images are decoded in parallel (rayon). All must have the size of the first;
//! grey images become one channel, colour images three (alpha is dropped), and a
//! set mixing both is read as colour.

use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The file extensions read as images (compared without case).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut v = Vec::new();
    for entry in rd {
        v.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    v.sort();
    Ok(v)
}

/// The listing of a folder of class folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassFolder {
    /// The class-folder names, sorted; a label is an index into them.
    pub classes: Vec<String>,
    /// Every image file with its label, classes in order and files sorted by name.
    pub files: Vec<(PathBuf, usize)>,
}

/// Lists a folder of class folders (`dir/<class>/*.{png,jpg,jpeg}`), skipping
/// hidden folders and files of other kinds; a class folder without images is
/// [`DataError::EmptyClass`].
pub fn list_class_folder(dir: impl AsRef<Path>) -> Result<ClassFolder> {
    let dir = dir.as_ref();
    let mut classes = Vec::new();
    let mut files = Vec::new();
    let hidden = |p: &Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    };
    for class_dir in sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir() && !hidden(p))
    {
        let name = class_dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| DataError::format(&class_dir, "class folder name is not UTF-8"))?
            .to_string();
        let label = classes.len();
        let before = files.len();
        for f in sorted_entries(&class_dir)? {
            if f.is_file() && is_image(&f) {
                files.push((f, label));
            }
        }
        if files.len() == before {
            return Err(DataError::EmptyClass { path: class_dir });
        }
        classes.push(name);
    }
    if classes.is_empty() {
        return Err(DataError::format(
            dir,
            "expected class folders holding images, found none",
        ));
    }
    Ok(ClassFolder { classes, files })
}

/// One decoded image: its size, channels (1 or 3) and bytes (HWC).
struct Decoded {
    w: u32,
    h: u32,
    channels: usize,
    bytes: Vec<u8>,
}

/// The decoder's complaint in words a user can act on: what is wrong with
/// the file, without the decoder's internal structures (a PNG chunk's
/// `ChunkType { … }` dump, checksums in hex).
fn decode_message(e: &image::ImageError, len: usize) -> String {
    use image::ImageError as E;
    let said = e.to_string();
    let plain = said
        .split(" while decoding")
        .next()
        .unwrap_or(&said)
        .trim()
        .to_string();
    match e {
        E::Decoding(_) if said.contains("CRC") || said.contains("checksum") => format!(
            "a checksum inside the file does not match its data ({len} bytes): the file is \
             damaged; replace it or remove it from the folder"
        ),
        _ if said.contains("Not enough bytes")
            || said.contains("UnexpectedEof")
            || said.to_lowercase().contains("unexpected end") =>
        {
            format!("the file ({len} bytes) ends before the image does: it was cut short")
        }
        _ if said.contains("could not be determined") => {
            "neither a PNG nor a JPEG file: its first bytes are neither format's signature".into()
        }
        E::Decoding(_) => format!(
            "the file ({len} bytes) is not a valid PNG or JPEG image, or is cut short: {plain}"
        ),
        E::Unsupported(_) => format!(
            "not a PNG or JPEG image strata can read (PNG and baseline/progressive JPEG \
             are): {plain}"
        ),
        E::Limits(_) => format!("the image is larger than the decoder allows: {plain}"),
        E::IoError(_) => format!("the file ({len} bytes) ends before the image does: {plain}"),
        _ => plain,
    }
}

fn decode(path: &Path) -> Result<Decoded> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let img = image::load_from_memory(&bytes).map_err(|e| DataError::Decode {
        path: path.into(),
        message: decode_message(&e, bytes.len()),
    })?;
    let (w, h) = (img.width(), img.height());
    let grey = !img.color().has_color();
    let (channels, bytes) = if grey {
        (1, img.into_luma8().into_raw())
    } else {
        (3, img.into_rgb8().into_raw())
    };
    Ok(Decoded {
        w,
        h,
        channels,
        bytes,
    })
}

/// Reads a folder of class folders (`dir/<class>/*.{png,jpg,jpeg}`) into a
/// [`Dataset`] of `u8` pixels scaled by 255.
///
/// Errors name the file: a class folder without images, an image that cannot be
/// read or decoded, an image whose size differs from the first one's.
pub fn load_class_folder(dir: impl AsRef<Path>) -> Result<Dataset> {
    let ClassFolder { classes, files } = list_class_folder(dir)?;
    let decoded: Vec<Result<Decoded>> = files.par_iter().map(|(p, _)| decode(p)).collect();
    // Report the first failure in file order, whichever thread met it first.
    let decoded = decoded.into_iter().collect::<Result<Vec<Decoded>>>()?;
    let first = &decoded[0];
    let (w, h) = (first.w, first.h);
    for (d, (p, _)) in decoded.iter().zip(&files) {
        if (d.w, d.h) != (w, h) {
            return Err(DataError::ImageSize {
                path: p.clone(),
                found_w: d.w,
                found_h: d.h,
                expected_w: w,
                expected_h: h,
                first: files[0].0.clone(),
            });
        }
    }
    let channels = decoded.iter().map(|d| d.channels).max().unwrap_or(1);
    let plane = (w as usize) * (h as usize);
    let image_len = channels * plane;
    let mut pixels = vec![0u8; decoded.len() * image_len];
    pixels
        .par_chunks_mut(image_len.max(1))
        .zip(decoded.par_iter())
        .for_each(|(out, d)| hwc_to_chw(&d.bytes, d.channels, channels, plane, out));
    Dataset::from_u8(
        pixels,
        [decoded.len(), channels, h as usize, w as usize],
        files.iter().map(|(_, l)| *l).collect(),
        classes,
        255.0,
    )
}

/// Writes an HWC image of `src_c` channels as a CHW image of `dst_c` channels
/// (grey is replicated into colour).
fn hwc_to_chw(src: &[u8], src_c: usize, dst_c: usize, plane: usize, out: &mut [u8]) {
    for c in 0..dst_c {
        let sc = if src_c == 1 { 0 } else { c };
        for (i, o) in out[c * plane..(c + 1) * plane].iter_mut().enumerate() {
            *o = src[i * src_c + sc];
        }
    }
}

/// Reads one PNG or JPEG file as `[channels, H, W]` pixels scaled to
/// `[0, 1]`: grey is replicated into colour, colour becomes grey by the mean
/// of its channels. Errors name the file and say what is wrong with it.
pub fn read_image(path: impl AsRef<Path>, channels: usize) -> Result<(Vec<f32>, [usize; 3])> {
    let path = path.as_ref();
    if channels != 1 && channels != 3 {
        return Err(DataError::Invalid(format!(
            "{}: images are read as 1 or 3 channels, not {channels}",
            path.display()
        )));
    }
    let d = decode(path)?;
    let plane = d.w as usize * d.h as usize;
    let mut out = vec![0.0f32; channels * plane];
    if channels == 1 && d.channels == 3 {
        for (o, px) in out.iter_mut().zip(d.bytes.chunks_exact(3)) {
            *o = px.iter().map(|&v| v as f32).sum::<f32>() / (3.0 * 255.0);
        }
    } else {
        let mut chw = vec![0u8; channels * plane];
        hwc_to_chw(&d.bytes, d.channels, channels, plane, &mut chw);
        for (o, &v) in out.iter_mut().zip(&chw) {
            *o = v as f32 / 255.0;
        }
    }
    Ok((out, [channels, d.h as usize, d.w as usize]))
}

/// Reads `root/<split>` as a folder of class folders (see [`load_class_folder`]).
pub fn load_image_folder(root: impl AsRef<Path>, split: &str) -> Result<Dataset> {
    load_class_folder(root.as_ref().join(split))
}

/// Reads `root/train` and `root/test`, checking that they have the same classes
/// and image shape.
pub fn load_image_folder_split(root: impl AsRef<Path>) -> Result<TrainTest> {
    let root = root.as_ref();
    let train = load_image_folder(root, "train")?;
    let test = load_image_folder(root, "test")?;
    if train.class_names() != test.class_names() {
        return Err(DataError::format(
            root.join("test"),
            format!(
                "classes {:?} differ from those of {}: {:?}",
                test.class_names(),
                root.join("train").display(),
                train.class_names()
            ),
        ));
    }
    if train.image_shape() != test.image_shape() {
        return Err(DataError::format(
            root.join("test"),
            format!(
                "images are {:?} (CHW), expected {:?} as in {}",
                test.image_shape(),
                train.image_shape(),
                root.join("train").display()
            ),
        ));
    }
    Ok(TrainTest { train, test })
}

/// Whether `root` looks like an image-folder data set (`root/train/<class>/`).
pub(crate) fn is_image_folder(root: &Path) -> bool {
    root.join("train").is_dir() && root.join("test").is_dir()
}

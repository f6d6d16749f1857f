//! [`Dataset`]: labelled images in NCHW layout, with class names.

use crate::error::{DataError, Result};
use crate::shuffle::permutation;
use rayon::prelude::*;
use strata_tensor::{Element, Tensor};

/// The pixel storage of a [`Dataset`], row-major NCHW.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// Raw integer pixels, `0..=pixel_max` (255 for photographs, 16 for the UCI digits).
    U8(Vec<u8>),
    /// Real-valued pixels, used as they are (for example after a preprocessing step).
    F32(Vec<f32>),
}

impl Pixels {
    /// Number of stored values.
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A labelled image data set: `N` images of `C` channels, `H` rows and `W` columns,
/// stored as one NCHW array, with a label in `0..class_names.len()` per image.
///
/// Integer pixels are kept as bytes (a quarter of the memory of `f32`) and scaled
/// to `[0, 1]` — divided by [`Dataset::pixel_max`] — when converted to tensors or
/// batches. Preprocessing steps can turn the data set into real-valued pixels with
/// [`Dataset::into_f32`] and edit them through [`Dataset::f32_pixels_mut`].
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pixels: Pixels,
    shape: [usize; 4],
    labels: Vec<usize>,
    class_names: Vec<String>,
    pixel_max: f32,
}

fn check_parts(
    len: usize,
    shape: [usize; 4],
    labels: &[usize],
    class_names: &[String],
) -> Result<()> {
    let expected = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| DataError::Invalid(format!("shape {shape:?} overflows")))?;
    if len != expected {
        return Err(DataError::Invalid(format!(
            "pixel buffer holds {len} values, expected {expected} for shape {shape:?}"
        )));
    }
    if labels.len() != shape[0] {
        return Err(DataError::Invalid(format!(
            "{} labels for {} images",
            labels.len(),
            shape[0]
        )));
    }
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l >= class_names.len())
    {
        return Err(DataError::Invalid(format!(
            "label {l} of image {i} is not below the number of classes {}",
            class_names.len()
        )));
    }
    Ok(())
}

impl Dataset {
    /// A data set of integer pixels in `0..=pixel_max`, NCHW `shape`.
    ///
    /// Fails if the buffer, the labels and the shape disagree, if a label is not a
    /// class index, or if `pixel_max` is not positive.
    pub fn from_u8(
        pixels: Vec<u8>,
        shape: [usize; 4],
        labels: Vec<usize>,
        class_names: Vec<String>,
        pixel_max: f32,
    ) -> Result<Self> {
        check_parts(pixels.len(), shape, &labels, &class_names)?;
        if !(pixel_max > 0.0 && pixel_max.is_finite()) {
            return Err(DataError::Invalid(format!(
                "pixel_max must be positive, found {pixel_max}"
            )));
        }
        Ok(Dataset {
            pixels: Pixels::U8(pixels),
            shape,
            labels,
            class_names,
            pixel_max,
        })
    }

    /// A data set of real-valued pixels, used as they are (`pixel_max` is 1).
    pub fn from_f32(
        pixels: Vec<f32>,
        shape: [usize; 4],
        labels: Vec<usize>,
        class_names: Vec<String>,
    ) -> Result<Self> {
        check_parts(pixels.len(), shape, &labels, &class_names)?;
        Ok(Dataset {
            pixels: Pixels::F32(pixels),
            shape,
            labels,
            class_names,
            pixel_max: 1.0,
        })
    }

    /// Number of images `N`.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// Whether the data set holds no image.
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// The NCHW shape `[N, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// The shape of one image, `[C, H, W]`.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.shape[1], self.shape[2], self.shape[3]]
    }

    /// Number of values in one image, `C·H·W`.
    pub fn image_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    /// The label of each image, a class index.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The class names; label `k` names class `class_names()[k]`.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The stored pixels.
    pub fn pixels(&self) -> &Pixels {
        &self.pixels
    }

    /// The value that integer pixels are divided by to fall in `[0, 1]`
    /// (255 for photographs, 16 for the UCI digits, 1 for real-valued pixels).
    pub fn pixel_max(&self) -> f32 {
        self.pixel_max
    }

    /// Number of images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// The same images and labels under other class names (as many as before or more).
    pub fn with_class_names(mut self, class_names: Vec<String>) -> Result<Self> {
        check_parts(self.pixels.len(), self.shape, &self.labels, &class_names)?;
        self.class_names = class_names;
        Ok(self)
    }

    /// Writes image `index`, scaled to `[0, 1]` (divided by [`Dataset::pixel_max`]),
    /// into `out` (of length [`Dataset::image_len`]).
    ///
    /// # Panics
    /// If `index >= len()` or `out` has the wrong length (a caller bug, not bad input).
    pub fn write_image(&self, index: usize, out: &mut [f32]) {
        let n = self.image_len();
        let range = index * n..(index + 1) * n;
        match &self.pixels {
            Pixels::U8(v) => {
                let inv = 1.0 / self.pixel_max;
                for (o, &p) in out.iter_mut().zip(&v[range]) {
                    *o = p as f32 * inv;
                }
            }
            Pixels::F32(v) => out.copy_from_slice(&v[range]),
        }
    }

    /// The images at `indices` as a `[k, C, H, W]` tensor scaled to `[0, 1]`, and
    /// their labels.
    pub fn batch(&self, indices: &[usize]) -> Result<(Tensor<f32>, Vec<usize>)> {
        self.check_indices(indices)?;
        let n = self.image_len();
        let mut data = vec![0.0f32; indices.len() * n];
        if n > 0 {
            for (chunk, &i) in data.chunks_exact_mut(n).zip(indices) {
                self.write_image(i, chunk);
            }
        }
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        let [_, c, h, w] = self.shape;
        Ok((Tensor::from_vec(data, &[indices.len(), c, h, w])?, labels))
    }

    /// All images as an `[N, C, H, W]` tensor scaled to `[0, 1]` (for the UCI
    /// digits, pixel/16).
    pub fn to_tensor(&self) -> Result<Tensor<f32>> {
        let n = self.image_len();
        let mut data = vec![0.0f32; self.pixels.len()];
        if n > 0 {
            data.par_chunks_mut(n)
                .enumerate()
                .for_each(|(i, chunk)| self.write_image(i, chunk));
        }
        Ok(Tensor::from_vec(data, &self.shape)?)
    }

    /// All images as an `[N, C, H, W]` tensor of another element type (`f64` to
    /// check gradients), scaled to `[0, 1]` like [`Dataset::to_tensor`].
    pub fn to_tensor_of<T: Element>(&self) -> Result<Tensor<T>> {
        let data = match &self.pixels {
            Pixels::U8(v) => {
                let inv = 1.0 / self.pixel_max as f64;
                v.par_iter().map(|&p| T::of(p as f64 * inv)).collect()
            }
            Pixels::F32(v) => v.par_iter().map(|&p| T::of(p as f64)).collect(),
        };
        Ok(Tensor::from_vec(data, &self.shape)?)
    }

    /// The stored bytes of image `index` (CHW), for integer pixels; `None` for
    /// real-valued pixels or an index out of range.
    pub fn image_bytes(&self, index: usize) -> Option<&[u8]> {
        let n = self.image_len();
        match &self.pixels {
            Pixels::U8(v) if index < self.len() => Some(&v[index * n..(index + 1) * n]),
            _ => None,
        }
    }

    /// The labels as an `[N]` tensor of class indices (for code that wants tensors).
    pub fn labels_tensor(&self) -> Result<Tensor<f32>> {
        let v = self.labels.iter().map(|&l| l as f32).collect();
        Ok(Tensor::from_vec(v, &[self.len()])?)
    }

    /// This data set with real-valued pixels scaled to `[0, 1]`: the starting point
    /// of preprocessing steps that change pixel values.
    pub fn into_f32(self) -> Dataset {
        match self.pixels {
            Pixels::F32(_) => self,
            Pixels::U8(ref v) => {
                let inv = 1.0 / self.pixel_max;
                let data = v.par_iter().map(|&p| p as f32 * inv).collect();
                Dataset {
                    pixels: Pixels::F32(data),
                    pixel_max: 1.0,
                    ..self
                }
            }
        }
    }

    /// The real-valued pixels, for in-place preprocessing; `None` for integer pixels
    /// (see [`Dataset::into_f32`]).
    pub fn f32_pixels_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.pixels {
            Pixels::F32(v) => Some(v),
            Pixels::U8(_) => None,
        }
    }

    fn check_indices(&self, indices: &[usize]) -> Result<()> {
        match indices.iter().find(|&&i| i >= self.len()) {
            Some(i) => Err(DataError::Invalid(format!(
                "index {i} out of range for a data set of {} images",
                self.len()
            ))),
            None => Ok(()),
        }
    }

    /// A new data set of the images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Result<Dataset> {
        self.check_indices(indices)?;
        let n = self.image_len();
        let pixels = match &self.pixels {
            Pixels::U8(v) => Pixels::U8(
                indices
                    .iter()
                    .flat_map(|&i| &v[i * n..(i + 1) * n])
                    .copied()
                    .collect(),
            ),
            Pixels::F32(v) => Pixels::F32(
                indices
                    .iter()
                    .flat_map(|&i| &v[i * n..(i + 1) * n])
                    .copied()
                    .collect(),
            ),
        };
        let [_, c, h, w] = self.shape;
        Ok(Dataset {
            pixels,
            shape: [indices.len(), c, h, w],
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
            pixel_max: self.pixel_max,
        })
    }

    /// The images `start..end` as a new data set.
    pub fn subset(&self, start: usize, end: usize) -> Result<Dataset> {
        if start > end || end > self.len() {
            return Err(DataError::Invalid(format!(
                "range {start}..{end} out of bounds for a data set of {} images",
                self.len()
            )));
        }
        self.select(&(start..end).collect::<Vec<_>>())
    }

    /// The first `min(n, len())` images, for quick tests.
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        self.select(&(0..n).collect::<Vec<_>>())
            .expect("indices below len are in range")
    }

    /// Holds out a random validation set of `n` images, chosen by `seed`.
    ///
    /// Returns `(train, validation)`: the two are disjoint, together hold every
    /// image once, and each keeps the original order of its images. The same
    /// seed always picks the same images (see [`validation_indices`]).
    pub fn split_validation(&self, n: usize, seed: u64) -> Result<(Dataset, Dataset)> {
        let (train, val) = validation_indices(self.len(), n, seed)?;
        Ok((self.select(&train)?, self.select(&val)?))
    }

    /// Joins data sets of the same image shape, class names and pixel kind, in order.
    pub fn concat(parts: &[Dataset]) -> Result<Dataset> {
        let first = parts
            .first()
            .ok_or_else(|| DataError::Invalid("concat of no data set".into()))?;
        let mut labels = Vec::new();
        let mut n = 0;
        for p in parts {
            if p.image_shape() != first.image_shape()
                || p.class_names != first.class_names
                || p.pixel_max != first.pixel_max
                || std::mem::discriminant(&p.pixels) != std::mem::discriminant(&first.pixels)
            {
                return Err(DataError::Invalid(format!(
                    "cannot join data sets of image shapes {:?} and {:?} (or different classes or pixel kinds)",
                    first.image_shape(),
                    p.image_shape()
                )));
            }
            n += p.len();
            labels.extend_from_slice(&p.labels);
        }
        let pixels = match &first.pixels {
            Pixels::U8(_) => Pixels::U8(
                parts
                    .iter()
                    .flat_map(|p| match &p.pixels {
                        Pixels::U8(v) => v.as_slice(),
                        Pixels::F32(_) => &[],
                    })
                    .copied()
                    .collect(),
            ),
            Pixels::F32(_) => Pixels::F32(
                parts
                    .iter()
                    .flat_map(|p| match &p.pixels {
                        Pixels::F32(v) => v.as_slice(),
                        Pixels::U8(_) => &[],
                    })
                    .copied()
                    .collect(),
            ),
        };
        let [_, c, h, w] = first.shape;
        Ok(Dataset {
            pixels,
            shape: [n, c, h, w],
            labels,
            class_names: first.class_names.clone(),
            pixel_max: first.pixel_max,
        })
    }
}

/// The indices of a seeded validation split of `len` items: `(train, validation)`,
/// each sorted, disjoint, together `0..len`; `validation` has `n` items.
pub fn validation_indices(len: usize, n: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if n > len {
        return Err(DataError::Invalid(format!(
            "validation split of {n} images from a data set of {len}"
        )));
    }
    let p = permutation(len, seed);
    let mut val = p[..n].to_vec();
    let mut train = p[n..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Ok((train, val))
}

/// A training set and a held-out test set.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTest {
    /// The training images.
    pub train: Dataset,
    /// The held-out test images.
    pub test: Dataset,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        let names = vec!["a".to_string(), "b".to_string()];
        Dataset::from_u8(
            (0..24).collect(),
            [6, 1, 2, 2],
            vec![0, 1, 0, 1, 1, 1],
            names,
            255.0,
        )
        .unwrap()
    }

    #[test]
    fn construction_checks() {
        let names = vec!["a".to_string()];
        assert!(Dataset::from_u8(vec![0; 3], [1, 1, 2, 2], vec![0], names.clone(), 255.0).is_err());
        assert!(Dataset::from_u8(vec![0; 4], [1, 1, 2, 2], vec![1], names.clone(), 255.0).is_err());
        assert!(Dataset::from_u8(vec![0; 4], [1, 1, 2, 2], vec![], names.clone(), 255.0).is_err());
        assert!(Dataset::from_u8(vec![0; 4], [1, 1, 2, 2], vec![0], names.clone(), 0.0).is_err());
        assert!(Dataset::from_f32(vec![0.0; 4], [1, 1, 2, 2], vec![0], names).is_ok());
    }

    #[test]
    fn tensors_are_scaled() {
        let d = tiny();
        let t = d.to_tensor().unwrap();
        assert_eq!(t.shape(), &[6, 1, 2, 2]);
        assert_eq!(t.to_vec()[23], 23.0 / 255.0);
        let (b, l) = d.batch(&[5, 0]).unwrap();
        assert_eq!(b.shape(), &[2, 1, 2, 2]);
        assert_eq!(b.to_vec()[0], 20.0 / 255.0);
        assert_eq!(l, vec![1, 0]);
        assert!(d.batch(&[6]).is_err());
        let t64 = d.to_tensor_of::<f64>().unwrap();
        assert_eq!(t64.to_vec()[23], 23.0 / 255.0);
        assert_eq!(d.image_bytes(1), Some(&[4u8, 5, 6, 7][..]));
        assert_eq!(d.image_bytes(6), None);
        let f = d.clone().into_f32();
        assert_eq!(f.to_tensor().unwrap().to_vec(), t.to_vec());
        assert_eq!(d.class_counts(), vec![2, 4]);
    }

    #[test]
    fn subsets() {
        let d = tiny();
        assert_eq!(d.take(2).len(), 2);
        assert_eq!(d.take(100).len(), 6);
        let s = d.subset(1, 3).unwrap();
        assert_eq!(s.labels(), &[1, 0]);
        assert_eq!(s.pixels(), &Pixels::U8((4..12).collect()));
        assert!(d.subset(3, 7).is_err());
        let (tr, va) = d.split_validation(2, 1).unwrap();
        assert_eq!((tr.len(), va.len()), (4, 2));
        assert!(d.split_validation(7, 1).is_err());
        let j = Dataset::concat(&[d.take(2), d.subset(2, 6).unwrap()]).unwrap();
        assert_eq!(j, d);
        assert!(Dataset::concat(&[d.clone(), d.clone().into_f32()]).is_err());
    }
}

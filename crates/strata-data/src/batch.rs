//! Minibatches: seeded shuffling, batch size, `drop_last`, and a background
//! prefetcher.
//!
//! Each epoch visits the images in an order that depends only on the seed and the
//! epoch number (a `Xoshiro256PlusPlus` Fisher–Yates shuffle), so a run resumed at
//! epoch `e` sees the same minibatches as an uninterrupted one.
//!
//! An [`Augmentation`] set with [`Batcher::augment`] is applied to each training
//! minibatch as it is assembled (on the prefetch thread with
//! [`Batcher::prefetch`]), its draws fixed by the seed, the epoch and the batch
//! index. Evaluation batches must come from a batcher without augmentation
//! (use [`Augmentation::eval_transform`] if the crops change the image size).

use crate::augment::Augmentation;
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::shuffle::{mix_seed, permutation};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use strata_tensor::Tensor;

/// A minibatch's (share of) indices and the position of its first item in
/// the whole minibatch.
type Planned = (Vec<usize>, usize);

/// One minibatch: images scaled to `[0, 1]` as a `[B, C, H, W]` tensor, their
/// labels, and their indices in the data set.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The images, `[B, C, H, W]`.
    pub images: Tensor<f32>,
    /// The label of each image.
    pub labels: Vec<usize>,
    /// The index of each image in the data set.
    pub indices: Vec<usize>,
}

/// Cuts a data set into minibatches, epoch after epoch.
///
/// ```
/// use strata_data::{digits, Batcher};
/// let data = digits();
/// let batcher = Batcher::new(128)?.shuffle(42).drop_last(true);
/// for batch in batcher.epoch(&data, 0) {
///     assert_eq!(batch.images.shape(), &[128, 1, 8, 8]);
/// }
/// assert_eq!(batcher.num_batches(data.len()), 14);
/// # Ok::<(), strata_data::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batcher {
    batch_size: usize,
    seed: Option<u64>,
    drop_last: bool,
    augment: Option<Augmentation>,
    /// `(rank, ranks)`: this process assembles only its share of each minibatch.
    shard: (usize, usize),
}

impl Batcher {
    /// Batches of `batch_size` images in data-set order, keeping a last, smaller
    /// batch. Fails if `batch_size` is 0.
    pub fn new(batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(DataError::Invalid("batch size must be at least 1".into()));
        }
        Ok(Batcher {
            batch_size,
            seed: None,
            drop_last: false,
            augment: None,
            shard: (0, 1),
        })
    }

    /// Assembles only share `rank` of `ranks` of every minibatch (data-parallel
    /// training): minibatch `b` is planned as without sharding, and this batcher
    /// yields its positions `⌊m·rank/ranks⌋ .. ⌊m·(rank+1)/ranks⌋` (`m` its size),
    /// augmented with the draws those positions get in one process — so the
    /// number of ranks does not change what an image sees. A share may be empty
    /// (a last minibatch smaller than `ranks`). Fails unless `rank < ranks`.
    pub fn shard(mut self, rank: usize, ranks: usize) -> Result<Self> {
        if ranks == 0 || rank >= ranks {
            return Err(DataError::Invalid(format!(
                "shard {rank} of {ranks}: expected a rank below the number of ranks (≥ 1)"
            )));
        }
        self.shard = (rank, ranks);
        Ok(self)
    }

    /// The positions `lo..hi` of share `rank` of `ranks` in a minibatch of `m` items.
    pub fn share(m: usize, rank: usize, ranks: usize) -> std::ops::Range<usize> {
        let ranks = ranks.max(1);
        m * rank / ranks..m * (rank + 1) / ranks
    }

    /// Shuffles the images anew each epoch, the order fixed by `seed` and the epoch.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Whether to leave out a last batch smaller than the batch size.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Augments every minibatch with `augmentation` (for training only: evaluation
    /// uses a batcher without it). Check it against the data with
    /// [`Batcher::check`], or use [`Batcher::try_epoch`] / [`Batcher::try_prefetch`].
    pub fn augment(mut self, augmentation: Augmentation) -> Self {
        self.augment = Some(augmentation);
        self
    }

    /// The augmentation, if any.
    pub fn augmentation(&self) -> Option<&Augmentation> {
        self.augment.as_ref()
    }

    /// The image shape `[C, H, W]` of the batches this batcher makes from `data`;
    /// fails if the augmentation does not fit the images (a crop larger than the
    /// padded image, say).
    pub fn check(&self, data: &Dataset) -> Result<[usize; 3]> {
        match &self.augment {
            Some(a) => a.output_shape(data.image_shape()),
            None => Ok(data.image_shape()),
        }
    }

    /// [`Batcher::epoch`] after [`Batcher::check`].
    pub fn try_epoch<'a>(&self, data: &'a Dataset, epoch: u64) -> Result<Batches<'a>> {
        self.check(data)?;
        Ok(self.epoch(data, epoch))
    }

    /// [`Batcher::prefetch`] after [`Batcher::check`].
    pub fn try_prefetch(&self, data: Arc<Dataset>, epoch: u64, depth: usize) -> Result<Prefetcher> {
        self.check(&data)?;
        Ok(self.prefetch(data, epoch, depth))
    }

    /// The batches of an epoch, empty if the augmentation does not fit the data
    /// (so that no bad input panics; [`Batcher::check`] says why).
    fn planned(&self, data: &Dataset, epoch: u64) -> Vec<Planned> {
        if self.check(data).is_err() {
            return Vec::new();
        }
        let (rank, ranks) = self.shard;
        self.batch_indices(data.len(), epoch)
            .into_iter()
            .map(|idx| {
                let r = Self::share(idx.len(), rank, ranks);
                (idx[r.clone()].to_vec(), r.start)
            })
            .collect()
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Number of batches in an epoch over `len` images.
    pub fn num_batches(&self, len: usize) -> usize {
        if self.drop_last {
            len / self.batch_size
        } else {
            len.div_ceil(self.batch_size)
        }
    }

    /// The order in which epoch `epoch` visits `len` images (a permutation of
    /// `0..len`; the identity without shuffling).
    pub fn order(&self, len: usize, epoch: u64) -> Vec<usize> {
        match self.seed {
            Some(seed) => permutation(len, mix_seed(seed, epoch)),
            None => (0..len).collect(),
        }
    }

    /// The index lists of the batches of epoch `epoch` over `len` images.
    pub fn batch_indices(&self, len: usize, epoch: u64) -> Vec<Vec<usize>> {
        let order = self.order(len, epoch);
        order
            .chunks(self.batch_size)
            .take(self.num_batches(len))
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// The batches of epoch `epoch`, assembled (and augmented, if set) on the
    /// calling thread as the iterator advances. Empty if the augmentation does not
    /// fit the data: see [`Batcher::try_epoch`].
    pub fn epoch<'a>(&self, data: &'a Dataset, epoch: u64) -> Batches<'a> {
        Batches {
            data,
            batches: self.planned(data, epoch).into_iter().enumerate(),
            augment: self.augment.clone().map(|a| (a, epoch)),
        }
    }

    /// The batches of epoch `epoch`, assembled by a background thread that keeps up
    /// to `depth` (at least 1) batches ready in a bounded channel, so the training
    /// loop does not wait for them; the augmentation, if set, runs on that thread
    /// too. Yields exactly what [`Batcher::epoch`] yields.
    pub fn prefetch(&self, data: Arc<Dataset>, epoch: u64, depth: usize) -> Prefetcher {
        let batches: Vec<(usize, Planned)> =
            self.planned(&data, epoch).into_iter().enumerate().collect();
        let augment = self.augment.clone().map(|a| (a, epoch));
        let remaining = batches.len();
        let (tx, rx) = sync_channel(depth.max(1));
        let (thread_data, thread_batches) = (Arc::clone(&data), batches.clone());
        let thread_augment = augment.clone();
        let handle = std::thread::Builder::new()
            .name("strata-data-prefetch".into())
            .spawn(move || {
                for (b, idx) in thread_batches {
                    let Some(batch) = make_batch(&thread_data, b, idx, thread_augment.as_ref())
                    else {
                        break;
                    };
                    // The receiver is gone when the consumer stops early: stop too.
                    if tx.send(batch).is_err() {
                        break;
                    }
                }
            });
        match handle {
            Ok(h) => Prefetcher {
                rx: Some(rx),
                handle: Some(h),
                fallback: None,
                remaining,
            },
            // No thread could be started: assemble on the calling thread instead.
            Err(_) => Prefetcher {
                rx: None,
                handle: None,
                fallback: Some((data, batches.into_iter(), augment)),
                remaining,
            },
        }
    }
}

/// Assembles (and augments) batch `b`; `None` only if the augmentation fails,
/// which [`Batcher::check`] rules out before an epoch starts.
fn make_batch(
    data: &Dataset,
    b: usize,
    (indices, first): Planned,
    augment: Option<&(Augmentation, u64)>,
) -> Option<Batch> {
    let n = data.image_len();
    let mut buf = vec![0.0f32; indices.len() * n];
    if n > 0 {
        for (chunk, &i) in buf.chunks_exact_mut(n).zip(&indices) {
            data.write_image(i, chunk);
        }
    }
    let [_, c, h, w] = data.shape();
    let mut images = Tensor::from_vec(buf, &[indices.len(), c, h, w]).ok()?;
    if let Some((aug, epoch)) = augment {
        images = aug
            .apply_batch_at(&images, *epoch, b as u64, first, &indices)
            .ok()?;
    }
    let labels = indices.iter().map(|&i| data.labels()[i]).collect();
    Some(Batch {
        images,
        labels,
        indices,
    })
}

/// The batches of one epoch, assembled on the calling thread (see [`Batcher::epoch`]).
#[derive(Debug)]
pub struct Batches<'a> {
    data: &'a Dataset,
    batches: std::iter::Enumerate<std::vec::IntoIter<Planned>>,
    augment: Option<(Augmentation, u64)>,
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let (b, idx) = self.batches.next()?;
        make_batch(self.data, b, idx, self.augment.as_ref())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.batches.size_hint()
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// What the calling thread needs to assemble the batches itself when no thread
/// could be started: the data, the numbered index lists, the augmentation and epoch.
type Fallback = (
    Arc<Dataset>,
    std::vec::IntoIter<(usize, Planned)>,
    Option<(Augmentation, u64)>,
);

/// The batches of one epoch, assembled ahead by a background thread (see
/// [`Batcher::prefetch`]). Dropping it early stops and joins the thread.
#[derive(Debug)]
pub struct Prefetcher {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    fallback: Option<Fallback>,
    remaining: usize,
}

impl Iterator for Prefetcher {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let b = match (&self.rx, &mut self.fallback) {
            (Some(rx), _) => rx.recv().ok(),
            (None, Some((data, batches, aug))) => batches
                .next()
                .and_then(|(b, idx)| make_batch(data, b, idx, aug.as_ref())),
            (None, None) => None,
        };
        match b {
            Some(_) => self.remaining = self.remaining.saturating_sub(1),
            None => self.remaining = 0,
        }
        b
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Prefetcher {}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Closing the receiver makes the producer's next send fail, so it ends.
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digits::digits;

    #[test]
    fn sizes_and_drop_last() {
        let d = digits().take(10);
        let b = Batcher::new(4).unwrap();
        let sizes: Vec<usize> = b.epoch(&d, 0).map(|b| b.labels.len()).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        let b = b.drop_last(true);
        assert_eq!(b.epoch(&d, 0).len(), 2);
        assert_eq!(b.num_batches(10), 2);
        assert!(Batcher::new(0).is_err());
        let first = Batcher::new(4).unwrap().epoch(&d, 0).next().unwrap();
        assert_eq!(first.indices, vec![0, 1, 2, 3]);
        assert_eq!(first.images.shape(), &[4, 1, 8, 8]);
        assert_eq!(first.labels, d.labels()[..4]);
    }

    #[test]
    fn shuffling_is_seeded_per_epoch() {
        let b = Batcher::new(8).unwrap().shuffle(5);
        assert_eq!(b.order(100, 3), b.order(100, 3));
        assert_ne!(b.order(100, 3), b.order(100, 4));
        assert_ne!(
            b.order(100, 3),
            Batcher::new(8).unwrap().shuffle(6).order(100, 3)
        );
    }

    #[test]
    fn prefetch_matches_epoch_and_stops_early() {
        let d = Arc::new(digits());
        let b = Batcher::new(100).unwrap().shuffle(1);
        let direct: Vec<Batch> = b.epoch(&d, 2).collect();
        let pre: Vec<Batch> = b.prefetch(d.clone(), 2, 2).collect();
        assert_eq!(direct.len(), pre.len());
        for (x, y) in direct.iter().zip(&pre) {
            assert_eq!(x.indices, y.indices);
            assert_eq!(x.labels, y.labels);
            assert_eq!(x.images.to_vec(), y.images.to_vec());
        }
        let mut p = b.prefetch(d, 0, 1);
        assert_eq!(p.len(), 18);
        assert!(p.next().is_some());
        assert_eq!(p.len(), 17);
        drop(p); // joins the producer, which is blocked on a full channel
    }
}

//! proptest properties: IDX round trip, batcher coverage, validation splits.

mod common;

use common::TempDir;
use proptest::prelude::*;
use std::sync::Arc;
use strata_data::*;

fn toy(n: usize) -> Dataset {
    Dataset::from_u8(
        (0..n * 2).map(|i| (i % 256) as u8).collect(),
        [n, 1, 1, 2],
        (0..n).map(|i| i % 3).collect(),
        vec!["a".into(), "b".into(), "c".into()],
        255.0,
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn idx_round_trip(dims in prop::collection::vec(0usize..6, 0..5), gzip: bool, seed: u8) {
        let dir = TempDir::new("prop-idx");
        let p = dir.join("a.idx");
        let n: usize = dims.iter().product();
        let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        write_idx(&p, &dims, &data, gzip).unwrap();
        let back = read_idx(&p, None).unwrap();
        prop_assert_eq!(back, IdxArray { dims: dims.clone(), data });
        // Cutting the file anywhere gives an error, never a panic.
        let bytes = std::fs::read(&p).unwrap();
        for cut in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            if cut < bytes.len() {
                std::fs::write(&p, &bytes[..cut]).unwrap();
                prop_assert!(read_idx(&p, None).is_err());
            }
        }
    }

    #[test]
    fn idx_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let dir = TempDir::new("prop-junk");
        let p = dir.join("junk");
        std::fs::write(&p, &bytes).unwrap();
        let _ = read_idx(&p, None);
        let _ = read_idx(&p, Some(IDX_IMAGES_MAGIC));
    }

    #[test]
    fn batcher_covers_each_index_once(n in 0usize..300, bs in 1usize..40, seed: u64, epoch in 0u64..5, shuffle: bool) {
        let mut b = Batcher::new(bs).unwrap();
        if shuffle {
            b = b.shuffle(seed);
        }
        let data = toy(n);
        let mut seen: Vec<usize> = Vec::new();
        for batch in b.epoch(&data, epoch) {
            prop_assert!(!batch.indices.is_empty() && batch.indices.len() <= bs);
            prop_assert_eq!(batch.images.shape()[0], batch.indices.len());
            for (&i, &l) in batch.indices.iter().zip(&batch.labels) {
                prop_assert_eq!(l, data.labels()[i]);
            }
            seen.extend(&batch.indices);
        }
        prop_assert_eq!(seen.clone(), b.order(n, epoch));
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
        // drop_last: only full batches, all distinct, n / bs of them.
        let d = b.clone().drop_last(true);
        let batches = d.batch_indices(n, epoch);
        prop_assert_eq!(batches.len(), n / bs);
        let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
        prop_assert!(batches.iter().all(|x| x.len() == bs));
        all.sort_unstable();
        all.dedup();
        prop_assert_eq!(all.len(), (n / bs) * bs);
        // Same seed and epoch, same order.
        prop_assert_eq!(b.order(n, epoch), b.order(n, epoch));
    }

    #[test]
    fn validation_split_is_disjoint_and_complete(len in 0usize..500, frac in 0.0f64..=1.0, seed: u64) {
        let n = (len as f64 * frac) as usize;
        let (train, val) = validation_indices(len, n, seed).unwrap();
        prop_assert_eq!(val.len(), n);
        prop_assert_eq!(train.len(), len - n);
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        prop_assert_eq!(all, (0..len).collect::<Vec<_>>());
        prop_assert_eq!(validation_indices(len, n, seed).unwrap(), (train.clone(), val.clone()));
        let data = toy(len);
        let (t, v) = data.split_validation(n, seed).unwrap();
        prop_assert_eq!(t.len() + v.len(), len);
        let expected: Vec<usize> = train.iter().map(|&i| i % 3).collect();
        prop_assert_eq!(t.labels(), expected.as_slice());
        prop_assert!(validation_indices(len, len + 1, seed).is_err());
    }
}

#[test]
fn prefetcher_is_deterministic_across_epochs() {
    let data = Arc::new(digits());
    let b = Batcher::new(128).unwrap().shuffle(9);
    for epoch in 0..3 {
        let a: Vec<Vec<usize>> = b
            .prefetch(Arc::clone(&data), epoch, 3)
            .map(|x| x.indices)
            .collect();
        assert_eq!(a, b.batch_indices(data.len(), epoch));
    }
}

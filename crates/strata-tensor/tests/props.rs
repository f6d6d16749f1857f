//! Properties of views: reshape/permute round-trips, slicing vs indexing, concat of slices.

use proptest::prelude::*;
use strata_tensor::{ShapeError, Tensor};

fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..5, 1..5)
}

fn tensor_of(shape: &[usize]) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|v| v as f64).collect(), shape).unwrap()
}

/// Every multi-index of `shape` in row-major order.
fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &d in shape {
        out = out
            .into_iter()
            .flat_map(|p| {
                (0..d).map(move |i| {
                    let mut q = p.clone();
                    q.push(i);
                    q
                })
            })
            .collect();
    }
    out
}

proptest! {
    #[test]
    fn reshape_round_trips(shape in shape_strategy(), seed in 0usize..100) {
        let t = tensor_of(&shape);
        let n = t.numel();
        let flat = t.reshape(&[n]).unwrap();
        prop_assert_eq!(flat.to_vec(), t.to_vec());
        // Move one factor around: [n] -> [a, n/a] -> shape.
        let a = (1..=n).filter(|d| n.is_multiple_of(*d)).nth(seed % n.max(1)).unwrap_or(1);
        let two = flat.reshape(&[a, n / a]).unwrap();
        prop_assert_eq!(two.reshape(&shape).unwrap(), t);
    }

    #[test]
    fn permute_round_trips(shape in shape_strategy(), seed in any::<u64>()) {
        let t = tensor_of(&shape);
        let rank = shape.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        // Fisher-Yates with a tiny LCG so the permutation follows the seed.
        let mut s = seed;
        for i in (1..rank).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut inverse = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() { inverse[p] = i; }
        let p = t.permute(&perm).unwrap();
        for idx in indices(p.shape()) {
            let orig: Vec<usize> = (0..rank).map(|ax| idx[inverse[ax]]).collect();
            prop_assert_eq!(p.get(&idx).unwrap(), t.get(&orig).unwrap());
        }
        prop_assert_eq!(p.permute(&inverse).unwrap(), t.clone());
        // A permuted view made contiguous then reshaped keeps row-major order.
        prop_assert_eq!(p.contiguous().to_vec(), p.to_vec());
    }

    #[test]
    fn slicing_agrees_with_indexing(shape in shape_strategy(), ax in 0usize..4, a in 0usize..5, b in 0usize..5) {
        let t = tensor_of(&shape);
        let axis = ax % shape.len();
        let len = shape[axis];
        let (start, end) = (a.min(b).min(len), a.max(b).min(len));
        let s = t.slice(axis, start, end).unwrap();
        for idx in indices(s.shape()) {
            let mut orig = idx.clone();
            orig[axis] += start;
            prop_assert_eq!(s.get(&idx).unwrap(), t.get(&orig).unwrap());
        }
    }

    #[test]
    fn concat_of_slices_restores(shape in shape_strategy(), ax in 0usize..4, cut in 0usize..5) {
        let t = tensor_of(&shape);
        let axis = ax % shape.len();
        let c = cut.min(shape[axis]);
        let left = t.slice(axis, 0, c).unwrap();
        let right = t.slice(axis, c, shape[axis]).unwrap();
        prop_assert_eq!(Tensor::concat(&[&left, &right], axis).unwrap(), t);
    }

    #[test]
    fn broadcast_repeats(rows in 1usize..5, cols in 1usize..5) {
        let row = tensor_of(&[1, cols]);
        let b = row.broadcast_to(&[rows, cols]).unwrap();
        for r in 0..rows { for c in 0..cols {
            prop_assert_eq!(b.get(&[r, c]).unwrap(), c as f64);
        }}
    }
}

#[test]
fn shape_errors_are_values() {
    let t = tensor_of(&[2, 3]);
    assert!(matches!(
        t.reshape(&[4]),
        Err(ShapeError::ElementCount { .. })
    ));
    assert!(matches!(
        t.permute(&[0, 0]),
        Err(ShapeError::BadPermutation { .. })
    ));
    assert!(matches!(
        t.slice(1, 2, 4),
        Err(ShapeError::RangeOutOfBounds { .. })
    ));
    assert!(matches!(
        t.slice(2, 0, 1),
        Err(ShapeError::AxisOutOfRange { .. })
    ));
    assert!(matches!(
        t.get(&[2, 0]),
        Err(ShapeError::IndexOutOfBounds { .. })
    ));
    assert!(matches!(
        t.broadcast_to(&[3, 3]),
        Err(ShapeError::Mismatch { .. })
    ));
    let u = tensor_of(&[2, 4]);
    assert!(matches!(
        Tensor::concat(&[&t, &u], 0),
        Err(ShapeError::Mismatch { .. })
    ));
    assert!(matches!(
        Tensor::<f64>::concat(&[], 0),
        Err(ShapeError::Empty { .. })
    ));
    assert!(Tensor::<f32>::from_vec(vec![1.0; 5], &[2, 3]).is_err());
    let msg = t.reshape(&[4]).unwrap_err().to_string();
    assert!(msg.contains("[4]") && msg.contains('6'), "{msg}");
}

#[test]
fn views_are_copy_on_write() {
    let t = tensor_of(&[2, 2]);
    let mut v = t.transpose(0, 1).unwrap();
    v.data_mut()[0] = 99.0;
    assert_eq!(t.to_vec(), vec![0., 1., 2., 3.]);
    assert_eq!(v.to_vec(), vec![99., 2., 1., 3.]);
}

#[test]
fn stack_and_select() {
    let a = tensor_of(&[2, 3]);
    let s = Tensor::stack(&[&a, &a, &a], 1).unwrap();
    assert_eq!(s.shape(), &[2, 3, 3]);
    assert_eq!(s.select(1, 2).unwrap(), a);
    let f = s.flatten_from(1).unwrap();
    assert_eq!(f.shape(), &[2, 9]);
}

#[test]
fn debug_is_nested() {
    let t = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[2, 2]).unwrap();
    let s = format!("{t:?}");
    assert_eq!(s, "Tensor<f32>[2, 2] [[1.0000, 2.0000], [3.0000, 4.0000]]");
    let big = Tensor::<f32>::zeros(&[100, 100]);
    assert!(format!("{big:?}").contains('…'));
}

/// A view shares its storage's version; a write access or a new storage
/// changes it (what caches derived from a tensor key on).
#[test]
fn version_tracks_storage_and_writes() {
    let mut t = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let view = t.transpose(0, 1).unwrap();
    assert_eq!(view.version(), t.version());
    let other = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    assert_ne!(other.version(), t.version());
    let before = t.version();
    drop(view);
    t.data_mut()[0] = 5.0;
    assert_ne!(t.version(), before);
    let after = t.version();
    let _ = t.data_mut();
    assert_ne!(
        t.version(),
        after,
        "every write access takes a fresh number"
    );
}

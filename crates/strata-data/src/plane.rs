//! Small two-dimensional data sets generated on the spot (`dataset = "moons"`,
//! `"blobs"` or `"rings"`), for pictures of decision regions (Figure 12.1):
//! points of the plane as `[N, 2, 1, 1]` "images" (`x`, `y` as two
//! channels), 1,000 for training and 500 for testing, the same on every
//! machine (a fixed seed).
//!
//! - `moons`: two interleaved half circles (2 classes), noise σ = 0.15.
//! - `blobs`: three Gaussian clusters at the corners of a triangle (3 classes).
//! - `rings`: a disc inside a ring (2 classes), which no single line separates.

use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, Result};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A standard normal draw (Box–Muller).
fn gauss(rng: &mut Xoshiro256PlusPlus) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The generated data sets' names.
pub const PLANE_DATASETS: [&str; 3] = ["moons", "blobs", "rings"];

/// Training and test points per set.
const TRAIN: usize = 1000;
const TEST: usize = 500;

/// `n` labelled points of `kind`, drawn from `rng`.
fn points(kind: &str, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<(Vec<f32>, Vec<usize>)> {
    let mut xy = Vec::with_capacity(2 * n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let (x, y, c) = match kind {
            "moons" => {
                let c = i % 2;
                let t = rng.random_range(0.0..std::f64::consts::PI);
                let (x, y) = if c == 0 {
                    (t.cos(), t.sin())
                } else {
                    (1.0 - t.cos(), 0.5 - t.sin())
                };
                (x + 0.15 * gauss(rng), y + 0.15 * gauss(rng), c)
            }
            "blobs" => {
                let c = i % 3;
                let a = c as f64 * std::f64::consts::TAU / 3.0 + 0.5;
                (
                    1.5 * a.cos() + 0.5 * gauss(rng),
                    1.5 * a.sin() + 0.5 * gauss(rng),
                    c,
                )
            }
            "rings" => {
                let c = i % 2;
                let r = if c == 0 {
                    rng.random_range(0.0..0.8)
                } else {
                    rng.random_range(1.3..2.0)
                };
                let t = rng.random_range(0.0..std::f64::consts::TAU);
                (r * t.cos(), r * t.sin(), c)
            }
            other => {
                return Err(DataError::Invalid(format!(
                    "{other:?} is not a generated data set (expected one of {PLANE_DATASETS:?})"
                )))
            }
        };
        // Channel-major per point: [x, y] as two 1×1 channels.
        xy.push(x as f32);
        xy.push(y as f32);
        labels.push(c);
    }
    Ok((xy, labels))
}

/// The generated set `kind` ("moons", "blobs" or "rings"): 1,000 training
/// and 500 test points.
pub fn plane_split(kind: &str) -> Result<TrainTest> {
    let classes = match kind {
        "blobs" => 3,
        _ => 2,
    };
    let names: Vec<String> = (0..classes).map(|c| c.to_string()).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x2d_7017);
    let mut split = |n: usize| -> Result<Dataset> {
        let (xy, labels) = points(kind, n, &mut rng)?;
        Dataset::from_f32(xy, [n, 2, 1, 1], labels, names.clone())
    };
    let train = split(TRAIN)?;
    let test = split(TEST)?;
    Ok(TrainTest { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sets_are_fixed_balanced_and_of_the_stated_shape() {
        for kind in PLANE_DATASETS {
            let a = plane_split(kind).unwrap();
            let b = plane_split(kind).unwrap();
            assert_eq!(a.train.shape(), [1000, 2, 1, 1]);
            assert_eq!(a.test.shape(), [500, 2, 1, 1]);
            assert_eq!(a.train.to_tensor().unwrap(), b.train.to_tensor().unwrap());
            let counts = a.train.class_counts();
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(hi - lo <= 1, "{kind}: {counts:?}");
            assert!(a
                .train
                .to_tensor()
                .unwrap()
                .to_vec()
                .iter()
                .all(|v| v.is_finite()));
        }
        // The rings: every inner point is closer to the centre than every outer one.
        let r = plane_split("rings").unwrap().train;
        let (x, labels) = r.batch(&(0..r.len()).collect::<Vec<_>>()).unwrap();
        let x = x.to_vec();
        for (i, &c) in labels.iter().enumerate() {
            let d = (x[2 * i].powi(2) + x[2 * i + 1].powi(2)).sqrt();
            assert!(if c == 0 { d < 0.81 } else { d > 1.29 }, "point {i}: {d}");
        }
        assert!(plane_split("spirals").is_err());
    }
}

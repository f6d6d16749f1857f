use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_data::Object;
use strata_nn::{
    BatchNorm, Conv2d, Conv2dConfig, Flatten, GlobalAvgPool, Linear, MaxPool2d, Padding, Relu,
};

fn det(x: f32, y: f32, side: f32, score: f32, class: usize) -> Detection {
    Detection {
        bbox: BBox::new(x, y, side, side),
        class,
        score,
    }
}

#[test]
fn suppression_keeps_the_best_of_each_place() {
    // Two places: A (three windows, the middle one best) and B (one window).
    let d = vec![
        det(0.0, 0.0, 10.0, 0.7, 1),
        det(2.0, 0.0, 10.0, 0.9, 1),
        det(4.0, 0.0, 10.0, 0.8, 2),
        det(30.0, 30.0, 10.0, 0.6, 3),
    ];
    // IoU(A0, A1) = 80/120 = 0.67, IoU(A1, A2) = 0.67, IoU(A0, A2) = 60/140 = 0.43.
    let kept = nms(&d, Overlap::iou(0.3));
    assert_eq!(kept, vec![d[1], d[3]]);
    // At overlap 0.5 the two outer windows of A no longer dispute with each
    // other, but both still dispute with the best one.
    assert_eq!(nms(&d, Overlap::iou(0.5)), vec![d[1], d[3]]);
    // At 0.7 nothing overlaps enough.
    assert_eq!(nms(&d, Overlap::iou(0.7)).len(), 4);
    // A small window inside a larger, better one: IoU 25/100 but wholly
    // contained, so it disputes the place only when containment counts.
    let part = vec![det(0.0, 0.0, 10.0, 0.9, 9), det(2.0, 2.0, 5.0, 0.8, 1)];
    assert_eq!(nms(&part, Overlap::iou(0.3)).len(), 2);
    let both = Overlap {
        iou: 0.3,
        contain: 0.7,
    };
    assert_eq!(nms(&part, both), vec![part[0]]);
    // The better window wins even when it is the small one.
    let part = vec![det(0.0, 0.0, 10.0, 0.7, 9), det(2.0, 2.0, 5.0, 0.8, 1)];
    assert_eq!(nms(&part, both), vec![part[1]]);
}

#[test]
fn merging_averages_the_boxes_by_score() {
    let d = vec![det(0.0, 0.0, 10.0, 0.75, 1), det(2.0, 0.0, 10.0, 0.25, 4)];
    let m = merge(&d, Overlap::iou(0.3));
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].class, m[0].score), (1, 0.75));
    assert!((m[0].bbox.x0 - 0.5).abs() < 1e-6 && (m[0].bbox.x1 - 10.5).abs() < 1e-6);
    assert_eq!(m[0].bbox.y0, 0.0);
}

#[test]
fn average_precision_of_a_hand_checked_case() {
    let truth = vec![vec![
        Object {
            class: 0,
            bbox: BBox::new(0.0, 0.0, 10.0, 10.0),
        },
        Object {
            class: 0,
            bbox: BBox::new(50.0, 50.0, 10.0, 10.0),
        },
    ]];
    // A hit, a miss, a hit: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    let dets = vec![vec![
        det(0.0, 1.0, 10.0, 0.9, 0),
        det(20.0, 20.0, 10.0, 0.8, 0),
        det(51.0, 50.0, 10.0, 0.7, 0),
        // A duplicate of the first object is a false positive too.
        det(1.0, 0.0, 10.0, 0.6, 0),
    ]];
    let names = vec!["a".to_string(), "background".to_string()];
    let m = evaluate_detections(&dets, &truth, &names);
    assert_eq!(m.classes.len(), 1);
    let c = &m.classes[0];
    assert!(
        (c.ap50 - (0.5 * 1.0 + 0.5 * 2.0 / 3.0)).abs() < 1e-9,
        "{}",
        c.ap50
    );
    assert_eq!((c.objects, c.detections), (2, 4));
    assert!((c.precision - 0.5).abs() < 1e-12 && (c.recall - 1.0).abs() < 1e-12);
    // IoU of the hits is 90/110 = 0.82: matched up to the 0.80 threshold,
    // missed from 0.85 on, so 7 of the 10 thresholds give the AP above.
    assert!((c.ap50_95 - 0.7 * c.ap50).abs() < 1e-9, "{}", c.ap50_95);
    assert_eq!(m.map50, c.ap50);
    // Nothing detected: zero, not a division by zero.
    let none = evaluate_detections(&[vec![]], &truth, &names);
    assert_eq!((none.map50, none.precision, none.recall), (0.0, 0.0, 0.0));
}

/// A small network of unpadded convolutions, batch norm with non-trivial
/// running statistics, pooling and two linear layers, for 12×12 windows
/// (grid stride 2).
fn small_cnn(seed: u64) -> Sequential<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut net = Sequential::<f32>::new();
    net.push(Conv2d::new(Conv2dConfig::new(1, 4, 3), &mut rng).unwrap());
    net.push(Relu);
    net.push(MaxPool2d::new(2));
    net.push(Conv2d::new(Conv2dConfig::new(4, 6, 3), &mut rng).unwrap());
    let mut bn = BatchNorm::<f32>::new(6).unwrap();
    bn.running_mean = Tensor::from_vec((0..6).map(|i| 0.1 * i as f32).collect(), &[6]).unwrap();
    bn.running_var =
        Tensor::from_vec((0..6).map(|i| 0.5 + 0.2 * i as f32).collect(), &[6]).unwrap();
    bn.gamma.value =
        Tensor::from_vec((0..6).map(|i| 1.0 - 0.1 * i as f32).collect(), &[6]).unwrap();
    net.push(bn);
    net.push(Relu);
    net.push(Flatten);
    net.push(Linear::new(6 * 3 * 3, 8, &mut rng).unwrap().with_relu());
    net.push(Linear::new(8, 3, &mut rng).unwrap());
    net
}

fn names() -> Vec<String> {
    vec!["a".into(), "b".into(), BACKGROUND.into()]
}

fn random_image(h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..h * w).map(|_| rng.random_range(0.0..1.0)).collect()
}

fn sorted(s: WindowScores) -> Vec<(BBox, Vec<f32>)> {
    let mut v: Vec<(BBox, Vec<f32>)> = s
        .boxes
        .iter()
        .zip(s.probs.chunks_exact(s.classes))
        .map(|(b, p)| (*b, p.to_vec()))
        .collect();
    v.sort_by(|a, b| a.0.y0.total_cmp(&b.0.y0).then(a.0.x0.total_cmp(&b.0.x0)));
    v
}

#[test]
fn fully_convolutional_scores_equal_window_by_window_scores() {
    let mut d = Detector::new(small_cnn(3), None, [1, 12, 12], names());
    let fc = d
        .fully_convolutional()
        .expect("the network is convolutional");
    assert_eq!(fc.stride, [2, 2]);
    let (h, w) = (30, 26);
    let img = random_image(h, w, 9);
    // Windows of the network's own size on its own grid; then windows of
    // 17 px (the image rescaled by 12/17) every pixel of the rescaled image
    // (two shifted runs per axis).
    for (side, stride) in [(12, 2), (17, 1)] {
        let a = sorted(d.window_scores(&img, [1, h, w], side, stride).unwrap());
        let b = sorted(d.fc_scores(&img, [1, h, w], side, stride).unwrap());
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len(), "side {side}");
        for ((ba, pa), (bb, pb)) in a.iter().zip(&b) {
            assert_eq!(ba, bb);
            for (x, y) in pa.iter().zip(pb) {
                assert!((x - y).abs() < 1e-5, "side {side} at {ba:?}: {x} vs {y}");
            }
        }
    }
    // The windows of side 12 every 2 px: (30−12)/2+1 rows × (26−12)/2+1 columns.
    let s = d.window_scores(&img, [1, h, w], 12, 2).unwrap();
    assert_eq!(s.boxes.len(), 10 * 8);
    // Both paths find the same objects.
    let opts = |scoring| DetectOptions {
        windows: vec![12, 17],
        stride: 2,
        threshold: 0.0,
        scoring,
        ..DetectOptions::default()
    };
    let a = d.detect(&img, [1, h, w], &opts(Scoring::Windows)).unwrap();
    let b = d
        .detect(&img, [1, h, w], &opts(Scoring::Convolutional))
        .unwrap();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.bbox, x.class), (y.bbox, y.class));
        assert!((x.score - y.score).abs() < 1e-5);
        assert_ne!(x.class, 2, "background is never an object");
    }
}

#[test]
fn networks_that_cannot_run_convolutionally_say_why() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut padded = Sequential::<f32>::new();
    padded.push(Conv2d::new(Conv2dConfig::new(1, 2, 3).padding(Padding::Same), &mut rng).unwrap());
    padded.push(Flatten);
    padded.push(Linear::new(2 * 8 * 8, 3, &mut rng).unwrap());
    let mut d = Detector::new(padded, None, [1, 8, 8], names());
    assert!(d.fully_convolutional().unwrap_err().contains("pads"));
    let img = random_image(16, 16, 1);
    let e = d
        .fc_scores(&img, [1, 16, 16], 8, 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot run fully convolutionally"), "{e}");
    // Auto falls back to windows; asking for the convolutional path fails.
    let o = DetectOptions {
        windows: vec![8],
        ..DetectOptions::default()
    };
    assert!(d.detect(&img, [1, 16, 16], &o).is_ok());
    let conv = DetectOptions {
        scoring: Scoring::Convolutional,
        ..o.clone()
    };
    assert!(d.detect(&img, [1, 16, 16], &conv).is_err());
    // Wrong channels, bad thresholds.
    assert!(d.detect(&[0.0; 3 * 256], [3, 16, 16], &o).is_err());
    let bad = DetectOptions {
        threshold: 1.5,
        ..o.clone()
    };
    assert!(d.detect(&img, [1, 16, 16], &bad).is_err());

    let mut gap = Sequential::<f32>::new();
    gap.push(Conv2d::new(Conv2dConfig::new(1, 3, 3), &mut rng).unwrap());
    gap.push(GlobalAvgPool);
    let d = Detector::new(gap, None, [1, 8, 8], names());
    assert!(d
        .fully_convolutional()
        .unwrap_err()
        .contains("global average"));
}

fn arb_dets() -> impl Strategy<Value = Vec<Detection>> {
    prop::collection::vec((0u8..40, 0u8..40, 4u8..20, 0u16..1000, 0usize..3), 0..30).prop_map(|v| {
        v.into_iter()
            .map(|(x, y, s, score, c)| det(x as f32, y as f32, s as f32, score as f32 / 1000.0, c))
            .collect()
    })
}

proptest! {
    #[test]
    fn suppression_is_idempotent_order_free_and_leaves_no_dispute(
        d in arb_dets(),
        iou in 0.05f32..0.9,
        contain in 0.3f32..1.0,
        seed in any::<u64>(),
    ) {
        let overlap = Overlap { iou, contain };
        let kept = nms(&d, overlap);
        prop_assert_eq!(nms(&kept, overlap), kept.clone());
        let mut shuffled = d.clone();
        strata_data::shuffle_in_place(&mut shuffled, seed);
        prop_assert_eq!(nms(&shuffled, overlap), kept.clone());
        for (i, a) in kept.iter().enumerate() {
            for b in &kept[i + 1..] {
                prop_assert!(!overlap.disputes(&a.bbox, &b.bbox));
            }
        }
        // Every dropped window lost to a kept one at least as good.
        for x in &d {
            if !kept.contains(x) {
                prop_assert!(kept
                    .iter()
                    .any(|k| k.score >= x.score && overlap.disputes(&k.bbox, &x.bbox)));
            }
        }
        // Merging leaves as many detections as suppression keeps.
        prop_assert_eq!(merge(&d, overlap).len(), kept.len());
    }
}

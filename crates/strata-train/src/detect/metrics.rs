//! Precision, recall and average precision of detections against a ground
//! truth (the measures of PASCAL VOC and COCO: greedy matching in score
//! order, all-point interpolated precision).

use super::Detection;
use strata_data::Object;

/// Precision, recall and average precision of one class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassMetrics {
    /// The class's name.
    pub name: String,
    /// Objects of the class in the ground truth.
    pub objects: usize,
    /// Detections of the class.
    pub detections: usize,
    /// Detections matching an object at IoU ≥ 0.5, over all detections.
    pub precision: f64,
    /// Objects matched at IoU ≥ 0.5, over all objects.
    pub recall: f64,
    /// Average precision at IoU 0.5.
    pub ap50: f64,
    /// Average precision averaged over IoU 0.50, 0.55, …, 0.95.
    pub ap50_95: f64,
}

/// Detection quality over a set of images.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionMetrics {
    /// Per class that has objects or detections.
    pub classes: Vec<ClassMetrics>,
    /// Mean of `ap50` over classes with objects.
    pub map50: f64,
    /// Mean of `ap50_95` over classes with objects.
    pub map50_95: f64,
    /// Over all classes.
    pub precision: f64,
    /// Over all classes.
    pub recall: f64,
}

/// Detections of `class` matched greedily (highest score first) to the
/// unmatched objects of that class with the highest IoU ≥ `t`: for each
/// detection in score order, whether it is a true positive.
fn matches(
    dets: &[Vec<Detection>],
    truth: &[Vec<Object>],
    class: usize,
    t: f32,
) -> Vec<(f32, bool)> {
    let mut all: Vec<(usize, Detection)> = dets
        .iter()
        .enumerate()
        .flat_map(|(i, d)| d.iter().filter(|d| d.class == class).map(move |d| (i, *d)))
        .collect();
    all.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    let mut used: Vec<Vec<bool>> = truth.iter().map(|o| vec![false; o.len()]).collect();
    all.iter()
        .map(|(i, d)| {
            let best = truth[*i]
                .iter()
                .enumerate()
                .filter(|(j, o)| o.class == class && !used[*i][*j])
                .map(|(j, o)| (j, o.bbox.iou(&d.bbox)))
                .filter(|(_, iou)| *iou >= t)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((j, _)) = best {
                used[*i][j] = true;
            }
            (d.score, best.is_some())
        })
        .collect()
}

/// Average precision: the area under the precision–recall curve, with the
/// precision at each recall the best at that recall or beyond (all points).
fn average_precision(hits: &[(f32, bool)], objects: usize) -> f64 {
    if objects == 0 {
        return 0.0;
    }
    let mut tp = 0usize;
    let mut curve = Vec::with_capacity(hits.len());
    for (k, &(_, hit)) in hits.iter().enumerate() {
        tp += hit as usize;
        curve.push((tp as f64 / objects as f64, tp as f64 / (k + 1) as f64));
    }
    let (mut ap, mut best) = (0.0, 0.0f64);
    for k in (0..curve.len()).rev() {
        best = best.max(curve[k].1);
        let before = if k > 0 { curve[k - 1].0 } else { 0.0 };
        ap += (curve[k].0 - before) * best;
    }
    ap
}

/// Precision, recall and mean average precision of `dets` against `truth`
/// (one list per image each); `names` are the model's classes.
pub fn evaluate_detections(
    dets: &[Vec<Detection>],
    truth: &[Vec<Object>],
    names: &[String],
) -> DetectionMetrics {
    let mut classes = Vec::new();
    let (mut tp_all, mut det_all, mut obj_all) = (0usize, 0usize, 0usize);
    for (class, name) in names.iter().enumerate() {
        let objects = truth.iter().flatten().filter(|o| o.class == class).count();
        let hits = matches(dets, truth, class, 0.5);
        if objects == 0 && hits.is_empty() {
            continue;
        }
        let tp = hits.iter().filter(|h| h.1).count();
        let ap50 = average_precision(&hits, objects);
        let ap50_95 = (0..10)
            .map(|k| {
                average_precision(&matches(dets, truth, class, 0.5 + 0.05 * k as f32), objects)
            })
            .sum::<f64>()
            / 10.0;
        tp_all += tp;
        det_all += hits.len();
        obj_all += objects;
        classes.push(ClassMetrics {
            name: name.clone(),
            objects,
            detections: hits.len(),
            precision: if hits.is_empty() {
                0.0
            } else {
                tp as f64 / hits.len() as f64
            },
            recall: if objects == 0 {
                0.0
            } else {
                tp as f64 / objects as f64
            },
            ap50,
            ap50_95,
        });
    }
    let with: Vec<&ClassMetrics> = classes.iter().filter(|c| c.objects > 0).collect();
    let mean = |f: fn(&ClassMetrics) -> f64| {
        if with.is_empty() {
            0.0
        } else {
            with.iter().map(|c| f(c)).sum::<f64>() / with.len() as f64
        }
    };
    DetectionMetrics {
        map50: mean(|c| c.ap50),
        map50_95: mean(|c| c.ap50_95),
        precision: if det_all == 0 {
            0.0
        } else {
            tp_all as f64 / det_all as f64
        },
        recall: if obj_all == 0 {
            0.0
        } else {
            tp_all as f64 / obj_all as f64
        },
        classes,
    }
}

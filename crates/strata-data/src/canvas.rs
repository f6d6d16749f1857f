//! Canvases for detection by windows (section 12.4): images of a data set
//! pasted at random places and sizes onto a blank canvas, with their boxes,
//! and the windows a detector's classifier is trained on.
//!
//! - [`make_canvases`]: `count` canvases of `size × size`, each with
//!   `objects.0..=objects.1` images of the source set rescaled to a side drawn
//!   from `sides.0..=sides.1`, placed so that no two boxes meet. The ground
//!   truth of an object is the box of the whole pasted image (for MNIST, the
//!   28 × 28 cell that the digit sits centred in).
//! - [`window_set`]: windows cut from such canvases and rescaled to the
//!   source's image size: *positives* overlap an object by at least
//!   [`WindowOptions::positive_iou`] (labelled with its class), *background*
//!   windows overlap every object by less than [`WindowOptions::negative_iou`]
//!   (empty places, parts of objects, windows astride two objects or much
//!   larger than one), labelled with an extra class `"background"`.
//! - [`with_background`]: a data set plus background windows, the spec's
//!   `data.background` option; [`mnist_canvas_split`]: `dataset =
//!   "mnist-canvas"`, the windows of canvases of MNIST's training images for
//!   training and of its test images for testing.
//!
//! Everything is drawn from a seeded generator, so a canvas set is the same
//! on every machine.

use crate::dataset::{Dataset, Pixels, TrainTest};
use crate::error::{DataError, Result};
use crate::geometry::{crop_window, resize_image, Filter};
use crate::shuffle::permutation;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// An axis-aligned box in pixel coordinates: columns `x0..x1`, rows `y0..y1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BBox {
    /// Left edge.
    pub x0: f32,
    /// Top edge.
    pub y0: f32,
    /// Right edge (exclusive).
    pub x1: f32,
    /// Bottom edge (exclusive).
    pub y1: f32,
}

impl BBox {
    /// The box of width `w` and height `h` whose top-left corner is `(x, y)`.
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        Self {
            x0: x,
            y0: y,
            x1: x + w,
            y1: y + h,
        }
    }

    /// Width × height (0 for an empty box).
    pub fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }

    /// The area both boxes cover.
    pub fn intersection(&self, o: &BBox) -> f32 {
        let w = self.x1.min(o.x1) - self.x0.max(o.x0);
        let h = self.y1.min(o.y1) - self.y0.max(o.y0);
        w.max(0.0) * h.max(0.0)
    }

    /// Intersection over union, in `[0, 1]` (0 when both are empty).
    pub fn iou(&self, o: &BBox) -> f32 {
        let i = self.intersection(o);
        let u = self.area() + o.area() - i;
        if u > 0.0 {
            i / u
        } else {
            0.0
        }
    }
}

/// An object on a canvas: its class and its box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Object {
    /// Class index in the source data set.
    pub class: usize,
    /// Where it is.
    pub bbox: BBox,
}

/// One canvas: `[C, H, W]` pixels in `[0, 1]`, and the objects on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Canvas {
    /// Pixels, channel-major, in `[0, 1]`, quantised to multiples of 1/255
    /// (so a canvas written as an 8-bit PNG reads back the same).
    pub pixels: Vec<f32>,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// The objects pasted on it, in the order they were placed.
    pub objects: Vec<Object>,
}

/// What canvases look like.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CanvasOptions {
    /// Side of the square canvas in pixels.
    pub size: usize,
    /// Fewest and most objects per canvas (inclusive).
    pub objects: (usize, usize),
    /// Smallest and largest object side in pixels (inclusive); the side is
    /// the pasted image's height, its width keeps the image's aspect ratio.
    pub sides: (usize, usize),
}

impl Default for CanvasOptions {
    /// The MNIST benchmark's: 112 × 112, 1–5 digits of 20–48 px.
    fn default() -> Self {
        Self {
            size: 112,
            objects: (1, 5),
            sides: (20, 48),
        }
    }
}

impl CanvasOptions {
    /// Canvases for images of `image` shape: 4 image sides square, with
    /// objects from 0.7 to 1.7 image sides (the generic `data.background`).
    pub fn for_image(image: [usize; 3]) -> Self {
        let side = image[1].max(1);
        Self {
            size: 4 * side,
            objects: (1, 5),
            sides: ((side * 7 / 10).max(1), side * 17 / 10),
        }
    }

    fn check(&self, image: [usize; 3]) -> Result<()> {
        let [_, h, w] = image;
        let (lo, hi) = self.sides;
        let widest = (hi * w).div_ceil(h.max(1));
        if h == 0 || w == 0 {
            return Err(DataError::Invalid(
                "canvases: the source images are empty".into(),
            ));
        }
        if lo == 0 || lo > hi || hi > self.size || widest > self.size {
            return Err(DataError::Invalid(format!(
                "canvases: object sides {lo}..={hi} px must be positive, in order and fit a \
                 {size}×{size} canvas",
                size = self.size
            )));
        }
        if self.objects.0 > self.objects.1 {
            return Err(DataError::Invalid(format!(
                "canvases: between {} and {} objects is an empty range",
                self.objects.0, self.objects.1
            )));
        }
        Ok(())
    }
}

/// Rounds `v` in `[0, 1]` to the nearest multiple of 1/255.
fn quantise(v: f32) -> f32 {
    (v.clamp(0.0, 1.0) * 255.0).round() / 255.0
}

/// Draws canvases from `source` one after another, using its images in a
/// seeded order (each once before any twice).
struct CanvasStream<'a> {
    source: &'a Dataset,
    opts: CanvasOptions,
    rng: Xoshiro256PlusPlus,
    order: Vec<usize>,
    next: usize,
    scratch: Vec<f32>,
}

impl<'a> CanvasStream<'a> {
    fn new(source: &'a Dataset, opts: CanvasOptions, seed: u64) -> Result<Self> {
        if source.is_empty() {
            return Err(DataError::Invalid(
                "canvases: the source data set has no images".into(),
            ));
        }
        opts.check(source.image_shape())?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let order = permutation(source.len(), rng.random());
        Ok(Self {
            source,
            opts,
            rng,
            order,
            next: 0,
            scratch: vec![0.0; source.image_len()],
        })
    }

    fn next_image(&mut self) -> usize {
        if self.next == self.order.len() {
            self.order = permutation(self.source.len(), self.rng.random());
            self.next = 0;
        }
        self.next += 1;
        self.order[self.next - 1]
    }

    fn canvas(&mut self) -> Result<Canvas> {
        let [c, h, w] = self.source.image_shape();
        let size = self.opts.size;
        let mut pixels = vec![0.0f32; c * size * size];
        let mut objects: Vec<Object> = Vec::new();
        let wanted = self
            .rng
            .random_range(self.opts.objects.0..=self.opts.objects.1);
        for _ in 0..wanted {
            let index = self.next_image();
            let side = self.rng.random_range(self.opts.sides.0..=self.opts.sides.1);
            let (oh, ow) = (
                side,
                ((side * w) as f32 / h as f32).round().max(1.0) as usize,
            );
            // Up to 50 places; an object that finds none is left out.
            let place = (0..50).find_map(|_| {
                let x = self.rng.random_range(0..=size - ow);
                let y = self.rng.random_range(0..=size - oh);
                let b = BBox::new(x as f32, y as f32, ow as f32, oh as f32);
                objects
                    .iter()
                    .all(|o| o.bbox.intersection(&b) == 0.0)
                    .then_some((x, y, b))
            });
            let Some((x, y, bbox)) = place else { continue };
            self.source.write_image(index, &mut self.scratch);
            let img = resize_image(&self.scratch, [c, h, w], oh, ow, Filter::Triangle)?;
            for k in 0..c {
                for i in 0..oh {
                    let row = &img[(k * oh + i) * ow..(k * oh + i + 1) * ow];
                    let at = (k * size + y + i) * size + x;
                    for (d, &v) in pixels[at..at + ow].iter_mut().zip(row) {
                        *d = d.max(v);
                    }
                }
            }
            objects.push(Object {
                class: self.source.labels()[index],
                bbox,
            });
        }
        pixels.iter_mut().for_each(|v| *v = quantise(*v));
        Ok(Canvas {
            pixels,
            shape: [c, size, size],
            objects,
        })
    }
}

/// `count` canvases of images drawn from `source` (see the module docs).
pub fn make_canvases(
    source: &Dataset,
    count: usize,
    seed: u64,
    opts: &CanvasOptions,
) -> Result<Vec<Canvas>> {
    let mut stream = CanvasStream::new(source, *opts, seed)?;
    (0..count).map(|_| stream.canvas()).collect()
}

/// The seed of the MNIST detection benchmark's canvases.
pub const BENCHMARK_SEED: u64 = 0x0124_0d37;

/// The detection benchmark: `count` canvases of [`CanvasOptions::default`]
/// (112 × 112, 1–5 digits of 20–48 px) made from `test` (MNIST's test
/// images), the same on every machine.
pub fn benchmark_canvases(test: &Dataset, count: usize) -> Result<Vec<Canvas>> {
    make_canvases(test, count, BENCHMARK_SEED, &CanvasOptions::default())
}

/// How training windows are cut.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowOptions {
    /// The canvases the windows are cut from.
    pub canvas: CanvasOptions,
    /// A positive window overlaps its object at least this much (IoU).
    pub positive_iou: f32,
    /// A background window overlaps every object less than this (IoU).
    pub negative_iou: f32,
}

impl Default for WindowOptions {
    fn default() -> Self {
        Self {
            canvas: CanvasOptions::default(),
            positive_iou: 0.6,
            // Below 0.5, the IoU at which a detection counts: a window on a
            // part of a digit (the top half of a 3 reads as a 2) must learn
            // to say "background", not be left out of training.
            negative_iou: 0.45,
        }
    }
}

/// The name of the class [`window_set`] adds.
pub const BACKGROUND: &str = "background";

/// A square window `side` px wide whose centre is near `(cx, cy)`, moved
/// inside a `size × size` canvas; `None` if it cannot fit.
fn window_at(cx: f32, cy: f32, side: usize, size: usize) -> Option<BBox> {
    if side == 0 || side > size {
        return None;
    }
    let max = (size - side) as f32;
    let x = (cx - side as f32 / 2.0).round().clamp(0.0, max);
    let y = (cy - side as f32 / 2.0).round().clamp(0.0, max);
    Some(BBox::new(x, y, side as f32, side as f32))
}

/// The `[C, h, w]` image of window `b` of `canvas`, rescaled.
fn cut(canvas: &Canvas, b: &BBox, h: usize, w: usize) -> Result<Vec<f32>> {
    let [c, _, _] = canvas.shape;
    let side = (b.x1 - b.x0) as usize;
    let crop = crop_window(
        &canvas.pixels,
        canvas.shape,
        b.y0 as isize,
        b.x0 as isize,
        side,
        side,
    );
    let img = resize_image(&crop, [c, side, side], h, w, Filter::Triangle)?;
    Ok(img.into_iter().map(quantise).collect())
}

/// Windows cut from canvases of `source`'s images, rescaled to its image
/// size: `positives` windows on objects (with the object's class) and
/// `background` windows on none (class [`BACKGROUND`], the last), in canvas
/// order. Pixels keep `source`'s kind (integers up to its `pixel_max`, or
/// floats).
pub fn window_set(
    source: &Dataset,
    positives: usize,
    background: usize,
    seed: u64,
    opts: &WindowOptions,
) -> Result<Dataset> {
    if !(opts.negative_iou > 0.0
        && opts.negative_iou <= opts.positive_iou
        && opts.positive_iou <= 1.0)
    {
        return Err(DataError::Invalid(format!(
            "windows: need 0 < negative IoU {} ≤ positive IoU {} ≤ 1",
            opts.negative_iou, opts.positive_iou
        )));
    }
    let [c, h, w] = source.image_shape();
    let size = opts.canvas.size;
    let mut stream = CanvasStream::new(source, opts.canvas, seed)?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x77_1d_0e);
    let mut images: Vec<f32> = Vec::with_capacity((positives + background) * c * h * w);
    let mut labels = Vec::with_capacity(positives + background);
    let bg_class = source.num_classes();
    let (mut pos, mut neg) = (0usize, 0usize);
    let (lo, hi) = opts.canvas.sides;
    let mut empty_canvases = 0;
    while pos < positives || neg < background {
        let canvas = stream.canvas()?;
        if canvas.objects.is_empty() {
            empty_canvases += 1;
            if empty_canvases > 1000 && pos == 0 {
                return Err(DataError::Invalid(
                    "windows: 1,000 canvases in a row had no object on them".into(),
                ));
            }
        }
        let best_iou = |b: &BBox| {
            canvas
                .objects
                .iter()
                .map(|o| o.bbox.iou(b))
                .fold(0.0f32, f32::max)
        };
        for o in &canvas.objects {
            if pos == positives {
                break;
            }
            let (ow, oh) = (o.bbox.x1 - o.bbox.x0, o.bbox.y1 - o.bbox.y0);
            let (cx, cy) = ((o.bbox.x0 + o.bbox.x1) / 2.0, (o.bbox.y0 + o.bbox.y1) / 2.0);
            // A window near the object, as a detector's grid of windows would
            // place one: side within ±15 %, centre within ±12 % of a side.
            let jittered = (0..10).find_map(|_| {
                let side = (oh * rng.random_range(-0.15f32..0.15).exp()).round() as usize;
                let b = window_at(
                    cx + rng.random_range(-0.12..0.12) * ow,
                    cy + rng.random_range(-0.12..0.12) * oh,
                    side,
                    size,
                )?;
                (b.iou(&o.bbox) >= opts.positive_iou).then_some(b)
            });
            let b = match jittered {
                Some(b) => b,
                None => match window_at(cx, cy, oh.round() as usize, size) {
                    Some(b) if b.iou(&o.bbox) >= opts.positive_iou => b,
                    _ => continue,
                },
            };
            images.extend(cut(&canvas, &b, h, w)?);
            labels.push(o.class);
            pos += 1;
        }
        // As many background windows per canvas as the mix asks for.
        let per_canvas = if positives == 0 {
            4
        } else {
            (background * canvas.objects.len()).div_ceil(positives.max(1))
        };
        for _ in 0..per_canvas {
            if neg == background {
                break;
            }
            let found = (0..20).find_map(|_| {
                let near = !canvas.objects.is_empty() && rng.random_bool(0.6);
                let b = if near {
                    // A part of an object, a window much larger or smaller,
                    // or one astride it and its neighbour.
                    let o = canvas.objects[rng.random_range(0..canvas.objects.len())].bbox;
                    let s = o.y1 - o.y0;
                    let side = (s * rng.random_range(-1.0f32..1.0).exp()).round() as usize;
                    window_at(
                        (o.x0 + o.x1) / 2.0 + rng.random_range(-0.9..0.9) * s,
                        (o.y0 + o.y1) / 2.0 + rng.random_range(-0.9..0.9) * s,
                        side.max(lo * 3 / 4),
                        size,
                    )?
                } else {
                    let side = rng.random_range(lo * 3 / 4..=(hi * 5 / 4).min(size));
                    window_at(
                        rng.random_range(0.0..size as f32),
                        rng.random_range(0.0..size as f32),
                        side.max(1),
                        size,
                    )?
                };
                (best_iou(&b) < opts.negative_iou).then_some(b)
            });
            if let Some(b) = found {
                images.extend(cut(&canvas, &b, h, w)?);
                labels.push(bg_class);
                neg += 1;
            }
        }
    }
    let mut names = source.class_names().to_vec();
    names.push(BACKGROUND.into());
    let n = labels.len();
    match source.pixels() {
        Pixels::U8(_) => {
            let max = source.pixel_max();
            let bytes = images
                .iter()
                .map(|&v| (v * max).round().clamp(0.0, 255.0) as u8)
                .collect();
            Dataset::from_u8(bytes, [n, c, h, w], labels, names, max)
        }
        Pixels::F32(_) => Dataset::from_f32(images, [n, c, h, w], labels, names),
    }
}

/// `data` followed by `round(fraction · len)` background windows cut from
/// canvases of its own images ([`CanvasOptions::for_image`]), with the class
/// [`BACKGROUND`] added last: the spec's `data.background`.
pub fn with_background(data: &Dataset, fraction: f64, seed: u64) -> Result<Dataset> {
    if !(fraction > 0.0 && fraction <= 10.0) {
        return Err(DataError::Invalid(format!(
            "background: the fraction of background windows must be in (0, 10], found {fraction}"
        )));
    }
    let image = data.image_shape();
    if image[1] < 8 || image[2] < 8 {
        return Err(DataError::Invalid(format!(
            "background: windows need images of at least 8×8 pixels, these are {}×{}",
            image[1], image[2]
        )));
    }
    let n = (fraction * data.len() as f64).round() as usize;
    let opts = WindowOptions {
        canvas: CanvasOptions::for_image(image),
        ..WindowOptions::default()
    };
    let windows = window_set(data, 0, n, seed, &opts)?;
    let mut names = data.class_names().to_vec();
    names.push(BACKGROUND.into());
    let data = data.clone().with_class_names(names)?;
    Dataset::concat(&[data, windows])
}

/// Windows per split of `dataset = "mnist-canvas"`: (positives, background).
pub const MNIST_CANVAS_TRAIN: (usize, usize) = (60_000, 30_000);
/// The test split's (positives, background).
pub const MNIST_CANVAS_TEST: (usize, usize) = (10_000, 5_000);

/// `dataset = "mnist-canvas"`: windows of canvases of `mnist`'s training
/// images (60,000 on digits, 30,000 background) for training and of its
/// test images (10,000 and 5,000) for testing; 11 classes, `"0"`–`"9"` and
/// `"background"`.
pub fn mnist_canvas_split(mnist: &TrainTest) -> Result<TrainTest> {
    let opts = WindowOptions::default();
    let (p, b) = MNIST_CANVAS_TRAIN;
    let train = window_set(&mnist.train, p, b, 0x0012_47a1, &opts)?;
    let (p, b) = MNIST_CANVAS_TEST;
    let test = window_set(&mnist.test, p, b, 0x0012_47e5, &opts)?;
    Ok(TrainTest { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 40 8×8 one-channel images: image i is a solid square of value
    /// (i+1)/40 inset by one pixel, class i % 4.
    fn squares() -> Dataset {
        let n = 40;
        let mut px = Vec::new();
        for i in 0..n {
            for y in 0..8 {
                for x in 0..8 {
                    let inside = (1..7).contains(&y) && (1..7).contains(&x);
                    px.push(if inside { ((i + 1) * 6) as u8 } else { 0 });
                }
            }
        }
        let labels = (0..n).map(|i| i % 4).collect();
        let names = (0..4).map(|c| c.to_string()).collect();
        Dataset::from_u8(px, [n, 1, 8, 8], labels, names, 255.0).unwrap()
    }

    fn opts() -> CanvasOptions {
        CanvasOptions {
            size: 48,
            objects: (1, 4),
            sides: (8, 16),
        }
    }

    #[test]
    fn iou_of_hand_checked_boxes() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        let b = BBox::new(5.0, 0.0, 10.0, 10.0);
        assert_eq!(a.intersection(&b), 50.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox::new(20.0, 20.0, 1.0, 1.0)), 0.0);
        let empty = BBox::new(3.0, 3.0, 0.0, 0.0);
        assert_eq!(empty.iou(&empty), 0.0);
    }

    #[test]
    fn canvases_are_fixed_and_hold_their_objects_where_the_boxes_say() {
        let src = squares();
        let a = make_canvases(&src, 30, 7, &opts()).unwrap();
        assert_eq!(a, make_canvases(&src, 30, 7, &opts()).unwrap());
        assert_ne!(a, make_canvases(&src, 30, 8, &opts()).unwrap());
        let mut counts = [0usize; 5];
        for c in &a {
            assert_eq!(c.shape, [1, 48, 48]);
            assert!(c.objects.len() <= 4);
            counts[c.objects.len()] += 1;
            for (i, o) in c.objects.iter().enumerate() {
                let b = o.bbox;
                let side = b.x1 - b.x0;
                assert!((8.0..=16.0).contains(&side) && b.y1 - b.y0 == side);
                assert!(b.x0 >= 0.0 && b.y0 >= 0.0 && b.x1 <= 48.0 && b.y1 <= 48.0);
                for p in &c.objects[i + 1..] {
                    assert_eq!(b.intersection(&p.bbox), 0.0, "boxes meet");
                }
                // The pasted square is lit at the box's centre and dark
                // just outside the box (the background is 0).
                let at = |x: f32, y: f32| c.pixels[y as usize * 48 + x as usize];
                assert!(at((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0) > 0.0);
                if b.x0 >= 1.0 {
                    assert_eq!(at(b.x0 - 1.0, (b.y0 + b.y1) / 2.0), 0.0);
                }
            }
            // Every lit pixel lies in a box.
            for (i, &v) in c.pixels.iter().enumerate() {
                let (x, y) = ((i % 48) as f32 + 0.5, (i / 48) as f32 + 0.5);
                let inside = c
                    .objects
                    .iter()
                    .any(|o| x >= o.bbox.x0 && x < o.bbox.x1 && y >= o.bbox.y0 && y < o.bbox.y1);
                assert!(v == 0.0 || inside, "lit pixel ({x}, {y}) outside every box");
                assert_eq!((v * 255.0).round() / 255.0, v, "quantised");
            }
        }
        assert!(
            counts[1..].iter().all(|&n| n > 0),
            "1 to 4 objects: {counts:?}"
        );
    }

    #[test]
    fn bad_options_are_refused() {
        let src = squares();
        let mut o = opts();
        o.sides = (20, 60);
        assert!(make_canvases(&src, 1, 1, &o).is_err());
        o.sides = (0, 8);
        assert!(make_canvases(&src, 1, 1, &o).is_err());
        o = opts();
        o.objects = (3, 2);
        assert!(make_canvases(&src, 1, 1, &o).is_err());
        assert!(make_canvases(&src.take(0), 1, 1, &opts()).is_err());
        assert!(with_background(&src, 0.0, 1).is_err());
        assert!(with_background(&src, f64::NAN, 1).is_err());
    }

    #[test]
    fn windows_are_labelled_by_their_overlap() {
        let src = squares();
        let wo = WindowOptions {
            canvas: opts(),
            ..WindowOptions::default()
        };
        let set = window_set(&src, 60, 40, 3, &wo).unwrap();
        assert_eq!(set.len(), 100);
        assert_eq!(set.image_shape(), [1, 8, 8]);
        assert_eq!(set.class_names().last().unwrap(), BACKGROUND);
        let counts = set.class_counts();
        assert_eq!(counts[4], 40);
        assert_eq!(counts[..4].iter().sum::<usize>(), 60);
        assert_eq!(set, window_set(&src, 60, 40, 3, &wo).unwrap());
        // A positive window shows the square: its centre is lit.
        let mut img = vec![0.0; 64];
        for i in 0..set.len() {
            set.write_image(i, &mut img);
            if set.labels()[i] < 4 {
                assert!(img[4 * 8 + 4] > 0.0, "window {i} misses its object");
            }
        }
    }

    #[test]
    fn background_adds_a_class_and_keeps_the_data() {
        let src = squares();
        let with = with_background(&src, 0.5, 1).unwrap();
        assert_eq!(with.len(), 60);
        assert_eq!(with.num_classes(), 5);
        assert_eq!(&with.labels()[..40], src.labels());
        assert!(with.labels()[40..].iter().all(|&l| l == 4));
        assert_eq!(
            with.select(&(0..40).collect::<Vec<_>>())
                .unwrap()
                .to_tensor()
                .unwrap(),
            src.to_tensor().unwrap()
        );
    }

    proptest! {
        #[test]
        fn iou_is_symmetric_and_bounded(
            a in (0.0f32..50.0, 0.0f32..50.0, 0.0f32..30.0, 0.0f32..30.0),
            b in (0.0f32..50.0, 0.0f32..50.0, 0.0f32..30.0, 0.0f32..30.0),
        ) {
            let a = BBox::new(a.0, a.1, a.2, a.3);
            let b = BBox::new(b.0, b.1, b.2, b.3);
            let (ab, ba) = (a.iou(&b), b.iou(&a));
            prop_assert!((ab - ba).abs() < 1e-6);
            prop_assert!((0.0..=1.0 + 1e-6).contains(&ab));
            prop_assert!(a.intersection(&b) <= a.area().min(b.area()) + 1e-3);
        }
    }
}

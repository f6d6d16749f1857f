//! Seeded mutation fuzzing of every input format strata reads (issue 24):
//! IDX files, CIFAR-10 binary batches, image folders, spec files, model
//! files and checkpoints. Each mutant of a valid seed input must be either
//! refused with an error that names the file, or accepted as something
//! valid (finite values, labels inside the classes, consistent shapes) —
//! never a panic — and reading it may allocate no more than a bound set by
//! the input's size (a header claiming a billion images in a 1 KB file must
//! not reserve gigabytes). The draws are fixed by the seeds, so a failure
//! names its mutant and replays.

use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use strata_data::{Dataset, TrainTest};

/// Counts live heap bytes and their peak, so a loader's appetite is measured.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                grew(new - l.size());
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// One fuzz loop at a time, so the peak belongs to the mutant being read.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f`, returning its result (or the panic's message) and the most
/// heap it held above what was live before.
fn measured<R>(f: impl FnOnce() -> R) -> (Result<R, String>, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())
    });
    (r, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// Numbers that break parsers: zero, one, the largest values of each width.
const INTERESTING: [u64; 9] = [
    0,
    1,
    2,
    255,
    65_535,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 31,
    3_000_000_000,
];

/// One byte-level mutation of `seed`, described for the failure message.
fn mutate(seed: &[u8], rng: &mut Xoshiro256PlusPlus) -> (Vec<u8>, String) {
    let mut b = seed.to_vec();
    let at = |rng: &mut Xoshiro256PlusPlus, n: usize| rng.random_range(0..n.max(1));
    match rng.random_range(0..7) {
        0 => {
            let i = at(rng, b.len());
            let bit = rng.random_range(0..8);
            if let Some(v) = b.get_mut(i) {
                *v ^= 1 << bit;
            }
            (b, format!("bit {bit} of byte {i} flipped"))
        }
        1 => {
            let i = at(rng, b.len());
            let v = [0u8, 0xff, 0x7f, 0x80][rng.random_range(0..4)];
            if let Some(x) = b.get_mut(i) {
                *x = v;
            }
            (b, format!("byte {i} set to {v:#x}"))
        }
        2 => {
            let n = at(rng, b.len());
            b.truncate(n);
            (b, format!("truncated to {n} bytes"))
        }
        3 => {
            let n = rng.random_range(1..64);
            b.extend((0..n).map(|_| rng.next_u32() as u8));
            (b, format!("{n} random bytes appended"))
        }
        4 => {
            // A 32-bit big-endian field of the header (IDX dimensions, counts).
            let i = 4 * at(rng, b.len().min(32) / 4);
            let v = INTERESTING[rng.random_range(0..INTERESTING.len())] as u32;
            if b.len() >= i + 4 {
                b[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            (b, format!("u32 at {i} set to {v}"))
        }
        5 => {
            // The same as a little-endian 64-bit field (safetensors' header length).
            let i = 8 * at(rng, b.len().min(64) / 8);
            let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
            if b.len() >= i + 8 {
                b[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            (b, format!("u64 at {i} set to {v}"))
        }
        _ => {
            let i = at(rng, b.len());
            let j = (i + rng.random_range(1..32)).min(b.len());
            let chunk = b[i..j].to_vec();
            let tail = b.split_off(i);
            b.extend(chunk);
            b.extend(tail);
            (b, format!("bytes {i}..{j} duplicated"))
        }
    }
}

/// A fresh scratch folder for one format.
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-fuzz-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An accepted data set must be usable: labels inside its classes, every
/// pixel finite, one shape.
fn check_dataset(d: &Dataset, what: &str) {
    assert!(
        d.labels().iter().all(|&y| y < d.num_classes().max(1)),
        "{what}: label out of range"
    );
    assert_eq!(d.labels().len(), d.len(), "{what}");
    let mut buf = vec![0.0f32; d.image_len()];
    for i in 0..d.len() {
        d.write_image(i, &mut buf);
        assert!(
            buf.iter().all(|v| v.is_finite()),
            "{what}: image {i} not finite"
        );
    }
}

fn check_split(tt: &TrainTest, what: &str) {
    check_dataset(&tt.train, what);
    check_dataset(&tt.test, what);
    if !tt.test.is_empty() && !tt.train.is_empty() {
        assert_eq!(tt.train.image_shape(), tt.test.image_shape(), "{what}");
    }
}

/// The heap a reader may take for an input of `len` bytes.
fn bound(len: usize) -> usize {
    (64 << 20) + 256 * len
}

/// Writes an MNIST-like folder (uncompressed IDX) of 8 + 4 images of 6×6.
fn idx_seed(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for (prefix, n) in [("train", 8usize), ("t10k", 4)] {
        let px: Vec<u8> = (0..n * 36).map(|i| (i * 37 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let img = dir.join(format!("{prefix}-images-idx3-ubyte"));
        let lab = dir.join(format!("{prefix}-labels-idx1-ubyte"));
        strata_data::write_idx(&img, &[n, 6, 6], &px, false).unwrap();
        strata_data::write_idx(&lab, &[n], &labels, false).unwrap();
        for p in [img, lab] {
            let bytes = std::fs::read(&p).unwrap();
            files.push((p, bytes));
        }
    }
    files
}

#[test]
fn idx_folders() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("idx");
    let seeds = idx_seed(&dir);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x1d8);
    let (mut refused, mut accepted) = (0, 0);
    for k in 0..10_000 {
        let (path, seed) = &seeds[k % seeds.len()];
        let (bytes, how) = mutate(seed, &mut rng);
        std::fs::write(path, &bytes).unwrap();
        let (r, peak) = measured(|| strata_data::load(dir.to_str().unwrap(), None));
        let what = format!("IDX mutant {k} ({}: {how})", path.display());
        match r {
            Err(p) => panic!("{what}: panicked: {p}"),
            Ok(Err(e)) => {
                let m = e.to_string();
                assert!(
                    m.contains(dir.to_str().unwrap()),
                    "{what}: error names no file: {m}"
                );
                refused += 1;
            }
            Ok(Ok(tt)) => {
                check_split(&tt, &what);
                accepted += 1;
            }
        }
        assert!(
            peak <= bound(bytes.len()),
            "{what}: took {peak} bytes of heap"
        );
        std::fs::write(path, seed).unwrap();
    }
    eprintln!("IDX: 10000 mutants, {refused} refused, {accepted} accepted");
    assert!(refused > 1000);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cifar10_binary_batches() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Three records: a label byte and 3,072 pixel bytes each.
    let mut seed = Vec::new();
    for r in 0..3u8 {
        seed.push(r * 3);
        seed.extend((0..3072).map(|i| (i as u8).wrapping_mul(r + 1)));
    }
    let path = Path::new("data_batch_1.bin");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0xc1f);
    let (mut refused, mut accepted) = (0, 0);
    for k in 0..10_000 {
        let (bytes, how) = mutate(&seed, &mut rng);
        let (r, peak) = measured(|| strata_data::parse_cifar10_batch(&bytes, path));
        let what = format!("CIFAR-10 mutant {k} ({how})");
        match r {
            Err(p) => panic!("{what}: panicked: {p}"),
            Ok(Err(e)) => {
                assert!(e.to_string().contains("data_batch_1.bin"), "{what}: {e}");
                refused += 1;
            }
            Ok(Ok(d)) => {
                check_dataset(&d, &what);
                accepted += 1;
            }
        }
        assert!(
            peak <= bound(bytes.len()),
            "{what}: took {peak} bytes of heap"
        );
    }
    eprintln!("CIFAR-10 binary: 10000 mutants, {refused} refused, {accepted} accepted");
    assert!(refused > 100 && accepted > 100);
}

#[test]
fn image_folders() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("folder");
    let mut files = Vec::new();
    for split in ["train", "test"] {
        for (c, class) in ["cat", "dog"].iter().enumerate() {
            let d = dir.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..2u8 {
                let img = image::RgbImage::from_fn(6, 6, |x, y| {
                    image::Rgb([x as u8 * 40, y as u8 * 40, i * 100 + c as u8 * 50])
                });
                let p = d.join(format!("{i}.png"));
                img.save(&p).unwrap();
                let bytes = std::fs::read(&p).unwrap();
                files.push((p, bytes));
            }
        }
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0xf01d);
    let (mut refused, mut accepted) = (0, 0);
    for k in 0..10_000 {
        let (path, seed) = &files[k % files.len()];
        let (bytes, how) = mutate(seed, &mut rng);
        std::fs::write(path, &bytes).unwrap();
        let (r, peak) = measured(|| strata_data::load(dir.to_str().unwrap(), None));
        let what = format!("image-folder mutant {k} ({}: {how})", path.display());
        match r {
            Err(p) => panic!("{what}: panicked: {p}"),
            Ok(Err(e)) => {
                assert!(e.to_string().contains(dir.to_str().unwrap()), "{what}: {e}");
                refused += 1;
            }
            Ok(Ok(tt)) => {
                check_split(&tt, &what);
                accepted += 1;
            }
        }
        // A PNG header may promise a large image: the decoder's own limit applies.
        assert!(
            peak <= bound(bytes.len()) + (512 << 20),
            "{what}: took {peak} bytes of heap"
        );
        std::fs::write(path, seed).unwrap();
    }
    eprintln!("image folders: 10000 mutants, {refused} refused, {accepted} accepted");
    assert!(refused > 100);
    std::fs::remove_dir_all(&dir).ok();
}

/// Values a hostile spec puts where numbers go.
const SPEC_NUMBERS: [&str; 12] = [
    "0",
    "-1",
    "-30",
    "1e308",
    "1e999",
    "nan",
    "inf",
    "3000000000",
    "9999999999999999999",
    "0.5",
    "\"ten\"",
    "[]",
];

/// One text-level mutation of a spec (it stays valid UTF-8).
fn mutate_spec(seed: &str, rng: &mut Xoshiro256PlusPlus) -> (String, String) {
    let lines: Vec<&str> = seed.lines().collect();
    let i = rng.random_range(0..lines.len());
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let how = match rng.random_range(0..5) {
        0 => {
            out.remove(i);
            format!("line {} removed", i + 1)
        }
        1 => {
            out.insert(i, lines[i].to_string());
            format!("line {} repeated", i + 1)
        }
        2 => {
            // Every number on the line replaced by one value.
            let v = SPEC_NUMBERS[rng.random_range(0..SPEC_NUMBERS.len())];
            let mut s = String::new();
            let mut in_num = false;
            for ch in lines[i].chars() {
                let digit = ch.is_ascii_digit() || (in_num && (ch == '.' || ch == 'e'));
                if digit && !in_num {
                    s.push_str(v);
                }
                if !digit {
                    s.push(ch);
                }
                in_num = digit;
            }
            out[i] = s;
            format!("numbers of line {} set to {v}", i + 1)
        }
        3 => {
            let cut = rng.random_range(0..=lines[i].len());
            let cut = (0..=cut)
                .rev()
                .find(|&c| lines[i].is_char_boundary(c))
                .unwrap_or(0);
            out[i] = lines[i][..cut].to_string();
            format!("line {} cut at {cut}", i + 1)
        }
        _ => {
            let junk =
                ["=", "[", "]", "{", "}", "\"", ",", "#", "\\", "é"][rng.random_range(0..10)];
            let at = (0..=lines[i].len())
                .filter(|&c| lines[i].is_char_boundary(c))
                .collect::<Vec<_>>();
            let c = at[rng.random_range(0..at.len())];
            out[i] = format!("{}{junk}{}", &lines[i][..c], &lines[i][c..]);
            format!("{junk:?} inserted into line {} at {c}", i + 1)
        }
    };
    (out.join("\n") + "\n", how)
}

#[test]
fn spec_files() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seeds = Vec::new();
    for name in [
        "digits-softmax",
        "mnist-cnn",
        "fashion-resnet",
        "cifar10-fast",
    ] {
        seeds.push(std::fs::read_to_string(root.join(format!("{name}.toml"))).unwrap());
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x5bec);
    let (mut refused, mut accepted) = (0, 0);
    for k in 0..10_000 {
        let seed = &seeds[k % seeds.len()];
        let (text, how) = mutate_spec(seed, &mut rng);
        let what = format!("spec mutant {k} ({how})");
        let (r, _) = measured(|| strata_train::spec::Spec::parse(&text, "fuzz.toml"));
        match r {
            Err(p) => panic!("{what}: panicked: {p}"),
            Ok(Err(e)) => {
                assert!(e.to_string().starts_with("fuzz.toml"), "{what}: {e}");
                assert!(!e.message.is_empty(), "{what}: empty message");
                refused += 1;
            }
            Ok(Ok(s)) => {
                // What was accepted is within range.
                assert!(s.train.epochs >= 1 && s.train.batch >= 1, "{what}");
                assert!(
                    s.eval.pad <= 16 && s.eval.tta.is_none_or(|t| t <= 4),
                    "{what}"
                );
                assert!(s.optimizer.weight_decay.is_finite(), "{what}");
                assert!(!s.layers.is_empty(), "{what}");
                accepted += 1;
            }
        }
    }
    eprintln!("specs: 10000 mutants, {refused} refused, {accepted} accepted");
    assert!(refused > 300 && accepted > 300);
}

/// A trained digits model folder: its spec and model file.
fn trained_digits(dir: &Path) -> strata_train::spec::Spec {
    let spec = strata_train::spec::Spec::parse(
        "[data]\ndataset = \"digits\"\npreprocess = [\"pixel-whiten\"]\n[model]\nlayers = [\"flatten\", { linear = 16 }, \"relu\", { linear = 10 }]\n[optimizer]\nmomentum = 0.9\nlr = 0.05\n[train]\nepochs = 2\nbatch = 64\n",
        dir.join("spec.toml"),
    )
    .unwrap();
    let opts = strata_train::run::RunOptions {
        out: dir.to_path_buf(),
        ..Default::default()
    };
    strata_train::run::train(&spec, &opts, &mut ()).unwrap();
    spec
}

#[test]
fn model_files() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("model");
    let spec = trained_digits(&dir);
    let path = dir.join("model.safetensors");
    let seed = std::fs::read(&path).unwrap();
    let mut net = strata_train::build_model::<f32>(&spec, &[1, 8, 8], 10).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x5afe);
    let (mut refused, mut accepted) = (0, 0);
    for k in 0..10_000 {
        let (bytes, how) = mutate(&seed, &mut rng);
        std::fs::write(&path, &bytes).unwrap();
        let (r, peak) = measured(|| strata_train::run::load_model(&path, &mut net, &spec));
        let what = format!("model mutant {k} ({how})");
        match r {
            Err(p) => panic!("{what}: panicked: {p}"),
            Ok(Err(e)) => {
                assert!(e.to_string().contains("model.safetensors"), "{what}: {e}");
                refused += 1;
            }
            Ok(Ok(_)) => {
                for (n, p) in strata_nn::Module::params(&net) {
                    assert!(
                        p.value.to_vec().iter().all(|v| v.is_finite()),
                        "{what}: {n}"
                    );
                }
                accepted += 1;
            }
        }
        assert!(
            peak <= bound(bytes.len()),
            "{what}: took {peak} bytes of heap"
        );
    }
    eprintln!("model files: 10000 mutants, {refused} refused, {accepted} accepted");
    assert!(refused > 500);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn checkpoints() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("checkpoint");
    let mut spec = trained_digits(&dir);
    spec = spec.with_overrides(&["train.epochs = 3".into()]).unwrap();
    let path = dir.join("checkpoint").join("state.safetensors");
    let seed = std::fs::read(&path).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0xcafe);
    let (mut refused, mut accepted) = (0, 0);
    // Each accepted mutant resumes and trains an epoch (~25 ms): 2,000, not
    // the 10,000 of the cheaper formats, keeps this under 15 s.
    for k in 0..2_000 {
        let (bytes, how) = mutate(&seed, &mut rng);
        std::fs::write(&path, &bytes).unwrap();
        let opts = strata_train::run::RunOptions {
            out: dir.clone(),
            resume: true,
            ..Default::default()
        };
        let what = format!("checkpoint mutant {k} ({how})");
        let (r, _) = measured(|| strata_train::run::train(&spec, &opts, &mut ()));
        match r {
            Err(p) => panic!("{what}: panicked: {p}"),
            Ok(Err(e)) => {
                // The checkpoint, or (a run that diverged on a value it held)
                // the folder whose checkpoint is kept.
                assert!(e.to_string().contains(dir.to_str().unwrap()), "{what}: {e}");
                refused += 1;
            }
            Ok(Ok(s)) => {
                assert!(s.test_accuracy.is_some_and(|a| a.is_finite()), "{what}");
                accepted += 1;
            }
        }
        std::fs::write(&path, &seed).unwrap();
    }
    eprintln!("checkpoints: 2000 mutants, {refused} refused, {accepted} accepted");
    assert!(refused > 500);
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 24, defect 4: the step count is an integer in the metadata, read
/// exactly; a value that is not a whole number ≥ 0 is refused by name, and
/// a resume continues the schedule from the stored count.
#[test]
fn checkpoint_step_counter() {
    use strata_train::checkpoint::{load_tensors, save_tensors};
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("steps");
    let spec = trained_digits(&dir)
        .with_overrides(&["train.epochs = 3".into()])
        .unwrap();
    let path = dir.join("checkpoint").join("state.safetensors");
    let (tensors, meta) = load_tensors(&path).unwrap();
    // Two epochs of equal length.
    let steps: u64 = meta["optimizer_steps"].parse().unwrap();
    assert!(steps > 0 && steps.is_multiple_of(2), "{steps}");
    assert!(tensors.iter().all(|(n, _)| n != "optim/__step"));
    let resume = strata_train::run::RunOptions {
        out: dir.clone(),
        resume: true,
        ..Default::default()
    };
    for bad in ["46.0", "NaN", "-1", "", "18446744073709551616"] {
        let mut m = meta.clone();
        m.insert("optimizer_steps".into(), bad.into());
        save_tensors(&path, &tensors, m).unwrap();
        let e = strata_train::run::train(&spec, &resume, &mut ()).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("optimizer_steps") && e.contains("state.safetensors"),
            "{bad}: {e}"
        );
    }
    let mut m = meta.clone();
    m.remove("optimizer_steps");
    save_tensors(&path, &tensors, m).unwrap();
    let e = strata_train::run::train(&spec, &resume, &mut ()).unwrap_err();
    assert!(e.to_string().contains("optimizer_steps"), "{e}");
    // The stored count resumes exactly.
    save_tensors(&path, &tensors, meta).unwrap();
    strata_train::run::train(&spec, &resume, &mut ()).unwrap();
    let (_, after) = load_tensors(&path).unwrap();
    assert_eq!(after["optimizer_steps"], (steps / 2 * 3).to_string());
    std::fs::remove_dir_all(&dir).ok();
}

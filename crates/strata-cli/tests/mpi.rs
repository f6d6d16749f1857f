//! Data-parallel training under `mpirun -np 2` (built with `--features mpi`;
//! `cargo xtask test` installs Open MPI and turns the feature on).
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A small MLP with dropout on the embedded digits: dropout exercises the
/// per-item mask streams, momentum the optimiser state.
const SPEC: &str = r#"
[data]
dataset = "digits"
validation = 300
[model]
layers = ["flatten", { linear = 64 }, "relu", { dropout = 0.2 }, { linear = 10 }]
[optimizer]
momentum = 0.9
weight_decay = 1e-4
schedule = { kind = "inverse-epoch", a = 10.0, b = 1.0 }
[train]
epochs = 6
batch = 32
seed = 3
"#;

/// An MLP with batch norm on 1,000 training digits (no remainder at batch 50).
const BN_SPEC: &str = r#"
[data]
dataset = "digits"
subset = 1200
validation = 200
[model]
layers = ["flatten", { linear = 64 }, "batchnorm", "relu", { linear = 10 }]
[optimizer]
momentum = 0.9
schedule = { kind = "constant", lr = 0.05 }
[train]
epochs = 4
batch = 50
seed = 5
"#;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A fresh folder `name` holding SPEC as `mlp.toml`, and that file's path.
fn with_spec(name: &str) -> (PathBuf, String) {
    let d = dir(name);
    let spec = d.join("mlp.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let spec = spec.to_str().unwrap().to_string();
    (d, spec)
}

fn mpirun(np: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &np.to_string()])
        // CI runs as root; Open MPI refuses root without these.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .arg(env!("CARGO_BIN_EXE_strata"));
    c
}

fn check(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The tensors of a safetensors file, by name, as f32 values.
fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let data = &b[8 + n..];
    let mut out: Vec<(String, Vec<f32>)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let o = &v["data_offsets"];
            let (s, e) = (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            );
            let vals = data[s..e]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k.clone(), vals)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The largest difference between two weight files, as a fraction of the
/// largest weight magnitude in the model (a per-tensor measure would be
/// meaningless for the bias before a batch norm, which the normalisation
/// cancels and which stays at round-off size), and the tensor it is in.
fn max_relative_gap(a: &Path, b: &Path) -> (f32, String) {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    let scale = wb
        .iter()
        .flat_map(|(_, y)| y.iter())
        .fold(0f32, |m, v| m.max(v.abs()));
    let mut worst = (0f32, String::new());
    for ((n, x), (_, y)) in wa.iter().zip(&wb) {
        let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        if diff / scale > worst.0 {
            worst = (diff / scale, n.clone());
        }
    }
    worst
}

fn test_accuracy(out: &Path) -> f64 {
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    s["test_accuracy"].as_f64().unwrap()
}

#[test]
fn two_ranks_train_like_one_process_and_repeat_bit_for_bit() {
    let (d, spec) = with_spec("equal");
    let spec = spec.as_str();
    let run = |np: usize, name: &str| {
        let out = d.join(name);
        let o = if np == 1 {
            Command::new(env!("CARGO_BIN_EXE_strata"))
                .args(["train", spec, "--threads", "1", "--out"])
                .arg(&out)
                .output()
                .unwrap()
        } else {
            mpirun(np)
                .args(["train", spec, "--threads", "1", "--out"])
                .arg(&out)
                .output()
                .unwrap()
        };
        check(&o, name);
        (out, String::from_utf8_lossy(&o.stdout).to_string())
    };
    let (one, _) = run(1, "one");
    let (a, stdout) = run(2, "a");
    let (b, _) = run(2, "b");
    // Rank 0 alone reports.
    assert_eq!(stdout.matches("test accuracy").count(), 1, "{stdout}");
    assert!(stdout.contains("data-parallel over 2 ranks"), "{stdout}");
    // The time in collective calls, as rank 0 measured it.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json")).unwrap()).unwrap();
    let dp = &summary["data_parallel"];
    assert_eq!(dp["ranks"].as_u64(), Some(2), "{summary}");
    let share = dp["collective_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "{summary}");
    // The same floor as one process.
    assert!(test_accuracy(&a) > 0.9, "{}", test_accuracy(&a));
    // Dead units are counted over every rank's images, as one process does.
    let dead = |out: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["kind"] == "epoch")
            .map(|v| v["dead_units"].clone())
            .collect()
    };
    assert_eq!(dead(&a), dead(&one));
    assert!(dead(&one)
        .iter()
        .any(|d| d["layers.2"].as_f64() > Some(0.0)));
    // Two runs with N = 2: bit-identical.
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(b.join("model.safetensors")).unwrap()
    );
    // N = 2 against one process of the same global batch: the sums differ
    // only in f32 reduction order. Stated tolerance: every weight within
    // 1e-4 of the largest weight's magnitude (measured: ~1e-7 relative).
    let (wa, w1) = (
        weights(&a.join("model.safetensors")),
        weights(&one.join("model.safetensors")),
    );
    assert_eq!(wa.len(), w1.len());
    for ((n, x), (_, y)) in wa.iter().zip(&w1) {
        let scale = y.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff <= 1e-4 * scale,
            "{n}: max |Δ| {diff} against max |w| {scale}"
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn resume_under_mpi_reaches_the_uninterrupted_weights() {
    let (d, spec) = with_spec("resume");
    let spec = spec.as_str();
    let whole = d.join("whole");
    check(
        &mpirun(2)
            .args([
                "train",
                spec,
                "--threads",
                "1",
                "--set",
                "train.checkpoint_every=1",
                "--out",
            ])
            .arg(&whole)
            .output()
            .unwrap(),
        "uninterrupted",
    );
    let part = d.join("part");
    check(
        &mpirun(2)
            .args([
                "train",
                spec,
                "--threads",
                "1",
                "--set",
                "train.checkpoint_every=1",
            ])
            .args(["--epochs", "3", "--out"])
            .arg(&part)
            .output()
            .unwrap(),
        "first half",
    );
    check(
        &mpirun(2)
            .args([
                "train",
                spec,
                "--threads",
                "1",
                "--set",
                "train.checkpoint_every=1",
            ])
            .args(["--epochs", "6", "--resume", "--out"])
            .arg(&part)
            .output()
            .unwrap(),
        "resumed",
    );
    assert_eq!(
        weights(&whole.join("model.safetensors")),
        weights(&part.join("model.safetensors"))
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// The pid of the process of `rank` started by the `mpirun` whose pid is `parent`.
fn rank_pid(parent: u32, rank: usize) -> Option<u32> {
    let var = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        let mine = env.split(|&b| b == 0).any(|kv| kv == var.as_bytes());
        (mine && is_descendant(pid, parent)).then_some(pid)
    })
}

/// Field 4 of /proc/PID/stat, the parent pid (after "(comm)").
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `ancestor` is among the first few ancestors of `pid`.
fn is_descendant(pid: u32, ancestor: u32) -> bool {
    let mut p = pid;
    for _ in 0..8 {
        match parent_pid(p) {
            Some(q) if q == ancestor => return true,
            Some(q) if q > 1 => p = q,
            _ => return false,
        }
    }
    false
}

#[test]
fn a_killed_rank_ends_the_job_with_a_message_not_a_hang() {
    let (d, spec) = with_spec("kill");
    let mut child = mpirun(2)
        .env("STRATA_MPI_TIMEOUT", "5")
        .args(["train", &spec, "--threads", "1", "--epochs", "100000"])
        .arg("--out")
        .arg(d.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the training to start (rank 0 writes spec.toml once every
    // rank has joined), then kill rank 1.
    let start = Instant::now();
    while !d.join("run").join("spec.toml").exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = rank_pid(child.id(), 1).expect("rank 1's process");
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let killed = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if killed.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the job did not end within 60 s of losing rank 1");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(
        err.contains("rank 1"),
        "the message should name rank 1:\n{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_folder_rank_0_refuses_stops_every_rank_with_its_reason() {
    let (d, spec) = with_spec("refuse");
    let out = d.join("run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("summary.json"), "{}").unwrap();
    let o = mpirun(2)
        .args(["train", &spec, "--threads", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rank 0:") && err.contains("holds another run"),
        "{err}"
    );
    assert!(
        err.contains("rank 1: rank 0 could not prepare the output folder"),
        "{err}"
    );
    // Nothing of the older run was touched.
    assert_eq!(
        std::fs::read_to_string(out.join("summary.json")).unwrap(),
        "{}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn synchronised_batch_norm_trains_like_one_process() {
    let d = dir("syncbn");
    let spec = d.join("bn.toml");
    std::fs::write(&spec, BN_SPEC).unwrap();
    let spec = spec.to_str().unwrap();
    let train = |mut c: Command, name: &str, sync: bool| {
        let out = d.join(name);
        let set = format!("train.sync_batchnorm={sync}");
        let o = c
            .args(["train", spec, "--threads", "1", "--set", &set, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        check(&o, name);
        out.join("model.safetensors")
    };
    let one = train(Command::new(env!("CARGO_BIN_EXE_strata")), "one", false);
    let synced = train(mpirun(2), "synced", true);
    let per_rank = train(mpirun(2), "per-rank", false);
    // Synchronised: the whole minibatch's statistics on both ranks, so the
    // weights and running statistics are one process's up to f32 round-off
    // (the tolerance of two_ranks_train_like_one_process_and_repeat_bit_for_bit).
    let (gap, name) = max_relative_gap(&synced, &one);
    assert!(
        gap <= 1e-4,
        "synchronised: {name} off by {gap} of its largest entry"
    );
    // Per-rank statistics (the default) normalise each half by itself: a
    // different training, as under PyTorch's DistributedDataParallel.
    let (gap, name) = max_relative_gap(&per_rank, &one);
    assert!(gap > 1e-3, "per rank: only {gap} ({name}) from one process");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn synchronised_batch_norm_refuses_a_minibatch_a_rank_would_sit_out() {
    let d = dir("syncbn-refuse");
    let spec = d.join("bn.toml");
    // 1,001 training images in minibatches of 50: the last holds one image.
    std::fs::write(&spec, BN_SPEC.replace("subset = 1200", "subset = 1201")).unwrap();
    let o = mpirun(2)
        .args(["train", spec.to_str().unwrap(), "--threads", "1"])
        .args(["--set", "train.sync_batchnorm=true", "--out"])
        .arg(d.join("run"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("synchronised batch norm") && err.contains("train.batch"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_mnist_subset_reaches_one_process_accuracy_under_mpirun() {
    let d = dir("mnist");
    let spec = d.join("mnist.toml");
    std::fs::write(
        &spec,
        r#"
[data]
dataset = "mnist"
subset = 4000
test_subset = 2000
validation = 0
[model]
layers = ["flatten", { linear = 128 }, "relu", { linear = 10 }]
[optimizer]
momentum = 0.9
schedule = { kind = "constant", lr = 0.05 }
[train]
epochs = 2
batch = 64
seed = 2
"#,
    )
    .unwrap();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");
    let train = |mut c: Command, name: &str| {
        let out = d.join(name);
        let o = c
            .args(["train", spec.to_str().unwrap(), "--threads", "1"])
            .args(["--data-dir", data, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        check(&o, name);
        out
    };
    let one = train(Command::new(env!("CARGO_BIN_EXE_strata")), "one");
    let two = train(mpirun(2), "two");
    let (a1, a2) = (test_accuracy(&one), test_accuracy(&two));
    // The same floor, and the same model up to f32 round-off.
    assert!(a1 > 0.88 && a2 > 0.88, "one process {a1}, two ranks {a2}");
    assert!((a1 - a2).abs() <= 0.002, "one process {a1}, two ranks {a2}");
    let (gap, name) = max_relative_gap(
        &two.join("model.safetensors"),
        &one.join("model.safetensors"),
    );
    assert!(gap <= 1e-4, "{name} off by {gap} of the largest weight");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn sigterm_on_one_rank_stops_every_rank_after_the_step() {
    let (d, spec) = with_spec("sigterm");
    let mut child = mpirun(2)
        .env("STRATA_MPI_TIMEOUT", "120")
        .args(["train", &spec, "--threads", "1", "--epochs", "100000"])
        .arg("--out")
        .arg(d.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Past the first epoch, so that a checkpoint exists to resume from.
    let ckpt = d.join("run").join("checkpoint").join("state.safetensors");
    let start = Instant::now();
    while !ckpt.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = rank_pid(child.id(), 1).expect("rank 1's process");
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let sent = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        // Well inside the 120 s watchdog: the stop travels in a step's sum.
        if sent.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the job did not stop within 30 s of SIGTERM to rank 1");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    // Both ranks stopped on the interruption (not on a lost rank), and rank
    // 0 says how to continue.
    assert!(err.contains("rank 0:") && err.contains("rank 1:"), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("--resume"),
        "{err}"
    );
    assert!(!err.contains("lost"), "{err}");
    assert!(
        err.contains("rank 1: ") && err.contains("rank 0 writes the checkpoints"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

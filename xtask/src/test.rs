//! `cargo xtask test [ARGS…]`: the README's test command. Installs what the
//! tests need that a fresh machine lacks — the Fashion-MNIST Debian package
//! (`dataset-fashion-mnist`, into /usr/share/datasets/fashion-mnist) and Open
//! MPI with the headers and libclang that the `mpi` crate builds against
//! (`libopenmpi-dev openmpi-bin libclang-dev`) — then runs `cargo test
//! --workspace --features strata-cli/mpi ARGS…`, so the CLI's tests run a
//! binary with MPI support (and `tests/mpi.rs` runs `mpirun -np 2`), and a
//! Python virtual environment with onnxruntime, onnx and numpy (from PyPI, in
//! `target/onnx-venv`), which the ONNX export tests run the exported models
//! in. CI runs exactly this.

use std::path::Path;
use std::process::Command;

/// Where the Debian package puts Fashion-MNIST.
const FASHION: &str = "/usr/share/datasets/fashion-mnist";

/// Runs a command, failing with its name when it cannot start or fails.
fn run(cmd: &mut Command) -> Result<(), String> {
    let what = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Installs Debian `packages` with apt-get unless `present` already holds.
fn ensure(present: bool, packages: &[&str], why: &str) -> Result<(), String> {
    if present {
        return Ok(());
    }
    eprintln!(
        "xtask test: {why} is missing; installing {} with apt-get",
        packages.join(" ")
    );
    let apt = |args: &[&str]| {
        run(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    let mut install = vec!["install", "-y", "-qq"];
    install.extend(packages);
    apt(&["update", "-qq"])
        .and_then(|()| apt(&install))
        .map_err(|e| {
            format!(
                "{e}\nThe tests need {why}: install it as root with `apt-get install -y {}`, \
                 then run `cargo xtask test` again",
                packages.join(" ")
            )
        })
}

/// Whether `program` is found on the PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// `cargo xtask install`: what the tests need (CI runs it before clippy,
/// which builds the MPI crate too).
pub fn install() -> Result<(), String> {
    ensure(
        Path::new(FASHION).is_dir(),
        &["dataset-fashion-mnist"],
        &format!("Fashion-MNIST in {FASHION}"),
    )?;
    // mpicc and mpirun for the `mpi` crate's build script and the tests;
    // libclang for its bindgen.
    let clang = Path::new("/usr/lib/llvm-14/lib/libclang.so").exists()
        || std::fs::read_dir("/usr/lib")
            .map(|d| {
                d.flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with("llvm-")
                        && e.path().join("lib").join("libclang.so").exists()
                })
            })
            .unwrap_or(false);
    ensure(
        on_path("mpicc") && on_path("mpirun") && clang,
        &["libopenmpi-dev", "openmpi-bin", "libclang-dev"],
        "Open MPI (mpicc, mpirun) and libclang",
    )?;
    ensure_onnx_venv()
}

/// The virtual environment the ONNX tests use (`crates/strata-cli/tests/onnx.rs`
/// looks for it here).
fn onnx_venv() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("onnx-venv")
}

/// Python with onnxruntime, onnx and numpy in [`onnx_venv`], made with
/// `python3 -m venv` (python3-venv from Debian when it is missing) and pip.
fn ensure_onnx_venv() -> Result<(), String> {
    let venv = onnx_venv();
    let python = venv.join("bin").join("python");
    let ready = Command::new(&python)
        .args(["-c", "import onnxruntime, onnx, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ready {
        return Ok(());
    }
    let venv_works = Command::new("python3")
        .args(["-m", "venv", "--help"])
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("python3")
            .args(["-c", "import ensurepip"])
            .output()
            .is_ok_and(|o| o.status.success());
    ensure(
        venv_works,
        &["python3", "python3-venv"],
        "Python 3 with venv (for the ONNX tests' onnxruntime)",
    )?;
    eprintln!(
        "xtask install: creating {} with onnxruntime, onnx and numpy",
        venv.display()
    );
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "onnxruntime",
        "onnx",
        "numpy",
    ]))
}

/// `cargo xtask test`: install, then test.
pub fn test(args: &[String]) -> Result<(), String> {
    install()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args(["test", "--workspace", "--features", "strata-cli/mpi"])
        .args(args))
}

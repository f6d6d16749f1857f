//! `cargo xtask test [ARGS…]`: the README's test command. Installs what the
//! tests read that a fresh machine lacks — the Fashion-MNIST Debian package
//! (`dataset-fashion-mnist`, into /usr/share/datasets/fashion-mnist) — then
//! runs `cargo test --workspace ARGS…`. CI runs exactly this.

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

/// Installs the Fashion-MNIST package with apt-get when it is missing.
fn ensure_fashion_mnist() -> Result<(), String> {
    if Path::new(FASHION).is_dir() {
        return Ok(());
    }
    eprintln!("xtask test: {FASHION} is missing; installing dataset-fashion-mnist with apt-get");
    let apt = |args: &[&str]| {
        run(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    apt(&["update", "-qq"])
        .and_then(|()| apt(&["install", "-y", "-qq", "dataset-fashion-mnist"]))
        .map_err(|e| {
            format!(
                "{e}\nThe tests read Fashion-MNIST from {FASHION}: install it as root with \
                 `apt-get install -y dataset-fashion-mnist`, then run `cargo xtask test` again"
            )
        })
}

/// `cargo xtask test`: install, then test.
pub fn test(args: &[String]) -> Result<(), String> {
    ensure_fashion_mnist()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).args(["test", "--workspace"]).args(args))
}

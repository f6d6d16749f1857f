//! `strata`: train image classifiers described by a TOML spec, and look at them.
//!
//! ```text
//! strata train examples/digits-softmax.toml      # trains, logs, plots, evaluates
//! strata eval runs/digits-softmax                # held-out evaluation of a saved model
//! strata sweep SPEC --set optimizer.weight_decay=1e-5,1e-4,1e-3
//! strata gradcheck SPEC                          # backprop vs finite differences
//! strata inspect SPEC                            # layers, shapes, parameters, FLOPs
//! strata data list                               # which data sets are found where
//! strata detect runs/mnist-detect mnist-canvas --eval   # detection by windows, mAP
//! ```
//! Exit codes: 0 success, 1 failure while running, 2 a malformed spec or command line.
//!
//! Each subcommand has a file in `cmd/` with its arguments and its code;
//! `failure.rs` maps errors to messages and exit codes.

mod cmd;
mod failure;
mod progress;

use clap::{Parser, Subcommand};
use failure::Failure;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Train image classifiers on the CPU from a TOML spec"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the network a spec describes; write logs, plots, checkpoints and a summary.
    Train(cmd::train::Args),
    /// Evaluate a trained model folder on held-out test data.
    Eval(cmd::eval::Args),
    /// Write a trained model as an ONNX file (onnxruntime, PyTorch, …): the
    /// network in evaluation form, with per-pixel preprocessing.
    Export(cmd::export::Args),
    /// Train once per value, choose on validation, test only the best.
    Sweep(cmd::sweep::Args),
    /// Check backprop against finite differences for every parameter (f64).
    Gradcheck(cmd::gradcheck::Args),
    /// Print the layer table: output shapes, parameters and FLOPs per sample.
    Inspect(cmd::inspect::Args),
    /// Load a PyTorch state dict (safetensors) into the network a spec
    /// describes, as a model folder `strata eval` and `strata export` take.
    Import(cmd::import::Args),
    /// Find objects by windows (section 12.4): classify windows of several
    /// sizes with a trained model, then resolve overlapping ones.
    Detect(cmd::detect::Args),
    /// The chapter's pictures, as PNG files.
    Viz {
        #[command(subcommand)]
        picture: cmd::viz::Picture,
    },
    /// Data sets: where they are found, and fetching them into the cache.
    Data {
        #[command(subcommand)]
        action: cmd::data::DataAction,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_command(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg, code)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run_command(command: Command) -> Result<(), Failure> {
    match command {
        Command::Train(args) => cmd::train::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Sweep(args) => cmd::sweep::run(args),
        Command::Gradcheck(args) => cmd::gradcheck::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Import(args) => cmd::import::run(args),
        Command::Detect(args) => cmd::detect::run(args),
        Command::Viz { picture } => cmd::viz::run(picture),
        Command::Data { action } => cmd::data::run(action),
    }
}

//! `strata inspect`: the layer table (output shapes, parameters, FLOPs).

use super::load_spec;
use crate::failure::Failure;
use std::path::PathBuf;
use strata_train::run;

/// The arguments of `strata inspect` (its help is the doc comment of
/// `Command::Inspect` in main.rs).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The spec file.
    spec: PathBuf,
    /// Look for data sets in this folder first.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Runs `strata inspect`.
pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let Args { spec, data_dir } = args;
    let s = load_spec(&spec, &[])?;
    let resolved = strata_train::data::resolve(&s.data.dataset, data_dir.as_deref())?;
    let data = resolved.load()?;
    let input = run::input_shape_for(&s, data.train.image_shape())?.to_vec();
    let net: strata_train::nn::Sequential<f32> =
        strata_train::build_model(&s, &input, data.train.num_classes())
            .map_err(|e| Failure(e.to_string(), 2))?;
    println!(
        "input {:?} per sample, {} classes",
        input,
        data.train.num_classes()
    );
    println!(
        "{:<10} {:<28} {:<16} {:>12} {:>14}",
        "layer", "kind", "output", "parameters", "FLOPs/sample"
    );
    let (mut params, mut flops) = (0, 0);
    for row in strata_train::layer_table(&net, &input) {
        println!(
            "{:<10} {:<28} {:<16} {:>12} {:>14}",
            row.path,
            row.kind,
            format!("{:?}", row.output),
            row.parameters,
            2 * row.flops
        );
        params += row.parameters;
        flops += 2 * row.flops;
    }
    println!("total: {params} parameters, {flops} FLOPs per sample (forward)");
    Ok(())
}

//! Times reading a data set by name or path: `cargo run --release -p strata-data
//! --example load_time -- cifar10 ../shared/data`.

use std::path::Path;
use std::time::Instant;

fn main() -> Result<(), strata_data::DataError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map(String::as_str).unwrap_or("cifar10");
    let data_dir = args.get(1).map(Path::new);
    let t = Instant::now();
    let found = strata_data::resolve(name, data_dir)?;
    let data = found.load()?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{name}: {:?} at {:?}: train {:?}, test {:?}, {} classes, read in {secs:.2} s ({} threads)",
        found.layout,
        found.path,
        data.train.shape(),
        data.test.shape(),
        data.train.num_classes(),
        rayon::current_num_threads()
    );
    Ok(())
}

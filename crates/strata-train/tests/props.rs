//! The spec language against damaged input: every example spec, cut short,
//! missing a line or with a value replaced by a wrong one, either parses and
//! builds its network or fails with an error that names the file — never a
//! panic, never an attempt to allocate an impossible network. Overrides
//! recorded in the source read back as the fields they set.

use proptest::prelude::*;
use strata_train::spec::Spec;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");

fn examples() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(EXAMPLES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(v.len() >= 5, "examples/*.toml");
    v
}

/// Values of every wrong kind: negative, zero, huge, non-finite, text, tables.
const WRONG: &[&str] = &[
    "-1",
    "0",
    "1e300",
    "nan",
    "inf",
    "-inf",
    "99999999999",
    "\"\"",
    "\"bogus\"",
    "true",
    "[]",
    "{}",
    "[1, 2]",
    "{ linear = 0 }",
    "0.5",
    "18446744073709551615",
];

/// The image each example's data set gives, as `strata train` would load it.
fn raw_image(spec: &Spec) -> [usize; 3] {
    match spec.data.dataset.as_str() {
        "digits" => [1, 8, 8],
        "cifar10" => [3, 32, 32],
        _ => [1, 28, 28],
    }
}

/// Parses `text`; a spec that parses must also build (or refuse) its network.
fn parse_and_build(text: &str, file: &str) -> Result<(), String> {
    let check = |msg: String| {
        if msg.starts_with(file) {
            Err(msg)
        } else {
            panic!("error without the file name: {msg}")
        }
    };
    let spec = match Spec::parse(text, file) {
        Ok(s) => s,
        Err(e) => return check(e.to_string()),
    };
    let input = match strata_train::run::input_shape_for(&spec, raw_image(&spec)) {
        Ok(i) => i,
        Err(e) => return check(e.to_string()),
    };
    match strata_train::build_model::<f32>(&spec, &input, 10) {
        Ok(_) => Ok(()),
        Err(e) => check(e.to_string()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn damaged_specs_parse_or_name_the_file(which in 0usize..64, cut in 0.0f64..1.0, line in 0usize..200, wrong in 0usize..WRONG.len(), how in 0usize..3) {
        let all = examples();
        let (file, text) = &all[which % all.len()];
        let lines: Vec<&str> = text.lines().collect();
        let damaged = match how {
            // Cut short at a character boundary.
            0 => {
                let mut at = (text.len() as f64 * cut) as usize;
                while !text.is_char_boundary(at) { at -= 1; }
                text[..at].to_string()
            }
            // One line gone.
            1 => lines.iter().enumerate().filter(|(i, _)| *i != line % lines.len()).map(|(_, l)| *l).collect::<Vec<_>>().join("\n"),
            // The value of one `key = value` line (or layer entry) replaced.
            _ => {
                let assignments: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ") && !lines[i].trim_start().starts_with('#')).collect();
                let i = assignments[line % assignments.len()];
                let (key, _) = lines[i].split_once(" = ").unwrap();
                let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                out[i] = format!("{key} = {}", WRONG[wrong]);
                out.join("\n")
            }
        };
        let _ = parse_and_build(&damaged, file);
    }

    #[test]
    fn recorded_overrides_read_back(which in 0usize..64, epochs in 1usize..500, batch in 1usize..1024, seed in 0u64..1_000_000) {
        let all = examples();
        let (file, text) = &all[which % all.len()];
        let spec = Spec::parse(text, file).unwrap();
        let sets = [format!("train.epochs = {epochs}"), format!("train.batch = {batch}"), format!("train.seed = {seed}")];
        let changed = spec.with_overrides(&sets).unwrap();
        let again = Spec::parse(&changed.source, file).unwrap();
        for s in [&changed, &again] {
            prop_assert_eq!((s.train.epochs, s.train.batch, s.train.seed), (epochs, batch, seed));
            prop_assert_eq!(&s.layers, &spec.layers);
        }
    }
}

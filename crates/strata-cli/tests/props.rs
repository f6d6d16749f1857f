//! The command line against arbitrary overrides: `strata train --set` and
//! `strata sweep --set` with real and made-up keys and values of every kind
//! end in success, a spec error (exit 2) or a run error (exit 1), with a
//! message that starts `error:` — never a panic.

use proptest::prelude::*;
use std::process::Command;

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/digits-softmax.toml"
);

const KEYS: &[&str] = &[
    "train.epochs",
    "train.batch",
    "train.seed",
    "optimizer.lr",
    "optimizer.kind",
    "optimizer.momentum",
    "optimizer.weight_decay",
    "optimizer.schedule",
    "model.layers",
    "data.validation",
    "data.subset",
    "data.augment",
    "data.preprocess",
    "eval.mirror",
    "bogus.key",
    "train",
    "",
    ".",
    "a..b",
    "model.layers.0",
];

const VALUES: &[&str] = &[
    "1",
    "0",
    "-1",
    "1e300",
    "nan",
    "inf",
    "\"adam\"",
    "\"bogus\"",
    "true",
    "[]",
    "{}",
    "[\"flatten\", { linear = 10 }]",
    "[\"relu\"]",
    "{ kind = \"cosine\" }",
    "0.5",
    "\"",
    "[",
    "18446744073709551615",
    "",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0..VALUES.len()).prop_map(|i| VALUES[i].to_string()),
        1 => "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_override_is_an_answer_not_a_panic(key in 0..KEYS.len(), v1 in value(), v2 in value(), sweep in any::<bool>()) {
        let out = std::env::temp_dir().join(format!("strata-props-{}", std::process::id()));
        let set = if sweep { format!("{}={v1},{v2}", KEYS[key]) } else { format!("{}={v1}", KEYS[key]) };
        let cmd = if sweep { "sweep" } else { "train" };
        let o = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args([cmd, SPEC, "--set", &set, "--epochs", "1", "--threads", "1", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&out);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let code = o.status.code();
        prop_assert!(matches!(code, Some(0..=2)), "{} --set {:?}: exit {:?}\n{}", cmd, set, code, err);
        prop_assert!(!err.contains("panicked"), "{}", err);
        if code != Some(0) {
            prop_assert!(err.contains("error: "), "{} --set {:?}: {}", cmd, set, err);
        }
    }
}

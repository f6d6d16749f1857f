//! The spec language: defaults, every optimiser and schedule, overrides, and
//! errors that point at the file, line and field.

use strata_optim::{Method, Schedule};
use strata_train::spec::{LayerSpec, Spec};

const BASE: &str = "[data]\ndataset = \"digits\"\n[model]\nlayers = [\"flatten\", { linear = { out = 32 } }, \"relu\", { dropout = 0.25 }, { linear = 10 }]\n";

#[test]
fn defaults_and_layers() {
    let s = Spec::parse(BASE, "a.toml").unwrap();
    assert_eq!(
        s.layers,
        vec![
            LayerSpec::Flatten,
            LayerSpec::Linear {
                out: 32,
                bias: true
            },
            LayerSpec::Relu,
            LayerSpec::Dropout { p: 0.25 },
            LayerSpec::Linear {
                out: 10,
                bias: true
            }
        ]
    );
    assert_eq!(s.layer_lines, vec![4; 5]);
    assert_eq!((s.train.epochs, s.train.batch, s.train.seed), (10, 128, 1));
    assert_eq!(s.method().unwrap(), Method::Sgd);
    assert_eq!(s.schedule(), Schedule::Constant { lr: 0.01 });
}

#[test]
fn every_optimiser_and_schedule() {
    let cases = [
        (
            "kind = \"sgd\"\nmomentum = 0.9",
            Method::Momentum { mu: 0.9 },
        ),
        (
            "kind = \"adagrad\"\nalpha = 1e-7",
            Method::Adagrad { alpha: 1e-7 },
        ),
        (
            "kind = \"rmsprop\"\ndecay = 0.99",
            Method::RmsProp {
                decay: 0.99,
                alpha: 1e-6,
            },
        ),
        (
            "kind = \"adam\"",
            Method::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        ),
        (
            "kind = \"adamw\"\nbeta2 = 0.99",
            Method::AdamW {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
            },
        ),
    ];
    for (body, want) in cases {
        let s = Spec::parse(&format!("{BASE}[optimizer]\n{body}\n"), "o.toml").unwrap();
        assert_eq!(s.method().unwrap(), want, "{body}");
    }
    let sched = |t: &str| {
        Spec::parse(
            &format!("{BASE}[optimizer]\nschedule = {t}\nwarmup_steps = 0\n"),
            "s.toml",
        )
        .unwrap()
        .schedule_for(10)
    };
    assert_eq!(
        sched("{ kind = \"inverse-epoch\", a = 10.0, b = 1.0 }"),
        Schedule::InverseEpoch { a: 10.0, b: 1.0 }
    );
    assert_eq!(
        sched("{ kind = \"step\", lr = 0.1, gamma = 0.5, every = 3 }"),
        Schedule::Step {
            lr: 0.1,
            gamma: 0.5,
            every: 3
        }
    );
    assert_eq!(
        sched("{ kind = \"cosine\", lr = 0.1 }"),
        Schedule::Cosine {
            lr: 0.1,
            min_lr: 0.0,
            total_steps: 100
        }
    );
    // After a warm-up the cosine spans the remaining steps and ends at min_lr.
    let c = Spec::parse(
        &format!("{BASE}[optimizer]\nwarmup_steps = 40\nschedule = {{ kind = \"cosine\", lr = 0.1, min_lr = 0.001 }}\n[train]\nepochs = 10\n"),
        "c.toml",
    )
    .unwrap();
    let s = c.schedule_for(10);
    assert!(
        (s.lr(39, 3) - 0.1).abs() < 1e-12,
        "end of warm-up: {}",
        s.lr(39, 3)
    );
    assert!(
        (s.lr(99, 9) - 0.001).abs() < 1e-4,
        "last step: {}",
        s.lr(99, 9)
    );
    assert!(
        s.lr(69, 6) > 0.04 && s.lr(69, 6) < 0.06,
        "half way: {}",
        s.lr(69, 6)
    );
    let w = Spec::parse(
        &format!("{BASE}[optimizer]\nlr = 0.2\nwarmup_steps = 5\n"),
        "w.toml",
    )
    .unwrap();
    assert_eq!(
        w.schedule(),
        Schedule::Warmup {
            steps: 5,
            after: Box::new(Schedule::Constant { lr: 0.2 })
        }
    );
}

#[test]
fn overrides_apply_before_validation() {
    let s = Spec::parse_with(
        BASE,
        "a.toml",
        &[
            "optimizer.weight_decay=1e-3".into(),
            "train.epochs=3".into(),
            "data.dataset=mnist".into(),
        ],
    )
    .unwrap();
    assert_eq!(s.optimizer.weight_decay, 1e-3);
    assert_eq!(s.train.epochs, 3);
    assert_eq!(s.data.dataset, "mnist");
    let e = Spec::parse_with(BASE, "a.toml", &["train.epochs=-1".into()]).unwrap_err();
    assert!(e.to_string().contains("a.toml"), "{e}");
    assert!(Spec::parse_with(BASE, "a.toml", &["nonsense".into()]).is_err());
}

#[test]
fn errors_point_at_line_and_field() {
    let bad = "[data]\ndataset = \"digits\"\n[model]\nlayers = [\n  \"flatten\",\n  { linear = 10, relu = 1 },\n]\n";
    let e = Spec::parse(bad, "b.toml").unwrap_err();
    assert_eq!(e.line, Some(6));
    assert_eq!(e.field, "model.layers[1]");
    let e = Spec::parse(&format!("{BASE}[optimizer]\nkind = \"newton\"\n"), "c.toml").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (Some(6), "optimizer.kind"));
    assert!(e.message.contains("adam"), "{e}");
    let e = Spec::parse(&format!("{BASE}[optimizer]\nmomentum = 1.5\n"), "d.toml").unwrap_err();
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(6), "optimizer.momentum"),
        "{e}"
    );
    let e = Spec::parse("[model]\nlayers = [\"relu\"]\n", "e.toml").unwrap_err();
    assert!(e.to_string().contains("data"), "{e}");
    let e = Spec::parse(&format!("{BASE}[train]\nbatch = 0\n"), "f.toml").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (Some(6), "train.batch"));
    for bad in ["1.0", "-0.1"] {
        let src = format!("{BASE}[train]\nlabel_smoothing = {bad}\n");
        let e = Spec::parse(&src, "s.toml").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(6), "train.label_smoothing")
        );
        assert!(e.message.contains("[0, 1)"), "{e}");
    }
    let ok = Spec::parse(&format!("{BASE}[train]\nlabel_smoothing = 0.1\n"), "s.toml").unwrap();
    assert_eq!(ok.train.label_smoothing, 0.1);
    for bad in ["\"fp16\"", "\"BF16\"", "\"\""] {
        let src = format!("{BASE}[train]\nmatmul_precision = {bad}\n");
        let e = Spec::parse(&src, "p.toml").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(6), "train.matmul_precision"),
            "{e}"
        );
        assert!(e.message.contains("\"f32\" or \"bf16\""), "{e}");
    }
    let e = Spec::parse(&format!("{BASE}[train]\nmatmul_precision = 16\n"), "p.toml").unwrap_err();
    assert!(e.to_string().contains("matmul_precision"), "{e}");
    use strata_kernels::gemm::MatmulPrecision;
    let ok = Spec::parse(
        &format!("{BASE}[train]\nmatmul_precision = \"bf16\"\n"),
        "p.toml",
    )
    .unwrap();
    assert_eq!(ok.train.precision(), Ok(MatmulPrecision::Bf16));
    assert_eq!(ok_default_precision(), Ok(MatmulPrecision::F32));
    let e = Spec::parse(
        "[data]\ndataset = \"digits\"\n[model]\nlayers = [{ dropout = 1.0 }]\n",
        "g.toml",
    )
    .unwrap_err();
    assert!(e.message.contains("[0, 1)"), "{e}");
}

#[test]
fn init_epsilon_is_checked_and_used() {
    let with = |v: &str| BASE.replace("[model]\n", &format!("[model]\ninit_epsilon = {v}\n"));
    assert_eq!(Spec::parse(BASE, "a.toml").unwrap().init_epsilon, None);
    let s = Spec::parse(&with("0.25"), "a.toml").unwrap();
    assert_eq!(s.init_epsilon, Some(0.25));
    for bad in ["0.0", "-1.0", "nan"] {
        let e = Spec::parse(&with(bad), "h.toml").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(4), "model.init_epsilon"),
            "{e}"
        );
        assert!(e.message.contains("positive"), "{e}");
    }
    // The weights' spread follows ε: variance ε·√2/n for fan-in n = 64.
    let spread = |s: &Spec| {
        let net = strata_train::build_model::<f64>(s, &[1, 8, 8], 10).unwrap();
        let w = strata_train::nn::state_dict(&net)
            .into_iter()
            .find(|(k, _)| k == "layers.1.weight")
            .unwrap()
            .1
            .to_vec();
        w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64
    };
    let (he, small) = (spread(&Spec::parse(BASE, "a.toml").unwrap()), spread(&s));
    let n = 64.0;
    assert!((he / (2.0 / n) - 1.0).abs() < 0.1, "{he}");
    assert!(
        (small / (0.25 * 2f64.sqrt() / n) - 1.0).abs() < 0.1,
        "{small}"
    );
}

/// Sizes no machine can hold, and crops larger than the images, are spec
/// errors at the layer or field (not an aborted allocation or a panic).
#[test]
fn impossible_sizes_name_the_layer_or_field() {
    let model =
        |layers: &str| format!("[data]\ndataset = \"digits\"\n[model]\nlayers = [{layers}]\n");
    let build = |text: &str| {
        let s = Spec::parse(text, "i.toml").unwrap();
        strata_train::build_model::<f32>(&s, &[1, 8, 8], 10).map(|_| ())
    };
    // 6.4·10¹² weights.
    let e = build(&model(
        "\"flatten\", { linear = 100000000000 }, { linear = 10 }",
    ))
    .unwrap_err();
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(4), "model.layers[1] (linear)"),
        "{e}"
    );
    assert!(
        e.message.contains("more memory than can be allocated"),
        "{e}"
    );
    // A padding that makes each minibatch's output 2·10¹³ bytes.
    let e = build(&model(
        "{ conv = { out = 4, kernel = 3, pad = 100000 } }, \"flatten\", { linear = 10 }",
    ))
    .unwrap_err();
    assert_eq!(e.field, "model.layers[0] (conv)", "{e}");
    assert!(e.message.contains("minibatch's outputs"), "{e}");
    // A padding whose padded size overflows usize.
    let e = build(&model(
        "{ conv = { out = 4, kernel = 3, pad = 9223372036854775807 } }, \"flatten\", { linear = 10 }",
    ))
    .unwrap_err();
    assert!(e.message.contains("overflows"), "{e}");
    // Kernels whose element count overflows.
    let e = build(&model(
        "{ conv = { out = 4, kernel = 9223372036854775807 } }, \"flatten\", { linear = 10 }",
    ))
    .unwrap_err();
    assert!(e.message.contains("2^64"), "{e}");
    // A training crop larger than the (8×8) digits: the file and data.augment.
    let text = "[data]\ndataset = \"digits\"\naugment = { crop = { size = 100, pad = 0 } }\n[model]\nlayers = [\"flatten\", { linear = 10 }]\n";
    let s = Spec::parse(text, "j.toml").unwrap();
    let e = strata_train::run::network_input(&s, [1, 8, 8]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("j.toml: data.augment: "), "{msg}");
    assert!(msg.contains("100x100"), "{msg}");
}

#[test]
fn erasing_is_a_number_or_a_table() {
    use strata_data::AugmentStep;
    let steps = |aug: &str| {
        let text = format!("[data]\ndataset = \"digits\"\naugment = {aug}\n[model]\nlayers = [\"flatten\", {{ linear = 10 }}]\n");
        Spec::parse(&text, "e.toml").map(|s| s.augment)
    };
    assert_eq!(
        steps("{ flip = true, erase = 0.25 }").unwrap(),
        vec![
            AugmentStep::Flip,
            AugmentStep::Erase {
                probability: 0.25,
                min_area: 0.02,
                max_area: 0.4,
                min_aspect: 0.3,
                value: 0.0
            }
        ]
    );
    assert_eq!(
        steps("{ erase = { probability = 1, max_area = 0.2, value = -1.5 } }").unwrap(),
        vec![AugmentStep::Erase {
            probability: 1.0,
            min_area: 0.02,
            max_area: 0.2,
            min_aspect: 0.3,
            value: -1.5
        }]
    );
    assert_eq!(
        steps("{ erase = true }").unwrap(),
        steps("{ erase = 0.5 }").unwrap()
    );
    assert!(steps("{ erase = false }").unwrap().is_empty());
    let e = steps("{ erase = { min_aspect = 3.0 } }").unwrap_err();
    assert_eq!(e.field, "data.augment", "{e}");
    assert!(e.message.contains("erased aspect ratio"), "{e}");
}

#[test]
fn padded_multi_crop_views_are_shifted_copies() {
    use strata_data::multi_crop;
    use strata_tensor::Tensor;
    let text = |eval: &str| {
        format!("[data]\ndataset = \"digits\"\naugment = {{ crop = {{ size = 8, pad = 1 }} }}\n[model]\nlayers = [\"flatten\", {{ linear = 10 }}]\n[eval]\n{eval}\n")
    };
    let e = Spec::parse(&text("pad = 1"), "p.toml").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (Some(7), "eval.pad"), "{e}");
    let s = Spec::parse(&text("multi_crop = true\npad = 1"), "p.toml").unwrap();
    let test = strata_train::run::eval_options(&s, [1, 8, 8], true).unwrap();
    assert_eq!(test.multi_crop, Some([8, 8]));
    // Validation keeps the single centre view.
    let val = strata_train::run::eval_options(&s, [1, 8, 8], false).unwrap();
    assert_eq!(val.multi_crop, None);
    // The transform pads by one; the five windows are the image and its four
    // diagonal one-pixel shifts, each also mirrored.
    let img = Tensor::from_vec((1..=64).map(|v| v as f32).collect(), &[1, 1, 8, 8]).unwrap();
    let padded = test.transform.unwrap().apply_batch(&img, 0, 0).unwrap();
    assert_eq!(padded.shape(), &[1, 1, 10, 10]);
    let views = multi_crop(&padded, 8, 8, true).unwrap();
    assert_eq!(views.len(), 10);
    assert_eq!(views[0].to_vec(), img.to_vec());
    // Top-left view: row 0 and column 0 are padding, then the image shifted by one.
    let tl = views[1].to_vec();
    assert_eq!(&tl[..8], &[0.0; 8]);
    assert_eq!((tl[8], tl[9], tl[10]), (0.0, 1.0, 2.0));
}

/// A network with every layer of the fast-training recipe, on 3×8×8 images.
const FAST: &str = r#"[data]
dataset = "cifar10"
augment = { crop = { size = 8, pad = 1, border = "reflect" }, flip = "alternate" }
[model]
layers = [
  { whiten = { kernel = 2, eps = 1e-3, images = 100, bias_epochs = 2 } }, "gelu",
  { conv = { out = 8, kernel = 3, pad = 1, bias = false, init = "dirac" } }, { maxpool = 2 },
  { batchnorm = { scale = false, momentum = 0.4, eps = 1e-12 } }, "gelu",
  { maxpool = 3 }, "flatten", { linear = { out = 10, bias = false } }, { scale = 0.125 },
]
[optimizer]
momentum = 0.85
nesterov = true
weight_decay = 1e-3
groups = [{ params = "*.beta", lr_scale = 64.0, decay_scale = 0.015625, decay = true }]
lookahead = { every = 5, decay = 0.77, power = 3 }
schedule = { kind = "piecewise", lr = 1.5, points = [[0.0, 0.2], [0.23, 1.0], [1.0, 0.07]] }
[train]
epochs = 4
batch = 64
[eval]
tta = 1
"#;

#[test]
fn fast_recipe_parses_into_its_layers_optimiser_and_schedule() {
    let s = Spec::parse(FAST, "fast.toml").unwrap();
    assert_eq!(
        s.layers[0],
        LayerSpec::Whiten {
            kernel: 2,
            eps: 1e-3,
            images: 100,
            bias_epochs: Some(2)
        }
    );
    assert_eq!(s.layers[1], LayerSpec::Gelu);
    assert!(matches!(
        s.layers[2],
        LayerSpec::Conv {
            dirac: true,
            bias: false,
            ..
        }
    ));
    assert_eq!(
        s.layers[4],
        LayerSpec::BatchNorm {
            scale: false,
            momentum: 0.4,
            eps: 1e-12
        }
    );
    assert_eq!(
        s.layers[8],
        LayerSpec::Linear {
            out: 10,
            bias: false
        }
    );
    assert_eq!(s.layers[9], LayerSpec::Scale { factor: 0.125 });
    assert_eq!(
        s.method().unwrap(),
        Method::MomentumTorch {
            mu: 0.85,
            nesterov: true
        }
    );
    assert_eq!(
        s.augment,
        vec![
            strata_data::AugmentStep::ReflectCrop {
                height: 8,
                width: 8,
                pad: 1
            },
            strata_data::AugmentStep::AlternateFlip
        ]
    );
    // The whitening layer's biases train two epochs; then the spec's groups.
    let g = s.groups();
    assert_eq!(
        (g[0].pattern.as_str(), g[0].epochs),
        ("layers.0.bias", Some(2))
    );
    assert_eq!(
        (g[1].pattern.as_str(), g[1].lr_scale, g[1].decay),
        ("*.beta", 64.0, Some(true))
    );
    // 10 steps an epoch, 40 in all: the triangle peaks at 23 % of them.
    let sch = s.schedule_for(10);
    assert!((sch.lr(0, 0) - 0.3).abs() < 1e-12);
    assert!((sch.lr(40, 3) - 1.5 * 0.07).abs() < 1e-12);
    let opt = s.optimizer_for(10).unwrap();
    assert_eq!(opt.lookahead().unwrap().total_steps, 40);
    assert_eq!(s.eval.tta, Some(1));
    // The network builds for 3×8×8 inputs; without data the whitening is zeros.
    let net = strata_train::build_model::<f32>(&s, &[3, 8, 8], 10).unwrap();
    let params = strata_nn::Module::params(&net);
    let (_, w) = params.iter().find(|(n, _)| n == "layers.0.weight").unwrap();
    assert_eq!(w.value.shape(), &[24, 3, 2, 2]);
    assert!(w.frozen);
}

#[test]
fn fast_recipe_mistakes_name_their_field() {
    let cases: [(&str, &str, &str); 14] = [
        (
            "{ whiten = { kernel = 2, eps = 1e-3, images = 100, bias_epochs = 2 } }",
            "{ whiten = { kernel = 2, eps = -1.0 } }",
            "eps must be a small positive",
        ),
        (
            "{ whiten = { kernel = 2, eps = 1e-3, images = 100, bias_epochs = 2 } }",
            "{ whiten = { kernel = 2, colour = 1 } }",
            "no setting \"colour\"",
        ),
        (
            "{ scale = 0.125 }",
            "{ scale = \"big\" }",
            "scale: the factor must be a number",
        ),
        ("{ scale = 0.125 }", "{ scale = 0.0 }", "non-zero"),
        (
            "{ batchnorm = { scale = false, momentum = 0.4, eps = 1e-12 } }",
            "{ batchnorm = { momentum = 1.5 } }",
            "momentum",
        ),
        (
            "{ batchnorm = { scale = false, momentum = 0.4, eps = 1e-12 } }",
            "{ batchnorm = { scale = 1 } }",
            "batchnorm: scale is true or false",
        ),
        ("init = \"dirac\"", "init = \"orthogonal\"", "dirac"),
        (
            "{ linear = { out = 10, bias = false } }",
            "{ linear = { out = 10, bias = 0 } }",
            "linear: bias is true or false",
        ),
        (
            "border = \"reflect\"",
            "border = \"wrap\"",
            "crop border is",
        ),
        ("flip = \"alternate\"", "flip = \"sometimes\"", "alternate"),
        ("tta = 1", "tta = 9", "at most 4"),
        ("decay = 0.77", "decay = 1.5", "decay must lie in [0, 1)"),
        (
            "lr_scale = 64.0",
            "lr_scale = -64.0",
            "lr_scale must be ≥ 0",
        ),
        (
            "[0.23, 1.0], [1.0, 0.07]",
            "[1.0, 1.0], [0.5, 0.07]",
            "fractions must increase",
        ),
    ];
    for (from, to, want) in cases {
        assert!(FAST.contains(from), "{from}");
        let text = FAST.replacen(from, to, 1);
        let e = Spec::parse(&text, "fast.toml").unwrap_err();
        assert!(e.to_string().starts_with("fast.toml"), "{e}");
        assert!(e.to_string().contains(want), "{to}: {e}");
    }
    // Nesterov needs sgd; conventions are named; TTA is not multi-crop.
    let e = Spec::parse(
        &FAST.replace("nesterov = true", "nesterov = true\nkind = \"adam\""),
        "f.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("apply to sgd"), "{e}");
    let e = Spec::parse(
        &FAST.replace("nesterov = true", "convention = \"keras\""),
        "f.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("convention"), "{e}");
    let e = Spec::parse(
        &FAST.replace("tta = 1", "tta = 1\nmulti_crop = true"),
        "f.toml",
    )
    .unwrap_err();
    assert_eq!(e.field, "eval.tta");
    let e = Spec::parse(
        &FAST.replace("tta = 1", "multi_crop = true\npad = 3000"),
        "f.toml",
    )
    .unwrap_err();
    assert_eq!(e.field, "eval.pad");
    // The whitening layer is fitted on the images, so it comes first.
    let moved = FAST.replacen(
        "{ whiten = { kernel = 2, eps = 1e-3, images = 100, bias_epochs = 2 } }, \"gelu\",",
        "\"gelu\", { whiten = { kernel = 2 } },",
        1,
    );
    let s = Spec::parse(&moved, "f.toml").unwrap();
    let Err(e) = strata_train::build_model::<f32>(&s, &[3, 8, 8], 10) else {
        panic!("a whitening layer after another layer was accepted");
    };
    assert!(e.to_string().contains("must be the first layer"), "{e}");
}

#[test]
fn empty_subsets_are_refused() {
    for key in ["subset", "test_subset"] {
        let e = Spec::parse_with(BASE, "s.toml", &[format!("data.{key}=0")]).unwrap_err();
        assert_eq!(e.field, format!("data.{key}"));
        assert!(e.message.contains("at least 1"), "{e}");
    }
}

/// serde's wording for a mistyped value comes out in words, with the line and
/// the key (issue 24, defect 11).
#[test]
fn mistyped_values_are_explained() {
    let base = "[model]\nlayers = [\"flatten\", { linear = 10 }]\n[optimizer]\n";
    let cases = [
        (
            "schedule = { kind = \"step\", lr = 0.1, gamma = 0.5, every = -30 }\n",
            "optimizer.schedule",
            "whole number ≥ 0, found -30",
        ),
        (
            "schedule = -30\n",
            "optimizer.schedule",
            "expected a table such as",
        ),
        (
            "[train]\nepochs = -3\n",
            "train.epochs",
            "whole number ≥ 0, found -3",
        ),
        (
            "[train]\nbatch = 99999999999999999999\n",
            "train.batch",
            "too large",
        ),
        (
            "[train]\nseed = 1\nlabel_smoothing = \"some\"\n",
            "train.label_smoothing",
            "",
        ),
        (
            "momentum = 0.9\nlookahead = { every = \"five\", decay = 0.5 }\n",
            "optimizer.lookahead",
            "",
        ),
    ];
    for (tail, key, want) in cases {
        let e = Spec::parse(&format!("{base}{tail}"), "m.toml").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("m.toml:"), "{text}");
        // The field with its section, not the bare key.
        assert!(
            e.field == key || e.field.starts_with(&format!("{key}.")),
            "{tail}: field {:?} in {text}",
            e.field
        );
        assert!(text.contains(want), "{tail}: {text}");
        assert!(!text.contains("ScheduleSpec"), "{text}");
    }
}

/// A spec without `matmul_precision` runs its products in f32.
fn ok_default_precision() -> Result<strata_kernels::gemm::MatmulPrecision, String> {
    Spec::parse(BASE, "d.toml").unwrap().train.precision()
}

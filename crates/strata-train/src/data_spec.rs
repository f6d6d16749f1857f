//! `data.preprocess` and `data.augment` of the spec language.
//!
//! ```toml
//! [data]
//! preprocess = ["pixel-whiten", { zca = { eps = 0.01 } }]   # fitted on training data
//! augment = { crop = { size = 32, pad = 4 }, flip = true, rotate = 10.0, erase = 0.5 }
//! ```
//! Preprocessing steps: `pixel-whiten`, `image-normalize`, `lcn` (`sigma`,
//! `divide`, `floor`), `pca`, `zca`, `patch-zca` (`kernel`, `eps`), `resize`
//! (`size` or `height` + `width`). Augmentation keys, applied in this order:
//! `rescale = { min, max, size }`, `rotate = <max degrees>`,
//! `crop = { size, pad }`, `flip = true`, then random erasing: `erase = true`,
//! `erase = <probability>` or `erase = { probability, min_area, max_area,
//! min_aspect, value }` (defaults 0.5, 0.02, 0.4, 0.3, 0).

use strata_data::{AugmentStep, Filter, Preprocess};
use toml::Value;

fn float(v: Option<&Value>, default: f64, what: &str) -> Result<f64, String> {
    match v {
        None => Ok(default),
        Some(Value::Float(f)) => Ok(*f),
        Some(Value::Integer(i)) => Ok(*i as f64),
        Some(other) => Err(format!("{what} must be a number, got {other}")),
    }
}

fn size(v: Option<&Value>, what: &str) -> Result<usize, String> {
    match v.and_then(Value::as_integer) {
        Some(i) if i > 0 => Ok(i as usize),
        _ => Err(format!("{what} must be a positive integer")),
    }
}

fn params<'a>(
    v: &'a Value,
    name: &str,
    allowed: &[&str],
) -> Result<Option<&'a toml::Table>, String> {
    match v {
        Value::Table(t) => {
            if let Some(k) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(format!(
                    "{name} has no parameter {k:?}; expected one of {allowed:?}"
                ));
            }
            Ok(Some(t))
        }
        _ => Err(format!(
            "{name} takes a table of parameters such as {{ eps = 0.01 }}"
        )),
    }
}

/// Parses one entry of `data.preprocess`.
pub fn parse_preprocess(v: &Value) -> Result<Preprocess, String> {
    match v {
        Value::String(s) => s.parse::<Preprocess>().map_err(|e| e.to_string()),
        Value::Table(t) if t.len() == 1 => {
            let (name, arg) = t.iter().next().expect("one entry");
            let eps = |p: Option<&toml::Table>| float(p.and_then(|p| p.get("eps")), 0.01, "eps").map(|e| e as f32);
            Ok(match name.as_str() {
                "pixel-whiten" => Preprocess::PixelWhiten { eps: eps(params(arg, name, &["eps"])?)? },
                "image-normalize" | "contrast-normalize" => {
                    Preprocess::ImageNormalize { eps: eps(params(arg, name, &["eps"])?)? }
                }
                "pca" => Preprocess::Pca { eps: eps(params(arg, name, &["eps"])?)? },
                "zca" => Preprocess::Zca { eps: eps(params(arg, name, &["eps"])?)? },
                "lcn" | "local-contrast" => {
                    let p = params(arg, name, &["sigma", "divide", "floor"])?;
                    Preprocess::LocalContrast {
                        sigma: float(p.and_then(|p| p.get("sigma")), 2.0, "sigma")? as f32,
                        divide: p.and_then(|p| p.get("divide")).and_then(Value::as_bool).unwrap_or(true),
                        floor: float(p.and_then(|p| p.get("floor")), 0.01, "floor")? as f32,
                    }
                }
                "patch-zca" => {
                    let p = params(arg, name, &["kernel", "eps"])?;
                    let kernel = match p.and_then(|p| p.get("kernel")) {
                        None => 3,
                        k => size(k, "patch-zca kernel")?,
                    };
                    Preprocess::PatchZca { kernel, eps: eps(p)?, padding: strata_data::whiten::Padding::Same }
                }
                "resize" => {
                    let p = params(arg, name, &["size", "height", "width"])?;
                    let (height, width) = match p.and_then(|p| p.get("size")) {
                        Some(s) => {
                            let s = size(Some(s), "resize size")?;
                            (s, s)
                        }
                        None => (
                            size(p.and_then(|p| p.get("height")), "resize height")?,
                            size(p.and_then(|p| p.get("width")), "resize width")?,
                        ),
                    };
                    Preprocess::ResizeCrop { height, width, filter: Filter::Triangle }
                }
                other => return Err(format!("unknown preprocessing step {other:?}; expected pixel-whiten, image-normalize, lcn, pca, zca, patch-zca or resize")),
            })
        }
        _ => Err(format!("a preprocessing step is a name such as \"pixel-whiten\" or a table such as {{ zca = {{ eps = 0.01 }} }}; got {v}")),
    }
}

/// Parses `data.augment` into steps (seeded later with the training seed).
pub fn parse_augment(v: &Value) -> Result<Vec<AugmentStep>, String> {
    let t = v
        .as_table()
        .ok_or("augment is a table such as { crop = { size = 32, pad = 4 }, flip = true }")?;
    const KEYS: [&str; 5] = ["rescale", "rotate", "crop", "flip", "erase"];
    if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown augmentation {k:?}; expected one of {KEYS:?}"
        ));
    }
    let mut steps = Vec::new();
    if let Some(r) = t.get("rescale") {
        let p = params(r, "rescale", &["min", "max", "size"])?;
        let (min, max) = (
            float(p.and_then(|p| p.get("min")), 0.9, "min")?,
            float(p.and_then(|p| p.get("max")), 1.1, "max")?,
        );
        if !(min > 0.0 && min <= max) {
            return Err(format!("rescale needs 0 < min ≤ max, got {min}, {max}"));
        }
        let s = size(p.and_then(|p| p.get("size")), "rescale size")?;
        steps.push(AugmentStep::RescaleCrop {
            min_scale: min as f32,
            max_scale: max as f32,
            height: s,
            width: s,
            filter: Filter::Triangle,
        });
    }
    if let Some(r) = t.get("rotate") {
        let deg = float(Some(r), 0.0, "rotate")?;
        if !(0.0..=45.0).contains(&deg) {
            return Err(format!(
                "rotate is a maximum angle in degrees in [0, 45], got {deg}"
            ));
        }
        steps.push(AugmentStep::Rotate {
            max_degrees: deg as f32,
        });
    }
    if let Some(c) = t.get("crop") {
        let p = params(c, "crop", &["size", "pad", "border"])?;
        let s = size(p.and_then(|p| p.get("size")), "crop size")?;
        let pad = match p.and_then(|p| p.get("pad")) {
            None => 0,
            Some(v) => match v.as_integer() {
                Some(i) if i >= 0 => i as usize,
                _ => return Err("crop pad must be a non-negative integer".into()),
            },
        };
        match p.and_then(|p| p.get("border")).map(|b| b.as_str()) {
            None | Some(Some("zero")) => steps.push(AugmentStep::Crop {
                height: s,
                width: s,
                pad,
            }),
            Some(Some("reflect")) => steps.push(AugmentStep::ReflectCrop {
                height: s,
                width: s,
                pad,
            }),
            _ => {
                return Err(
                    "crop border is \"zero\" (pad with zeros) or \"reflect\" (mirror the edges)"
                        .into(),
                )
            }
        }
    }
    match t.get("flip") {
        None | Some(Value::Boolean(false)) => {}
        Some(Value::Boolean(true)) => steps.push(AugmentStep::Flip),
        Some(Value::String(a)) if a == "alternate" => steps.push(AugmentStep::AlternateFlip),
        Some(other) => {
            return Err(format!(
                "flip is true (random), \"alternate\" (every other epoch) or false, got {other}"
            ))
        }
    }
    if let Some(e) = t.get("erase").filter(|e| e.as_bool() != Some(false)) {
        const ERASE: [&str; 5] = ["probability", "min_area", "max_area", "min_aspect", "value"];
        let (p, probability) = match e {
            Value::Boolean(true) => (None, None),
            Value::Float(_) | Value::Integer(_) => (None, Some(e)),
            Value::Table(_) => {
                let p = params(e, "erase", &ERASE)?;
                (p, p.and_then(|p| p.get("probability")))
            }
            other => return Err(format!(
                "erase is true, a probability such as 0.5, or a table such as {{ probability = 0.5, max_area = 0.3 }}; got {other}"
            )),
        };
        // Unset fields keep the data crate's defaults (Zhong et al.'s).
        let mut step = AugmentStep::erasing(0.5);
        if let AugmentStep::Erase {
            probability: prob,
            min_area,
            max_area,
            min_aspect,
            value,
        } = &mut step
        {
            *prob = float(probability, *prob as f64, "erase probability")? as f32;
            for (k, field) in [
                ("min_area", min_area),
                ("max_area", max_area),
                ("min_aspect", min_aspect),
                ("value", value),
            ] {
                let given = p.and_then(|p| p.get(k));
                *field = float(given, *field as f64, &format!("erase {k}"))? as f32;
            }
        }
        // The same checks the data crate makes, early and with the spec's words.
        step.output_shape([1, 1, 1]).map_err(|e| match e {
            strata_data::DataError::Invalid(m) => m.replace("augmentation: ", "erase: "),
            other => other.to_string(),
        })?;
        steps.push(step);
    }
    Ok(steps)
}

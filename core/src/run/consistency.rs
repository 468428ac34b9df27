//! Consistency of value heads with the class heads predicting their bins.

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::head::Prediction;
use crate::model::MultiHeadModel;
use crate::{Error, Result};

pub use crate::results::Consistency;

/// A value head, a class head and each class's centre.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    value: usize,
    class: usize,
    centres: Vec<(String, f64)>,
}

/// The pairs [`Consistency`] is computed for: the config's `[[consistency]]`
/// list, or (when it is empty) every head without classes paired with every
/// class head whose class names are all numbers. Errors name the
/// `[[consistency]]` entry that does not fit the model.
pub(crate) fn consistency_pairs(config: &RunConfig, model: &MultiHeadModel) -> Result<Vec<Pair>> {
    let heads = model.heads();
    let numeric = |classes: &[String]| -> Option<Vec<(String, f64)>> {
        classes.iter().map(|c| c.trim().parse::<f64>().ok().map(|v| (c.clone(), v))).collect()
    };
    if config.consistency.is_empty() {
        let mut pairs = Vec::new();
        for (class, h) in heads.iter().enumerate() {
            let Some(centres) = h.classes().and_then(numeric) else { continue };
            for (value, v) in heads.iter().enumerate() {
                if v.classes().is_none() {
                    pairs.push(Pair { value, class, centres: centres.clone() });
                }
            }
        }
        return Ok(pairs);
    }
    let index = |name: &str, role: &str| {
        heads.iter().position(|h| h.name() == name).ok_or_else(|| {
            Error::Invalid(format!("[[consistency]] {role} = \"{name}\": the model has no head of that name"))
        })
    };
    config
        .consistency
        .iter()
        .map(|p| {
            let (value, class) = (index(&p.value, "value")?, index(&p.class, "class")?);
            let Some(classes) = heads[class].classes() else {
                return Err(Error::Invalid(format!(
                    "[[consistency]] class = \"{}\": that head does not predict classes",
                    p.class
                )));
            };
            let centres = match &p.centres {
                Some(map) => classes
                    .iter()
                    .map(|c| {
                        map.get(c).map(|v| (c.clone(), *v)).ok_or_else(|| {
                            Error::Invalid(format!(
                                "[[consistency]] class = \"{}\": `centres` has no entry for class `{c}`",
                                p.class
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
                None => numeric(classes).ok_or_else(|| {
                    Error::Invalid(format!(
                        "[[consistency]] class = \"{}\": its classes ({}) are not all numbers; give `centres`",
                        p.class,
                        classes.join(", ")
                    ))
                })?,
            };
            Ok(Pair { value, class, centres })
        })
        .collect()
}

/// The class whose centre is nearest to `value` (the first of equals).
fn nearest_class(centres: &[(String, f64)], value: f64) -> Option<&str> {
    centres.iter().min_by(|a, b| (a.1 - value).abs().total_cmp(&(b.1 - value).abs())).map(|c| c.0.as_str())
}

/// [`Consistency`] of each pair over the rows of `data`.
pub(crate) fn consistency(
    config: &RunConfig,
    model: &MultiHeadModel,
    predictions: &[Vec<Prediction>],
    data: &Dataset,
) -> Result<Vec<Consistency>> {
    let mut out = Vec::new();
    for pair in consistency_pairs(config, model)? {
        let truth = data.labels(config.heads[pair.class].column()).ok();
        let (mut n, mut agree, mut labelled, mut wrong) = (0usize, 0usize, 0usize, 0usize);
        for (i, (v, c)) in predictions[pair.value].iter().zip(&predictions[pair.class]).enumerate() {
            let (Prediction::Value { value, .. }, Prediction::Class { label, .. }) = (v, c) else { continue };
            let Some(rounded) = nearest_class(&pair.centres, *value) else { continue };
            n += 1;
            agree += (rounded == label) as usize;
            if let Some(t) = truth.as_ref().and_then(|t| crate::head::cell(t[i])) {
                labelled += 1;
                wrong += (rounded != t) as usize;
            }
        }
        if n > 0 {
            out.push(Consistency {
                value: model.heads()[pair.value].name().to_string(),
                class: model.heads()[pair.class].name().to_string(),
                agreement: agree as f64 / n as f64,
                rounded_error: (labelled > 0).then(|| wrong as f64 / labelled as f64),
                n,
            });
        }
    }
    Ok(out)
}

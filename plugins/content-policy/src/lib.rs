//! `content-policy`: a policy plugin whose rules all come from its configuration.
//!
//! Requests: maximum input length, models allowed per API key id, denied terms (whole words,
//! case-insensitive), denied patterns, and classifier rules (a classification model's score
//! of a label at or above a threshold, e.g. `spam spam 0.9`). Responses: denied terms, either
//! refused or redacted.

use llmos_plugin::policy::{Guest, Request, RequestVerdict, Response, ResponseVerdict};
use llmos_plugin::{Error, config, inference};
use regex_lite::{Regex, RegexBuilder};

struct ContentPolicy;

/// A whole-word, case-insensitive matcher for a literal term; any run of whitespace in the
/// input matches a space in the term.
fn term_regex(term: &str) -> Result<Regex, Error> {
    let words: Vec<String> = term.split_whitespace().map(regex_lite::escape).collect();
    RegexBuilder::new(&format!(r"\b{}\b", words.join(r"\s+")))
        .case_insensitive(true)
        .build()
        .map_err(|e| Error::InvalidInput(format!("denied term {term:?}: {e}")))
}

/// Is `model` allowed for `key_id` by the `allowed_models` rules?
fn model_allowed(rules: &[String], key_id: Option<&str>, model: &str) -> Result<bool, Error> {
    if rules.is_empty() {
        return Ok(true);
    }
    let mut wildcard = None;
    for rule in rules {
        let (key, models) = rule.split_once('=').ok_or_else(|| {
            Error::InvalidInput(format!(
                "allowed_models line {rule:?}: expected KEY_ID=model1,model2"
            ))
        })?;
        let models: Vec<&str> = models.split(',').map(str::trim).collect();
        let key = key.trim();
        if Some(key) == key_id {
            return Ok(models.contains(&model) || models.contains(&"*"));
        }
        if key == "*" {
            wildcard = Some(models.contains(&model) || models.contains(&"*"));
        }
    }
    Ok(wildcard.unwrap_or(false))
}

/// One `classifier` line: `MODEL LABEL THRESHOLD`.
struct ClassifierRule {
    model: String,
    label: String,
    threshold: f32,
}

fn classifier_rule(line: &str) -> Result<ClassifierRule, Error> {
    let bad = |why: &str| {
        Error::InvalidInput(format!(
            "classifier line {line:?}: {why}; expected MODEL LABEL THRESHOLD, e.g. `spam spam 0.9` (THRESHOLD from 0 to 1)"
        ))
    };
    let parts: Vec<&str> = line.split_whitespace().collect();
    let [model, label, threshold] = parts.as_slice() else {
        return Err(bad(&format!("{} fields", parts.len())));
    };
    let threshold: f32 = threshold
        .parse()
        .ok()
        .filter(|t: &f32| (0.0..=1.0).contains(t))
        .ok_or_else(|| bad(&format!("threshold {threshold:?} is not a number from 0 to 1")))?;
    Ok(ClassifierRule {
        model: model.to_string(),
        label: label.to_string(),
        threshold,
    })
}

/// The first input that `rule`'s model scores at or above its threshold for its label, as a
/// denial reason. A model without that label is a configuration error.
fn classifier_check(rule: &ClassifierRule, inputs: &[String]) -> Result<Option<String>, Error> {
    if inputs.is_empty() {
        return Ok(None);
    }
    let results = inference::classify(&rule.model, inputs)?;
    for (i, scores) in results.iter().enumerate() {
        let Some(hit) = scores.iter().find(|s| s.label == rule.label) else {
            let mut known: Vec<&str> = scores.iter().map(|s| s.label.as_str()).collect();
            known.sort_unstable();
            return Err(Error::InvalidInput(format!(
                "classifier rule: model {} has no label {:?}; its labels are {}",
                rule.model,
                rule.label,
                known.join(", ")
            )));
        };
        if hit.score >= rule.threshold {
            return Ok(Some(format!(
                "input {i} is classified {:?} by model {} with score {:.3} (threshold {})",
                rule.label, rule.model, hit.score, rule.threshold
            )));
        }
    }
    Ok(None)
}

impl Guest for ContentPolicy {
    fn check_request(request: Request) -> Result<RequestVerdict, Error> {
        let max: usize = config::get_parsed_or("max_input_chars", 0)?;
        let total: usize = request.inputs.iter().map(|t| t.chars().count()).sum();
        if max > 0 && total > max {
            return Ok(RequestVerdict::Deny(format!(
                "input is {total} characters; the limit is {max}"
            )));
        }
        let ctx = &request.context;
        if !model_allowed(&config::get_list("allowed_models"), ctx.key_id.as_deref(), &ctx.model)? {
            let who = ctx.key_id.as_deref().unwrap_or("an unauthenticated client");
            return Ok(RequestVerdict::Deny(format!(
                "model {} is not allowed for {who}",
                ctx.model
            )));
        }
        for term in config::get_list("denied_terms") {
            let re = term_regex(&term)?;
            if request.inputs.iter().any(|t| re.is_match(t)) {
                return Ok(RequestVerdict::Deny(format!(
                    "input contains the denied term {term:?}"
                )));
            }
        }
        for pattern in config::get_list("denied_patterns") {
            let re = Regex::new(&pattern)
                .map_err(|e| Error::InvalidInput(format!("denied pattern {pattern:?}: {e}")))?;
            if request.inputs.iter().any(|t| re.is_match(t)) {
                return Ok(RequestVerdict::Deny(format!(
                    "input matches the denied pattern {pattern:?}"
                )));
            }
        }
        let rules = config::get_list("classifier")
            .iter()
            .map(|l| classifier_rule(l))
            .collect::<Result<Vec<_>, _>>()?;
        for rule in &rules {
            if let Some(reason) = classifier_check(rule, &request.inputs)? {
                return Ok(RequestVerdict::Deny(reason));
            }
        }
        Ok(RequestVerdict::Allow)
    }

    fn check_response(response: Response) -> Result<ResponseVerdict, Error> {
        let redact = match config::get("response_action").as_deref() {
            None | Some("deny") => false,
            Some("redact") => true,
            Some(other) => {
                return Err(Error::InvalidInput(format!(
                    "response_action = {other:?}: expected deny or redact"
                )));
            }
        };
        let mut output = response.output_json.clone();
        let mut changed = false;
        for term in config::get_list("response_denied_terms") {
            let re = term_regex(&term)?;
            if re.is_match(&output) {
                if !redact {
                    return Ok(ResponseVerdict::Deny(format!(
                        "response contains the denied term {term:?}"
                    )));
                }
                output = re.replace_all(&output, "***").into_owned();
                changed = true;
            }
        }
        Ok(if changed {
            ResponseVerdict::Modify(output)
        } else {
            ResponseVerdict::Allow
        })
    }
}

llmos_plugin::export_policy!(ContentPolicy);

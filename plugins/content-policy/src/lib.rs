//! `content-policy`: a policy plugin whose rules all come from its configuration.
//!
//! Requests: maximum input length, models allowed per API key id, denied terms (whole words,
//! case-insensitive) and denied patterns. Responses: denied terms, either refused or redacted.

wit_bindgen::generate!({
    world: "policy",
    path: "../../wit/llmos-plugin@0.1.0",
});

use llmos::plugin::config;
use regex_lite::{Regex, RegexBuilder};

struct ContentPolicy;

fn list(key: &str) -> Vec<String> {
    config::get(key)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

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

impl Guest for ContentPolicy {
    fn check_request(request: Request) -> Result<RequestVerdict, Error> {
        let max: usize = match config::get("max_input_chars") {
            None => 0,
            Some(v) => v.parse().map_err(|_| {
                Error::InvalidInput(format!("max_input_chars = {v:?}: expected an integer"))
            })?,
        };
        let total: usize = request.inputs.iter().map(|t| t.chars().count()).sum();
        if max > 0 && total > max {
            return Ok(RequestVerdict::Deny(format!(
                "input is {total} characters; the limit is {max}"
            )));
        }
        let ctx = &request.context;
        if !model_allowed(&list("allowed_models"), ctx.key_id.as_deref(), &ctx.model)? {
            let who = ctx.key_id.as_deref().unwrap_or("an unauthenticated client");
            return Ok(RequestVerdict::Deny(format!(
                "model {} is not allowed for {who}",
                ctx.model
            )));
        }
        for term in list("denied_terms") {
            let re = term_regex(&term)?;
            if request.inputs.iter().any(|t| re.is_match(t)) {
                return Ok(RequestVerdict::Deny(format!(
                    "input contains the denied term {term:?}"
                )));
            }
        }
        for pattern in list("denied_patterns") {
            let re = Regex::new(&pattern)
                .map_err(|e| Error::InvalidInput(format!("denied pattern {pattern:?}: {e}")))?;
            if request.inputs.iter().any(|t| re.is_match(t)) {
                return Ok(RequestVerdict::Deny(format!(
                    "input matches the denied pattern {pattern:?}"
                )));
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
        for term in list("response_denied_terms") {
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

export!(ContentPolicy);

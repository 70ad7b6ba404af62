//! The llmos tool `calculator`: exact arithmetic on decimal numbers for models, which are
//! bad at it. `{"expression": "(1.5 + 2) * 3 ^ 2 / 7"}` → `{"result": "4.5"}`; see
//! [`calc`] for the syntax, the precision and the limits.

pub mod big;
pub mod calc;

use llmos_plugin::Error;
use llmos_plugin::tool::{self, Guest, ToolCall, ToolSpec};

/// The tool's name.
pub const NAME: &str = "calculator";

/// What the model reads about the tool.
pub const DESCRIPTION: &str = "Calculates an arithmetic expression exactly. Use it for any \
    arithmetic instead of calculating yourself. The expression uses numbers (like 12 or \
    -3.75, any number of digits), + - * / for add, subtract, multiply, divide, ^ for a \
    whole-number power, and parentheses. Example: {\"expression\": \"(1.5 + 2) * 3^2 / 7\"}. \
    No variables, units, percent signs or functions. Division results are exact or rounded to \
    32 decimal places.";

/// The JSON Schema of the arguments.
pub fn parameters() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "description": "The arithmetic to calculate, e.g. \"12.5 * (3 + 4)\" or \"2^64\"."
            }
        },
        "required": ["expression"],
        "additionalProperties": false
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    expression: String,
}

/// The tool's answer to `arguments_json`: `{"result": "..."}`, with `"rounded"` when a
/// division was rounded.
pub fn answer(arguments_json: &str) -> Result<String, Error> {
    let args: Args = tool::parse_arguments(NAME, arguments_json)?;
    let out = calc::evaluate(&args.expression, &calc::Limits::default())
        .map_err(|e| Error::invalid_input(format!("expression: {e}")))?;
    let mut v = serde_json::json!({"result": out.value});
    if out.rounded
        && let Some(o) = v.as_object_mut()
    {
        o.insert(
            "rounded".into(),
            format!("to {} decimal places", calc::MAX_SCALE).into(),
        );
    }
    tool::to_json(&v)
}

struct Calculator;

impl Guest for Calculator {
    fn tools() -> Vec<ToolSpec> {
        vec![tool::spec(NAME, DESCRIPTION, parameters())]
    }

    fn invoke(call: ToolCall) -> Result<String, Error> {
        if call.name != NAME {
            return Err(tool::unknown(&call, &[NAME]));
        }
        answer(&call.arguments_json)
    }
}

llmos_plugin::export_tool!(Calculator);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_json_and_errors_say_what_was_wrong() {
        assert_eq!(
            answer(r#"{"expression": "0.1 + 0.2"}"#).unwrap(),
            r#"{"result":"0.3"}"#
        );
        assert_eq!(
            answer(r#"{"expression": "1/3"}"#).unwrap(),
            format!(
                r#"{{"result":"0.{}","rounded":"to 32 decimal places"}}"#,
                "3".repeat(32)
            )
        );
        let e = answer(r#"{"expression": "2 +"}"#).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidInput(m) if m == "expression: expected a number or '(' at position 4, found the end of the expression"),
            "{e:?}"
        );
        let e = answer(r#"{"expr": "2"}"#).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidInput(m) if m.contains("unknown field `expr`") && m.contains("expression")),
            "{e:?}"
        );
        let e = answer(r#"{"expression": 2}"#).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidInput(m) if m.contains("field `expression`")),
            "{e:?}"
        );
    }

    #[test]
    fn the_spec_fits_the_host_rules() {
        assert!(DESCRIPTION.len() <= 1024, "{}", DESCRIPTION.len());
        let p = parameters();
        assert_eq!(p["type"], "object");
        assert_eq!(p["required"][0], "expression");
    }
}

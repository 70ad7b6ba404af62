//! Small JSON helpers shared by the layers that read request and file JSON.

use serde_json::Value;

/// What a JSON value is, in words, for error messages ("a string", "an array", …).
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

//! The `tool` world (since WIT 0.1.1): offers tools that a model (the chat tool loop) or an
//! MCP client calls, with helpers for the JSON the host and the guest exchange.
//!
//! ```text
//! use llmos_plugin::Error;
//! use llmos_plugin::tool::{self, Guest, ToolCall, ToolSpec};
//!
//! #[derive(serde::Deserialize)]
//! struct Args { text: String }
//!
//! struct Shout;
//!
//! impl Guest for Shout {
//!     fn tools() -> Vec<ToolSpec> {
//!         vec![tool::spec("shout", "Upper-cases a text.", serde_json::json!({
//!             "type": "object",
//!             "properties": {"text": {"type": "string"}},
//!             "required": ["text"],
//!         }))]
//!     }
//!     fn invoke(call: ToolCall) -> Result<String, Error> {
//!         let args: Args = tool::arguments(&call)?;
//!         Ok(args.text.to_uppercase())
//!     }
//! }
//!
//! llmos_plugin::export_tool!(Shout);
//! ```

#[allow(missing_docs, clippy::too_many_arguments)] // generated glue
mod bindings {
    wit_bindgen::generate!({
        world: "tool",
        path: "wit",
        with: {
            "llmos:plugin/types@0.1.1": crate::host::llmos::plugin::types,
            "llmos:plugin/log@0.1.1": crate::host::llmos::plugin::log,
            "llmos:plugin/config@0.1.1": crate::host::llmos::plugin::config,
            "llmos:plugin/kv@0.1.1": crate::host::llmos::plugin::kv,
            "llmos:plugin/inference@0.1.1": crate::host::llmos::plugin::inference,
            "llmos:plugin/secrets@0.1.1": crate::host::llmos::plugin::secrets,
            "llmos:plugin/data@0.1.1": crate::host::llmos::plugin::data,
        },
        pub_export_macro: true,
        export_macro_name: "__llmos_export_tool",
        default_bindings_module: "::llmos_plugin::tool",
    });
}

pub use bindings::Guest;
#[doc(hidden)]
pub use bindings::*;

pub use crate::Error;
pub use crate::types::{ToolCall, ToolSpec};

/// A [`ToolSpec`]: `parameters` is the JSON Schema (an object schema) of the arguments.
pub fn spec(name: &str, description: &str, parameters: serde_json::Value) -> ToolSpec {
    ToolSpec {
        name: name.to_string(),
        description: description.to_string(),
        parameters_json: parameters.to_string(),
    }
}

/// The call's `arguments-json` as `T`; an `invalid-input` error names the tool, the field
/// (as a path such as `items[2].name`) and what was wrong.
pub fn arguments<T: serde::de::DeserializeOwned>(call: &ToolCall) -> Result<T, Error> {
    parse_arguments(&call.name, &call.arguments_json)
}

/// `json` (a tool's arguments) as `T`, with the errors of [`arguments`].
pub fn parse_arguments<T: serde::de::DeserializeOwned>(tool: &str, json: &str) -> Result<T, Error> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::invalid_input(format!("arguments of {tool}: not JSON: {e}")))?;
    if !value.is_object() {
        return Err(Error::invalid_input(format!(
            "arguments of {tool}: expected a JSON object, got {}",
            kind(&value)
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner();
        if path == "." {
            Error::invalid_input(format!("arguments of {tool}: {msg}"))
        } else {
            Error::invalid_input(format!("arguments of {tool}: field `{path}`: {msg}"))
        }
    })
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `value` as JSON text, the usual result of a tool.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value)
        .map_err(|e| Error::unavailable(format!("the tool's result is not JSON: {e}")))
}

/// The error for a call of a tool this component does not offer (the host only calls the
/// names `tools` returned, so this means the two disagree).
pub fn unknown(call: &ToolCall, offered: &[&str]) -> Error {
    Error::not_found(format!(
        "tool {}: this plugin offers {}",
        call.name,
        offered.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Args {
        expression: String,
        #[serde(default)]
        top_k: Option<u32>,
    }

    fn message(e: Error) -> String {
        match e {
            Error::InvalidInput(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arguments_parse_and_errors_name_the_field() {
        let a: Args = parse_arguments("calc", r#"{"expression": "1+2", "top_k": 3}"#).unwrap();
        assert_eq!((a.expression.as_str(), a.top_k), ("1+2", Some(3)));
        let e = message(parse_arguments::<Args>("calc", r#"{"top_k": 3}"#).unwrap_err());
        assert_eq!(e, "arguments of calc: missing field `expression`");
        let e = message(parse_arguments::<Args>("calc", r#"{"expression": 5}"#).unwrap_err());
        assert!(e.starts_with("arguments of calc: field `expression`: invalid type: integer `5`, expected a string"), "{e}");
        let e = message(
            parse_arguments::<Args>("calc", r#"{"expression": "x", "top_k": -1}"#).unwrap_err(),
        );
        assert!(e.contains("field `top_k`") && e.contains("-1"), "{e}");
        let e = message(parse_arguments::<Args>("calc", "[1]").unwrap_err());
        assert_eq!(e, "arguments of calc: expected a JSON object, got an array");
        let e = message(parse_arguments::<Args>("calc", "{").unwrap_err());
        assert!(e.starts_with("arguments of calc: not JSON: EOF"), "{e}");
    }

    #[test]
    fn spec_and_results_are_json() {
        let s = spec("t", "d", serde_json::json!({"type": "object"}));
        assert_eq!(s.parameters_json, r#"{"type":"object"}"#);
        assert_eq!(to_json(&serde_json::json!({"a": 1})).unwrap(), r#"{"a":1}"#);
    }
}

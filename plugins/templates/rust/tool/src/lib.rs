//! `{{name}}`: a tool plugin. It offers one tool, `{{name}}`, that counts the words of a text and
//! upper-cases it. A model calls it with JSON arguments that match `parameters` (the host
//! checks them against the schema first); the answer is text for the model, here JSON.

use llmos_plugin::Error;
use llmos_plugin::tool::{self, Guest, ToolCall, ToolSpec};

/// The arguments, as the schema in `tools` describes them.
#[derive(serde::Deserialize)]
struct Args {
    text: String,
}

struct {{name_camel}}Plugin;

impl Guest for {{name_camel}}Plugin {
    /// The tools this plugin offers; the host asks once, at install.
    fn tools() -> Vec<ToolSpec> {
        vec![tool::spec(
            "{{name}}",
            "Counts the words of a text and returns it in upper case. \
             Example: {\"text\": \"hello world\"}.",
            serde_json::json!({
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "The text to count and upper-case."}
                },
                "required": ["text"],
                "additionalProperties": false
            }),
        )]
    }

    /// Runs one call. An `Err` goes back to the model as the tool's answer.
    fn invoke(call: ToolCall) -> Result<String, Error> {
        let args: Args = tool::arguments(&call)?;
        if args.text.trim().is_empty() {
            return Err(Error::invalid_input("`text` is empty: give some words"));
        }
        tool::to_json(&serde_json::json!({
            "words": args.text.split_whitespace().count(),
            "upper": args.text.to_uppercase(),
        }))
    }
}

llmos_plugin::export_tool!({{name_camel}}Plugin);

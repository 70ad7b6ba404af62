//! Test plugin: a `tool` component whose `tools()` breaks one of the host's rules, chosen by
//! its config `mode` (the host must refuse the install, naming the rule).

wit_bindgen::generate!({
    world: "tool",
    path: "../../../wit/llmos-plugin@0.1.1",
});

use llmos::plugin::config;

struct P;

fn spec(name: &str, description: &str, parameters: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters_json: parameters.into(),
    }
}

const OBJ: &str = r#"{"type": "object", "properties": {}}"#;

impl Guest for P {
    fn tools() -> Vec<ToolSpec> {
        let mode = config::get("mode").unwrap_or_default();
        match mode.as_str() {
            "bad-name" => vec![spec("Bad Name", "x", OBJ)],
            "dunder" => vec![spec("a__b", "x", OBJ)],
            "duplicate" => vec![spec("twice", "x", OBJ), spec("twice", "y", OBJ)],
            "schema" => vec![spec(
                "patterned",
                "x",
                r#"{"type": "object", "properties": {"s": {"type": "string", "pattern": "^a+$"}}}"#,
            )],
            "not-object" => vec![spec("stringy", "x", r#"{"type": "string"}"#)],
            "long" => vec![spec("wordy", &"w".repeat(1025), OBJ)],
            "none" => Vec::new(),
            // Fine on its own; taken when test-tools is installed.
            "echo" => vec![spec("echo", "another echo", OBJ)],
            _ => vec![spec("fine", "a fine tool", OBJ)],
        }
    }

    fn invoke(call: ToolCall) -> Result<String, Error> {
        Ok(call.name)
    }
}

export!(P);

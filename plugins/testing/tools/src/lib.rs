//! Test plugin: a `tool` component (WIT `llmos:plugin@0.1.1`) offering `echo` (returns its
//! arguments), `spin` (loops forever: the host's time limit must stop it) and `lookup`
//! (`data.search` of `{"collection", "query", "top_k"?}`, denied without `data:<c>`).

wit_bindgen::generate!({
    world: "tool",
    path: "../../../wit/llmos-plugin@0.1.1",
});

use llmos::plugin::data;
use serde_json::{Value, json};

struct P;

fn spec(name: &str, description: &str, parameters: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters_json: parameters.to_string(),
    }
}

impl Guest for P {
    fn tools() -> Vec<ToolSpec> {
        vec![
            spec(
                "echo",
                "Returns its arguments as JSON.",
                json!({"type": "object", "properties": {"text": {"type": "string"}}}),
            ),
            spec(
                "spin",
                "Never returns.",
                json!({"type": "object", "properties": {}}),
            ),
            spec(
                "lookup",
                "Searches a collection.",
                json!({
                    "type": "object",
                    "properties": {
                        "collection": {"type": "string"},
                        "query": {"type": "string"},
                        "top_k": {"type": "integer"}
                    },
                    "required": ["collection", "query"]
                }),
            ),
        ]
    }

    fn invoke(call: ToolCall) -> Result<String, Error> {
        let args: Value = serde_json::from_str(&call.arguments_json)
            .map_err(|e| Error::InvalidInput(format!("arguments: {e}")))?;
        match call.name.as_str() {
            "echo" => Ok(json!({"arguments": args, "task": call.context.task, "route": call.context.route}).to_string()),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                    if std::hint::black_box(n) == 0 {
                        return Ok(String::new());
                    }
                }
            }
            "lookup" => {
                let s = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                let top_k = args.get("top_k").and_then(Value::as_u64).unwrap_or(3) as u32;
                let hits = data::search(&s("collection"), &s("query"), top_k)?;
                let hits: Vec<Value> = hits
                    .into_iter()
                    .map(|h| json!({"document": h.document, "chunk": h.chunk, "text": h.text, "score": h.score}))
                    .collect();
                Ok(json!({"hits": hits}).to_string())
            }
            other => Err(Error::InvalidInput(format!("no tool {other}"))),
        }
    }
}

export!(P);

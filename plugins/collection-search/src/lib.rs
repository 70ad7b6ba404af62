//! The llmos tool `collection-search`: a model asks a data collection a question and gets the
//! passages nearest in meaning (`data::search`, the collection's embedding model), best first,
//! as compact JSON: `{"collection", "query", "hits": [{"document", "chunk", "score", "text"}]}`
//! with scores rounded to 3 places and texts cut at `max_text_chars` (config, default 400;
//! `"truncated"` says when one was cut). Reading collection C needs the capability `data:C`.

use llmos_plugin::tool::{self, Guest, ToolCall, ToolSpec};
use llmos_plugin::{Error, config, data};

/// The tool's name.
pub const NAME: &str = "collection-search";

/// What the model reads about the tool.
pub const DESCRIPTION: &str = "Searches a collection of documents for the passages that best \
    answer a question, and returns them with their scores (higher is better). Use it when the \
    user asks about facts that may be in their documents. Example: {\"collection\": \
    \"handbook\", \"query\": \"how many vacation days\", \"top_k\": 3}.";

/// Most hits one call returns.
pub const MAX_TOP_K: u32 = 10;

/// Hits when the call does not say.
pub const DEFAULT_TOP_K: u32 = 3;

/// The JSON Schema of the arguments.
pub fn parameters() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "collection": {
                "type": "string",
                "description": "The name of the collection to search, e.g. \"handbook\"."
            },
            "query": {
                "type": "string",
                "description": "What to look for, as a question or keywords."
            },
            "top_k": {
                "type": "integer",
                // `minimum`/`maximum` are outside the decoding subset: list the values.
                "enum": (1..=MAX_TOP_K).collect::<Vec<u32>>(),
                "description": "How many passages to return (1 to 10, default 3)."
            }
        },
        "required": ["collection", "query"],
        "additionalProperties": false
    })
}

/// The arguments.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The collection.
    pub collection: String,
    /// The query.
    pub query: String,
    /// Hits wanted.
    #[serde(default)]
    pub top_k: Option<u32>,
}

impl Args {
    /// The arguments of `json`, checked: a non-empty collection and query, `top_k` 1..=10.
    pub fn parse(json: &str) -> Result<Args, Error> {
        let a: Args = tool::parse_arguments(NAME, json)?;
        if a.collection.trim().is_empty() {
            return Err(Error::invalid_input(format!(
                "arguments of {NAME}: field `collection` is empty: name a collection, e.g. \"handbook\""
            )));
        }
        if a.query.trim().is_empty() {
            return Err(Error::invalid_input(format!(
                "arguments of {NAME}: field `query` is empty: say what to look for"
            )));
        }
        if let Some(k) = a.top_k
            && !(1..=MAX_TOP_K).contains(&k)
        {
            return Err(Error::invalid_input(format!(
                "arguments of {NAME}: field `top_k` is {k}: expected 1 to {MAX_TOP_K}"
            )));
        }
        Ok(a)
    }
}

/// One hit as the model sees it.
#[derive(Debug, serde::Serialize)]
pub struct Hit {
    document: String,
    chunk: String,
    score: f64,
    text: String,
}

/// `text` cut to at most `max` characters (on a character boundary, with "…" at the cut), and
/// whether it was cut.
pub fn cut(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        None => (text.to_string(), false),
        Some((end, _)) => {
            let kept = text.get(..end).unwrap_or(text).trim_end();
            (format!("{kept}…"), true)
        }
    }
}

/// The JSON answer for `args` and the host's `hits`, texts cut at `max_chars`.
pub fn render(args: &Args, hits: Vec<data::Hit>, max_chars: usize) -> Result<String, Error> {
    let mut truncated = false;
    let hits: Vec<Hit> = hits
        .into_iter()
        .map(|h| {
            let (text, was_cut) = cut(&h.text, max_chars);
            truncated |= was_cut;
            Hit {
                document: h.document,
                chunk: h.chunk,
                score: (f64::from(h.score) * 1000.0).round() / 1000.0,
                text,
            }
        })
        .collect();
    let mut out = serde_json::json!({
        "collection": args.collection,
        "query": args.query,
        "hits": hits,
    });
    if let Some(o) = out.as_object_mut() {
        if hits_empty(o) {
            o.insert("note".into(), "no passages found".into());
        }
        if truncated {
            o.insert(
                "truncated".into(),
                format!("passage texts are cut at {max_chars} characters (marked …)").into(),
            );
        }
    }
    tool::to_json(&out)
}

fn hits_empty(o: &serde_json::Map<String, serde_json::Value>) -> bool {
    o.get("hits")
        .and_then(|h| h.as_array())
        .is_some_and(|h| h.is_empty())
}

/// The host's error for a search of `collection`, said for a model and an operator.
fn search_error(collection: &str, e: Error) -> Error {
    match e {
        // The payload stays the capability's name: the host reports it as a denial.
        Error::Denied(cap) => Error::Denied(cap),
        Error::NotFound(what) => Error::not_found(format!(
            "collection {collection:?} does not exist ({what}): ask the user which collection to search"
        )),
        other => other,
    }
}

struct CollectionSearch;

impl Guest for CollectionSearch {
    fn tools() -> Vec<ToolSpec> {
        vec![tool::spec(NAME, DESCRIPTION, parameters())]
    }

    fn invoke(call: ToolCall) -> Result<String, Error> {
        if call.name != NAME {
            return Err(tool::unknown(&call, &[NAME]));
        }
        let args = Args::parse(&call.arguments_json)?;
        let max_chars: u32 = config::get_parsed_or("max_text_chars", 400)?;
        let hits = data::search(
            &args.collection,
            &args.query,
            args.top_k.unwrap_or(DEFAULT_TOP_K),
        )
        .map_err(|e| search_error(&args.collection, e))?;
        render(&args, hits, max_chars.max(1) as usize)
    }
}

llmos_plugin::export_tool!(CollectionSearch);

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(text: &str, score: f32) -> data::Hit {
        data::Hit {
            document: "doc-1".into(),
            chunk: "doc-1:0".into(),
            text: text.into(),
            score,
            metadata_json: "{}".into(),
        }
    }

    #[test]
    fn arguments_are_checked_with_clear_errors() {
        let a = Args::parse(r#"{"collection": "handbook", "query": "vacation"}"#).unwrap();
        assert_eq!((a.collection.as_str(), a.top_k), ("handbook", None));
        for (json, want) in [
            (r#"{"collection": "h"}"#, "missing field `query`"),
            (
                r#"{"collection": "h", "query": " "}"#,
                "field `query` is empty",
            ),
            (
                r#"{"collection": "", "query": "q"}"#,
                "field `collection` is empty",
            ),
            (
                r#"{"collection": "h", "query": "q", "top_k": 11}"#,
                "field `top_k` is 11: expected 1 to 10",
            ),
            (
                r#"{"collection": "h", "query": "q", "top_k": 0}"#,
                "field `top_k` is 0: expected 1 to 10",
            ),
            (
                r#"{"collection": "h", "query": "q", "top_k": "3"}"#,
                "field `top_k`: invalid type",
            ),
            (
                r#"{"collection": "h", "query": "q", "k": 3}"#,
                "unknown field `k`",
            ),
        ] {
            match Args::parse(json) {
                Err(Error::InvalidInput(m)) => assert!(m.contains(want), "{json}: {m}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn results_are_compact_rounded_and_say_when_cut() {
        let a = Args::parse(r#"{"collection": "c", "query": "q"}"#).unwrap();
        let out = render(
            &a,
            vec![hit("short", 0.123456), hit(&"é".repeat(50), -0.5)],
            10,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["hits"][0]["score"], 0.123);
        assert_eq!(v["hits"][0]["text"], "short");
        assert_eq!(v["hits"][1]["text"], format!("{}…", "é".repeat(10)));
        assert_eq!(v["hits"][1]["chunk"], "doc-1:0");
        assert!(v["truncated"].as_str().unwrap().contains("10 characters"));
        let out = render(&a, vec![hit("short", 0.9)], 10).unwrap();
        assert!(!out.contains("truncated"), "{out}");
        let out = render(&a, vec![], 10).unwrap();
        assert!(out.contains("no passages found"), "{out}");
    }

    #[test]
    fn errors_keep_the_capability_and_name_the_collection() {
        assert!(matches!(
            search_error("hr", Error::Denied("data:hr".into())),
            Error::Denied(c) if c == "data:hr"
        ));
        match search_error("hr", Error::NotFound("collection hr".into())) {
            Error::NotFound(m) => assert!(m.contains("\"hr\" does not exist"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(DESCRIPTION.len() <= 1024);
    }
}

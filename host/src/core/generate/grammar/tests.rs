#![allow(clippy::cast_possible_truncation)] // why: test vocabularies and step counts are small
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

fn grammar(schema: Value) -> Grammar {
    Grammar::compile(&schema).unwrap()
}

/// Whether `text` is a whole value of the grammar.
fn accepts(g: &Grammar, text: &str) -> bool {
    let mut m = Matcher::new();
    m.feed_all(g, text.as_bytes()) && m.is_complete(g)
}

/// Whether `text` can still become a value (a prefix the matcher keeps).
fn prefix(g: &Grammar, text: &str) -> bool {
    Matcher::new().feed_all(g, text.as_bytes())
}

#[test]
fn any_object_accepts_json_objects_and_nothing_else() {
    let g = Grammar::any_object();
    for ok in [
        r#"{}"#,
        r#"{"a":1}"#,
        r#"{"a": [1, 2.5, -3e+2, true, null, "x\"y\\u00e9"], "b": {"c": {}}}"#,
        "{\"k\": \"caf\u{e9} \u{1F600}\"}",
        "\n{\"a\":0}",
    ] {
        assert!(accepts(&g, ok), "{ok}");
        serde_json::from_str::<Value>(ok).unwrap();
    }
    for bad in [
        "[]", "1", "\"s\"", "{", r#"{"a"}"#, r#"{"a":}"#, r#"{"a":1,}"#, r#"{a:1}"#, r#"{"a":01}"#,
        r#"{"a":1.}"#, r#"{"a":-}"#, r#"{"a":tru}"#, "{\"a\":\"\n\"}", r#"{"a":"\x"}"#,
        r#"{"a":"\ud800"}"#, r#"{} "#, r#"{}{}"#,
    ] {
        assert!(!accepts(&g, bad), "{bad}");
    }
    // Open values are bounded: 16 keys, 16 items, 128-character strings.
    let keys: Vec<String> = (0..16).map(|i| format!("\"k{i}\":{i}")).collect();
    assert!(accepts(&g, &format!("{{{}}}", keys.join(","))));
    assert!(!prefix(&g, &format!("{{{},", keys.join(","))));
    assert!(accepts(&g, &format!("{{\"a\":[{}]}}", vec!["1"; 16].join(","))));
    assert!(!prefix(&g, &format!("{{\"a\":[{},", vec!["1"; 16].join(","))));
    assert!(accepts(&g, &format!("{{\"a\":\"{}\"}}", "x".repeat(128))));
    assert!(!prefix(&g, &format!("{{\"a\":\"{}", "x".repeat(129))));
    // Whitespace between tokens is bounded: one byte, then the value must go on.
    assert!(prefix(&g, "{ \"a\": 1 }"));
    assert!(!prefix(&g, "{  \"a\""));
    assert!(!prefix(&g, "{\n\n"));
    // Invalid UTF-8 inside strings is refused.
    let mut m = Matcher::new();
    assert!(m.feed_all(&g, b"{\"a\":\""));
    assert!(!m.clone().feed_all(&g, &[0xff]));
    assert!(!m.clone().feed_all(&g, &[0xc3, b'"']));
    assert!(m.feed_all(&g, &[0xc3, 0xa9, b'"', b'}']));
}

#[test]
fn object_properties_come_in_order_and_required_ones_are_present() {
    let g = grammar(json!({
        "type": "object",
        "properties": {"age": {"type": "integer"}, "name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name"],
    }));
    assert!(accepts(&g, r#"{"name":"Ann"}"#));
    assert!(accepts(&g, r#"{"age":3,"name":"Ann"}"#));
    assert!(accepts(&g, r#"{"age":3,"name":"Ann","tags":["a","b"]}"#));
    assert!(accepts(&g, r#"{"name":"Ann","tags":[]}"#));
    assert!(!accepts(&g, r#"{}"#), "name is required");
    assert!(!accepts(&g, r#"{"age":3}"#), "name is required");
    assert!(!accepts(&g, r#"{"name":"Ann","age":3}"#), "properties in order");
    assert!(!accepts(&g, r#"{"age":3.5,"name":"Ann"}"#), "an integer");
    assert!(!accepts(&g, r#"{"name":"Ann","other":1}"#), "no other keys");
    assert!(!accepts(&g, r#"{"name":1}"#));
    assert!(!accepts(&g, r#"{"name":"Ann","tags":[1]}"#));
}

#[test]
fn every_keyword_of_the_subset() {
    let g = grammar(json!({"type": "string", "enum": ["red", "green", "gr"]}));
    assert!(accepts(&g, r#""red""#) && accepts(&g, r#""gr""#) && accepts(&g, r#""green""#));
    assert!(!accepts(&g, r#""blue""#) && !accepts(&g, r#""re""#));
    let g = grammar(json!({"enum": [1, 12, "x", null, true]}));
    for ok in ["1", "12", r#""x""#, "null", "true"] {
        assert!(accepts(&g, ok), "{ok}");
    }
    assert!(!accepts(&g, "2") && !accepts(&g, "false") && !accepts(&g, "123"));
    let g = grammar(json!({"const": {"a": [1, 2]}}));
    assert!(accepts(&g, r#"{"a":[1,2]}"#) && !accepts(&g, r#"{"a":[1]}"#));
    let g = grammar(json!({"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2}));
    assert!(accepts(&g, "[true]") && accepts(&g, "[true, false]"));
    assert!(!accepts(&g, "[]") && !accepts(&g, "[true,true,true]") && !accepts(&g, "[1]"));
    let g = grammar(json!({"type": "string", "minLength": 2, "maxLength": 3}));
    assert!(accepts(&g, r#""ab""#) && accepts(&g, r#""\u00e9bc""#) && accepts(&g, "\"\u{e9}\u{e9}\""));
    assert!(!accepts(&g, r#""a""#) && !accepts(&g, r#""abcd""#));
    let g = grammar(json!({"anyOf": [{"type": "integer"}, {"type": "object", "properties": {"a": {"type": "null"}}, "required": ["a"]}, {"type": "object", "properties": {"b": {"type": "number"}}, "required": ["b"]}]}));
    assert!(accepts(&g, "7") && accepts(&g, r#"{"a":null}"#) && accepts(&g, r#"{"b":1.5e3}"#));
    assert!(!accepts(&g, "7.5") && !accepts(&g, r#"{"a":1}"#) && !accepts(&g, "{}"));
    let g = grammar(json!({"type": ["string", "null"]}));
    assert!(accepts(&g, "null") && accepts(&g, r#""s""#) && !accepts(&g, "0"));
    let g = grammar(json!({"type": "number"}));
    for ok in ["0", "-0", "12", "-1.25", "3e7", "2.5E-3"] {
        assert!(accepts(&g, ok), "{ok}");
    }
    for bad in ["01", "-", "1.", ".5", "1e", "+1", "1e+"] {
        assert!(!accepts(&g, bad), "{bad}");
    }
    let g = grammar(json!({"type": "object", "properties": {"x": {}}, "additionalProperties": false}));
    assert!(accepts(&g, "{}") && accepts(&g, r#"{"x":[{"y":null}]}"#));
    let g = grammar(json!({"type": "object"}));
    assert!(accepts(&g, r#"{"anything":{"goes":[]}}"#));
}

#[test]
fn keywords_outside_the_subset_are_named() {
    for (schema, keyword) in [
        (json!({"type": "string", "pattern": "^a"}), "pattern"),
        (json!({"$ref": "#/defs/a"}), "$ref"),
        (json!({"type": "string", "format": "date"}), "format"),
        (json!({"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}}}), "minimum"),
        (json!({"oneOf": [{"type": "string"}]}), "oneOf"),
        (json!({"type": "object", "additionalProperties": {"type": "string"}}), "additionalProperties"),
    ] {
        let e = Grammar::compile(&schema).unwrap_err();
        assert!(matches!(&e, SchemaError::Unsupported { keyword: k, .. } if k == keyword), "{e}");
        let text = e.to_string();
        assert!(text.contains(keyword) && text.contains("anyOf") && text.contains("minItems"), "{text}");
    }
    let e = Grammar::compile(&json!({"type": "decimal"})).unwrap_err().to_string();
    assert!(e.contains("decimal") && e.contains("integer"), "{e}");
    let e = Grammar::compile(&json!({"type": "object", "properties": {}, "required": ["a"]})).unwrap_err().to_string();
    assert!(e.contains("`a`"), "{e}");
    let e = Grammar::compile(&json!({"type": "array", "minItems": 3, "maxItems": 1})).unwrap_err().to_string();
    assert!(e.contains("maxItems"), "{e}");
}

#[test]
fn tool_call_grammar_puts_the_name_first() {
    let g = Grammar::tool_call(&[
        ("get_weather".into(), Some(json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}))),
        ("get_time".into(), None),
    ])
    .unwrap();
    assert!(accepts(&g, r#"{"name":"get_weather","arguments":{"city":"Paris"}}"#));
    assert!(accepts(&g, r#"{"name": "get_time", "arguments": {"tz": "UTC"}}"#));
    assert!(!accepts(&g, r#"{"name":"get_weather","arguments":{}}"#));
    assert!(!accepts(&g, r#"{"name":"other","arguments":{}}"#));
    assert!(!accepts(&g, r#"{"arguments":{},"name":"get_time"}"#));
}

#[test]
fn several_calls_are_one_call_or_an_array_of_two_to_eight() {
    let tools = [("f".to_string(), Some(json!({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]})))];
    let call = r#"{"name":"f","arguments":{"x":1}}"#;
    let g = Grammar::tool_calls(&tools, true).unwrap();
    assert!(accepts(&g, call));
    assert!(accepts(&g, &format!("[{call}, {call}]")));
    assert!(accepts(&g, &format!("[{}]", [call; 8].join(","))));
    assert!(!accepts(&g, &format!("[{call}]")), "one call is the object itself");
    assert!(!accepts(&g, &format!("[{}]", [call; 9].join(","))));
    assert!(!accepts(&g, r#"[{"name":"f","arguments":{}}, {"name":"f","arguments":{"x":1}}]"#));
    let one = Grammar::tool_calls(&tools, false).unwrap();
    assert!(accepts(&one, call) && !accepts(&one, &format!("[{call}, {call}]")));
}

#[test]
fn tool_parameters_follow_their_declared_order() {
    // Declared: zeta before alpha (a nested object: y before b); the map sorts them.
    let raw = r#"{"type":"object","properties":{"zeta":{"type":"integer"},"alpha":{"type":"object",
        "properties":{"y":{"type":"integer"},"b":{"type":"integer"}},"required":["y","b"]}},"required":["zeta","alpha"]}"#;
    let schema: Value = serde_json::from_str(raw).unwrap();
    let orders = order::property_orders(&serde_json::from_str(raw).unwrap());
    let tools = [("other".to_string(), None), ("f".to_string(), Some(schema))];
    let declared = r#"{"name":"f","arguments":{"zeta":1,"alpha":{"y":2,"b":3}}}"#;
    let sorted = r#"{"name":"f","arguments":{"alpha":{"b":3,"y":2},"zeta":1}}"#;
    for several in [false, true] {
        let g = Grammar::tool_calls_in_order(&tools, &[Default::default(), orders.clone()], several).unwrap();
        assert!(accepts(&g, declared) && !accepts(&g, sorted));
        let by_name = Grammar::tool_calls(&tools, several).unwrap();
        assert!(accepts(&by_name, sorted) && !accepts(&by_name, declared));
    }
}

/// A vocabulary of single bytes plus a few words, so the mask can be checked by hand.
fn table() -> Arc<TokenTable> {
    let mut bytes: Vec<Option<Box<[u8]>>> = (0..=255u8).map(|b| Some(vec![b].into_boxed_slice())).collect();
    for w in ["{\"", "\":", "true", "tr", " {", "{}", "\"}", "ab"] {
        bytes.push(Some(w.as_bytes().to_vec().into_boxed_slice()));
    }
    bytes.push(None); // a special token: never inside JSON (id 264)
    bytes.push(None); // the end of sequence (id 265)
    Arc::new(TokenTable::from_bytes(bytes))
}

fn id(t: &TokenTable, text: &str) -> u32 {
    (0..t.len() as u32).rev().find(|&i| t.bytes(i) == Some(text.as_bytes())).unwrap()
}

#[test]
fn the_mask_follows_the_grammar_and_forces_the_end() {
    let t = table();
    let g = grammar(json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}));
    let c = Arc::new(JsonConstraint::new(g, Arc::clone(&t), Start::Always));
    let mut s = c.start();
    let eos = [265u32];
    let allowed = |s: &mut Box<dyn ConstraintState>| {
        let mut logits = vec![0.0f32; t.len()];
        s.mask(&mut logits, &eos);
        (0..t.len()).filter(|&i| logits[i] == 0.0).map(|i| i as u32).collect::<Vec<_>>()
    };
    let first = allowed(&mut s);
    assert!(first.contains(&id(&t, "{")) && first.contains(&id(&t, "{\"")) && first.contains(&id(&t, " {")));
    assert!(!first.contains(&id(&t, "{}")), "ok is required");
    assert!(!first.contains(&265) && !first.contains(&264) && !first.contains(&id(&t, "a")));
    for piece in ["{\"", "o", "k", "\":", " ", "tr"] {
        let a = allowed(&mut s);
        assert!(a.contains(&id(&t, piece)), "{piece} refused");
        s.accept(id(&t, piece));
    }
    assert_eq!(allowed(&mut s), vec![id(&t, "u")]);
    for piece in ["u", "e"] {
        s.accept(id(&t, piece));
    }
    let a = allowed(&mut s);
    assert!(a.contains(&id(&t, "}")) && a.contains(&id(&t, " ")) && !a.contains(&265));
    s.accept(id(&t, "}"));
    assert_eq!(allowed(&mut s), vec![265], "only the end may follow");
}

#[test]
fn auto_lets_the_first_token_choose_text_or_the_grammar() {
    let t = table();
    let g = Grammar::tool_call(&[("f".into(), None)]).unwrap();
    let c = Arc::new(JsonConstraint::new(g, Arc::clone(&t), Start::FirstToken));
    let eos = [265u32];
    let mut logits = vec![0.0f32; t.len()];
    let mut s = c.start();
    s.mask(&mut logits, &eos);
    assert_eq!(logits[id(&t, "a") as usize], 0.0, "text may start");
    assert_eq!(logits[id(&t, "{\"") as usize], 0.0, "a call may start");
    assert_eq!(logits[id(&t, "{}") as usize], f32::NEG_INFINITY, "not a call");
    s.accept(id(&t, "a"));
    let mut logits = vec![0.0f32; t.len()];
    s.mask(&mut logits, &eos);
    assert!(logits.iter().all(|&l| l == 0.0), "free text after a text token");
    let mut s = c.start();
    s.accept(id(&t, "{"));
    let mut logits = vec![0.0f32; t.len()];
    s.mask(&mut logits, &eos);
    assert_eq!(logits[id(&t, "a") as usize], f32::NEG_INFINITY, "committed to a call");
    assert_eq!(logits[id(&t, "\"") as usize], 0.0);
}

/// The mask's cost per step on a real vocabulary: `cargo test -p llmos --lib mask_cost --
/// --ignored --nocapture` with LLMOS_MASK_TOKENIZER=path/to/smollm2/tokenizer.json.
#[test]
#[ignore = "needs a real tokenizer.json (LLMOS_MASK_TOKENIZER); prints timings"]
fn mask_cost_on_a_real_vocabulary() {
    let path = std::env::var("LLMOS_MASK_TOKENIZER").expect("LLMOS_MASK_TOKENIZER");
    let tok = tokenizers::Tokenizer::from_file(path).unwrap();
    let t0 = std::time::Instant::now();
    let table = Arc::new(TokenTable::new(&tok).unwrap());
    println!("table of {} tokens built in {:?}", table.len(), t0.elapsed());
    let g = grammar(json!({"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["name", "age"]}));
    let text = r#"{"age": 41, "name": "Ada Lovelace, the first programmer", "tags": ["math", "poetry"]}"#;
    let mut m = Matcher::new();
    let mut levels = Vec::new();
    let mut allowed = vec![false; table.len()];
    let mut times = Vec::new();
    for (i, &b) in text.as_bytes().iter().enumerate() {
        let t = std::time::Instant::now();
        table.allowed(&g, &m, &mut levels, &mut allowed);
        times.push((t.elapsed(), allowed.iter().filter(|a| **a).count(), &text[..i]));
        assert!(m.feed(&g, b));
    }
    times.sort_by_key(|t| t.0);
    let mean = times.iter().map(|t| t.0).sum::<std::time::Duration>() / times.len() as u32;
    println!("mask per step over {} steps: mean {mean:?}, median {:?}, max {:?} ({} tokens allowed after {:?})",
        times.len(), times[times.len() / 2].0, times.last().unwrap().0, times.last().unwrap().1, times.last().unwrap().2);
}

//! Checking a JSON value against a compiled [`Grammar`]: the same nodes the matcher decodes
//! under, so a value is accepted exactly when the model could have written it (tool
//! arguments, docs/tools.md §3). Errors name the path and what is accepted
//! (`arguments.city is 5: expected a string`).

use serde_json::Value;

use super::schema::{Grammar, Node, NodeId, OPEN_ITEMS_MAX, OPEN_KEY_MAX};

/// Longest number the matcher reads (bytes of its JSON text).
const NUMBER_MAX_BYTES: usize = 24;

/// A value as it is shown in an error: its JSON text, cut after 60 characters.
fn shown(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or_default()),
        None => text,
    }
}

fn literal_text(l: &[u8]) -> String {
    String::from_utf8_lossy(l).into_owned()
}

/// The path of property `key` under `path` (`arguments.city`, `arguments["a b"]`).
fn child(path: &str, key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_string()))
    }
}

impl Grammar {
    /// Checks `value` against the grammar; the error names the first place that is wrong,
    /// as `path` (`arguments`) followed by keys and indices, and what is accepted there.
    pub fn validate(&self, value: &Value, path: &str) -> Result<(), String> {
        self.check(0, value, path, 0)
    }

    fn node_at(&self, id: NodeId) -> Result<&Node, String> {
        self.nodes.get(id as usize).ok_or_else(|| format!("the schema has no node {id}"))
    }

    /// A short description of what node `id` accepts (for `anyOf` errors).
    fn expected(&self, id: NodeId, depth: usize) -> String {
        let Ok(node) = self.node_at(id) else { return "nothing".into() };
        match node {
            Node::Object(props) => {
                let names: Vec<String> = props.iter().map(|p| literal_text(&p.key)).collect();
                format!("an object with the properties {}", if names.is_empty() { "(none)".into() } else { names.join(", ") })
            }
            Node::AnyObject { .. } => "an object".into(),
            Node::String { .. } => "a string".into(),
            Node::Number => "a number".into(),
            Node::Integer => "an integer".into(),
            Node::Literals(l) => l.iter().map(|l| literal_text(l)).collect::<Vec<_>>().join(" or "),
            Node::Array { .. } => "an array".into(),
            Node::AnyOf(alts) if depth < 4 => alts.iter().map(|a| self.expected(*a, depth.saturating_add(1))).collect::<Vec<_>>().join(" or "),
            Node::AnyOf(_) => "one of several forms".into(),
        }
    }

    /// Whether node `id` takes values of `v`'s JSON kind (an object for an object, …).
    fn same_kind(&self, id: NodeId, v: &Value) -> bool {
        match (self.node_at(id), v) {
            (Ok(Node::Object(_) | Node::AnyObject { .. }), Value::Object(_))
            | (Ok(Node::String { .. }), Value::String(_))
            | (Ok(Node::Number | Node::Integer), Value::Number(_))
            | (Ok(Node::Array { .. }), Value::Array(_)) => true,
            (Ok(Node::AnyOf(alts)), _) => alts.iter().any(|a| self.same_kind(*a, v)),
            _ => false,
        }
    }

    fn check(&self, id: NodeId, v: &Value, path: &str, depth: usize) -> Result<(), String> {
        if depth > 64 {
            return Err(format!("{path} is nested deeper than 64 levels"));
        }
        let deeper = depth.saturating_add(1);
        match self.node_at(id)? {
            Node::Object(props) => {
                let Value::Object(o) = v else {
                    return Err(format!("{path} is {}: expected {}", shown(v), self.expected(id, 0)));
                };
                for (k, val) in o {
                    let Some(p) = props.iter().find(|p| key_of(&p.key) == *k) else {
                        let key = Value::String(k.clone());
                        let names: Vec<String> = props.iter().map(|p| literal_text(&p.key)).collect();
                        return Err(format!(
                            "{path} has the property {key}, which the schema does not define; accepted are {}",
                            if names.is_empty() { "no properties".into() } else { names.join(", ") }
                        ));
                    };
                    self.check(p.value, val, &child(path, k), deeper)?;
                }
                if let Some(p) = props.iter().find(|p| p.required && !o.contains_key(key_of(&p.key).as_str())) {
                    return Err(format!("{} is missing: the property {} is required", child(path, &key_of(&p.key)), literal_text(&p.key)));
                }
                Ok(())
            }
            Node::AnyObject { values } => {
                let Value::Object(o) = v else {
                    return Err(format!("{path} is {}: expected an object", shown(v)));
                };
                if o.len() > OPEN_ITEMS_MAX as usize {
                    return Err(format!("{path} has {} properties: at most {OPEN_ITEMS_MAX} where the schema leaves the object open", o.len()));
                }
                for (k, val) in o {
                    if k.chars().count() > OPEN_KEY_MAX as usize {
                        return Err(format!("{path} has a key of {} characters: at most {OPEN_KEY_MAX}", k.chars().count()));
                    }
                    self.check(*values, val, &child(path, k), deeper)?;
                }
                Ok(())
            }
            Node::String { min, max } => {
                let Value::String(s) = v else {
                    return Err(format!("{path} is {}: expected a string", shown(v)));
                };
                let n = s.chars().count();
                if n < *min as usize {
                    return Err(format!("{path} is {}: at least {min} characters", shown(v)));
                }
                if let Some(max) = max
                    && n > *max as usize
                {
                    return Err(format!("{path} is a string of {n} characters: at most {max}"));
                }
                Ok(())
            }
            Node::Number => match v {
                Value::Number(n) if n.to_string().len() <= NUMBER_MAX_BYTES => Ok(()),
                Value::Number(n) => Err(format!("{path} is {n}: at most {NUMBER_MAX_BYTES} characters of JSON number")),
                _ => Err(format!("{path} is {}: expected a number", shown(v))),
            },
            Node::Integer => match v {
                Value::Number(n) if (n.is_i64() || n.is_u64()) && n.to_string().len() <= NUMBER_MAX_BYTES => Ok(()),
                _ => Err(format!("{path} is {}: expected an integer (no fraction or exponent)", shown(v))),
            },
            Node::Literals(lits) => {
                let text = serde_json::to_vec(v).unwrap_or_default();
                if lits.contains(&text) {
                    Ok(())
                } else {
                    Err(format!("{path} is {}: expected {}", shown(v), self.expected(id, 0)))
                }
            }
            Node::Array { items, min, max } => {
                let Value::Array(a) = v else {
                    return Err(format!("{path} is {}: expected an array", shown(v)));
                };
                if a.len() < *min as usize {
                    return Err(format!("{path} has {} items: at least {min}", a.len()));
                }
                if let Some(max) = max
                    && a.len() > *max as usize
                {
                    return Err(format!("{path} has {} items: at most {max}", a.len()));
                }
                for (i, item) in a.iter().enumerate() {
                    self.check(*items, item, &format!("{path}[{i}]"), deeper)?;
                }
                Ok(())
            }
            Node::AnyOf(alts) => {
                let mut same_kind = Vec::new();
                for a in alts {
                    match self.check(*a, v, path, deeper) {
                        Ok(()) => return Ok(()),
                        Err(e) if self.same_kind(*a, v) => same_kind.push(e),
                        Err(_) => {}
                    }
                }
                // The one alternative of the value's own kind says best what is wrong.
                match same_kind.as_slice() {
                    [one] => Err(one.clone()),
                    _ => Err(format!("{path} is {}: expected {}", shown(v), self.expected(id, 0))),
                }
            }
        }
    }
}

/// A property key as the object holds it (the node keeps it as JSON text with quotes).
fn key_of(key: &[u8]) -> String {
    serde_json::from_slice::<String>(key).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::{Grammar, Matcher};

    /// What the matcher (the decoder's automaton) says of the value's compact JSON text.
    fn decodable(g: &Grammar, v: &Value) -> bool {
        let mut m = Matcher::new();
        m.feed_all(g, v.to_string().as_bytes()) && m.is_complete(g)
    }

    fn weather() -> Grammar {
        Grammar::compile(&json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1, "maxLength": 10},
                "days": {"type": "integer"},
                "unit": {"enum": ["c", "f"]},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "at": {"anyOf": [{"type": "number"}, {"type": "null"}]},
                "extra": {}
            },
            "required": ["city"]
        }))
        .unwrap()
    }

    #[test]
    fn errors_name_the_path_and_what_is_accepted() {
        let g = weather();
        let cases = [
            (json!({"days": 2}), "arguments.city is missing: the property \"city\" is required"),
            (json!({"city": 5}), "arguments.city is 5: expected a string"),
            (json!({"city": ""}), "arguments.city is \"\": at least 1 characters"),
            (json!({"city": "Amsterdam!!"}), "arguments.city is a string of 11 characters: at most 10"),
            (json!({"city": "x", "days": 2.5}), "arguments.days is 2.5: expected an integer"),
            (json!({"city": "x", "unit": "k"}), "arguments.unit is \"k\": expected \"c\" or \"f\""),
            (json!({"city": "x", "tags": ["a", 1]}), "arguments.tags[1] is 1: expected a string"),
            (json!({"city": "x", "tags": ["a", "b", "c"]}), "arguments.tags has 3 items: at most 2"),
            (json!({"city": "x", "at": "noon"}), "arguments.at is \"noon\": expected a number or null"),
            (json!({"city": "x", "country": "nl"}), "arguments has the property \"country\", which the schema does not define; accepted are \"at\", \"city\""),
            (json!({"city": "x", "extra": "y".repeat(129)}), "arguments.extra is a string of 129 characters: at most 128"),
            (json!([1]), "arguments is [1]: expected an object with the properties"),
        ];
        for (v, want) in cases {
            let e = g.validate(&v, "arguments").unwrap_err();
            assert!(e.starts_with(want), "{v}: {e}\nwanted: {want}");
            assert!(!decodable(&g, &v), "the matcher accepts {v}, the validator refuses it: {e}");
        }
    }

    #[test]
    fn accepts_exactly_what_the_matcher_decodes() {
        let g = weather();
        for v in [
            json!({"city": "x"}),
            json!({"city": "Amsterdam", "days": -3, "unit": "f", "tags": [], "at": null}),
            json!({"city": "é😀", "at": 1.5e3, "extra": {"a": [1, true, null, "s"]}}),
            json!({"city": "x", "tags": ["a", "b"], "days": 12345678901234567_u64}),
        ] {
            assert_eq!(g.validate(&v, "arguments"), Ok(()), "{v}");
            assert!(decodable(&g, &v), "the validator accepts {v}, the matcher refuses it");
        }
        // Nested anyOf reports the alternative of the value's own kind.
        let g = Grammar::compile(&json!({"anyOf": [{"type": "string", "maxLength": 2}, {"type": "integer"}]})).unwrap();
        assert_eq!(g.validate(&json!("abc"), "x").unwrap_err(), "x is a string of 3 characters: at most 2");
        assert_eq!(g.validate(&json!(true), "x").unwrap_err(), "x is true: expected a string or an integer");
        // Open objects keep the decoder's bounds.
        let many: serde_json::Map<String, Value> = (0..17).map(|i| (format!("k{i}"), json!(i))).collect();
        let open = Grammar::any_object();
        assert!(open.validate(&Value::Object(many.clone()), "a").unwrap_err().contains("at most 16"));
        assert!(!decodable(&open, &Value::Object(many)));
    }
}

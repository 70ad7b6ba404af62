//! OpenAI tools (function calling) on `/v1/chat/completions` (docs/generation.md §6a).
//!
//! The tool list goes to the chat template as `tools` and, when the template ignores it,
//! into a system message. A call is decoded under the grammar of
//! `{"name": <one of the tools>, "arguments": <that tool's parameters>}`:
//! - `tool_choice: "required"` or a named function: the whole answer is that grammar, so it
//!   is always a valid call;
//! - `"auto"` (the default with tools): the model's first token decides: one that opens a
//!   JSON object commits the answer to the call grammar, any other makes it free text;
//! - `"none"`: plain text, the tools only described.
//!
//! Several calls per answer (`parallel_tool_calls`, default true) with `auto` and
//! `required`: the grammar also takes a JSON array of 2 to 8 calls, and each becomes an entry
//! of `tool_calls`. A named function, or `parallel_tool_calls: false`, makes one call.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::core::generate::grammar::order::{Ordered, property_orders};
use crate::core::generate::grammar::{Grammar, Start};

/// One function the model may call.
#[derive(Debug, Clone)]
pub struct Tool {
    /// `^[a-zA-Z0-9_-]{1,64}$`.
    pub name: String,
    /// What it does (for the model).
    pub description: Option<String>,
    /// A JSON schema of its arguments (the subset of `response_format`).
    pub parameters: Option<Value>,
    /// The property names of each object schema of `parameters` in the order the request
    /// wrote them ([`property_orders`]; empty: by name), so calls write them in that order.
    pub order: HashMap<String, Vec<String>>,
    /// An installed llmos tool (`{"type": "llmos_tool", "name": <id>}`): its catalogue id;
    /// llmos runs its calls (the tool loop). `None`: a client function.
    pub llmos: Option<String>,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Text only.
    None,
    /// The model decides (its first token).
    Auto,
    /// A call to one of the tools.
    Required,
    /// A call to this tool.
    Named(String),
}

/// `tools`, `tool_choice`, `parallel_tool_calls`, parsed.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The functions.
    pub list: Vec<Tool>,
    /// How they are used (on the first step of a tool loop).
    pub choice: Choice,
    /// llmos: `tool_choice` given as a list: the choices of the steps after the first
    /// (a step past the list uses `auto`).
    pub later: Vec<Choice>,
    /// `parallel_tool_calls`: several calls per answer (with `auto` and `required`).
    pub parallel: bool,
}

/// A tool in a request (the shape `/openapi.json` describes).
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)] // describes the accepted shape; `parse` reads it
pub struct ToolInput {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `{"name", "description"?, "parameters"?, "strict"?}`.
    #[schema(value_type = Object)]
    pub function: Value,
}

fn bad(param: &str, message: String) -> ApiError {
    ApiError::invalid(Some(param.to_string()), message)
}

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Finds an installed llmos tool by id for the request (checking the caller's scope):
/// `(index in tools, id)` → the tool as the model sees it.
pub(crate) type Resolve<'a> = &'a (dyn Fn(usize, &str) -> Result<Tool, ApiError> + Sync);

const SHAPES: &str = "give {\"type\": \"function\", \"function\": {\"name\", \"description\"?, \"parameters\"?, \"strict\"?}} or {\"type\": \"llmos_tool\", \"name\": <an installed tool's id>}";

/// `ordered`: the same entry as the request wrote it (its keys in order), when known.
fn tool(i: usize, v: &Value, ordered: Option<&Ordered>, resolve: Resolve<'_>) -> Result<Tool, ApiError> {
    let at = format!("tools[{i}]");
    let shape = SHAPES;
    let o = v.as_object().ok_or_else(|| bad("tools", format!("{at} is {v}: {shape}")))?;
    if o.get("type").and_then(Value::as_str) == Some("llmos_tool") {
        if let Some(k) = o.keys().find(|k| *k != "type" && *k != "name") {
            return Err(bad("tools", format!("{at} has the field `{k}`: {shape}")));
        }
        let Some(id) = o.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
            return Err(bad("tools", format!("{at} is an llmos_tool without `name`: {shape}")));
        };
        return resolve(i, id);
    }
    if o.get("type").and_then(Value::as_str) != Some("function") {
        return Err(bad("tools", format!("{at}.type is {}: accepted are \"function\" and \"llmos_tool\"; {shape}", o.get("type").unwrap_or(&Value::Null))));
    }
    if let Some(k) = o.keys().find(|k| *k != "type" && *k != "function") {
        return Err(bad("tools", format!("{at} has the field `{k}`: {shape}")));
    }
    let f = o.get("function").and_then(Value::as_object).ok_or_else(|| bad("tools", format!("{at}.function is missing: {shape}")))?;
    if let Some(k) = f.keys().find(|k| !["name", "description", "parameters", "strict"].contains(&k.as_str())) {
        return Err(bad("tools", format!("{at}.function has the field `{k}`; accepted are name, description, parameters, strict")));
    }
    let name = f.get("name").and_then(Value::as_str).filter(|n| valid_name(n)).ok_or_else(|| {
        bad("tools", format!("{at}.function.name must be 1-64 letters, digits, _ or -, got {}", f.get("name").unwrap_or(&Value::Null)))
    })?;
    let description = match f.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(d) => return Err(bad("tools", format!("{at}.function.description is {d}: give a string"))),
    };
    if let Some(s) = f.get("strict").filter(|s| !s.is_boolean() && !s.is_null()) {
        return Err(bad("tools", format!("{at}.function.strict is {s}: give true or false")));
    }
    let parameters = f.get("parameters").filter(|p| !p.is_null()).cloned();
    if let Some(p) = &parameters {
        Grammar::compile(p).map_err(|e| bad("tools", format!("{at}.function.parameters: {e}")).with_code("unsupported_schema"))?;
    }
    let order = match (&parameters, ordered.and_then(|o| o.get("function")?.get("parameters"))) {
        (Some(_), Some(p)) => property_orders(p),
        _ => HashMap::new(),
    };
    Ok(Tool { name: name.to_string(), description, parameters, order, llmos: None })
}

fn choice(v: Option<&Value>, list: &[Tool]) -> Result<Choice, ApiError> {
    let accepted = "accepted are \"none\", \"auto\", \"required\", {\"type\": \"function\", \"function\": {\"name\"}}, {\"type\": \"llmos_tool\", \"name\"} and (with llmos tools) a list of these, one per step";
    let c = match v {
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("llmos_tool") => {
            let n = o.get("name").and_then(Value::as_str).unwrap_or_default();
            match list.iter().find(|t| t.llmos.as_deref() == Some(n) || (t.llmos.is_some() && t.name == n)) {
                Some(t) => Choice::Named(t.name.clone()),
                None => return Err(bad("tool_choice", format!("`tool_choice` names the llmos tool `{n}`, which is not an llmos_tool entry of `tools`"))),
            }
        }
        None => return Ok(if list.is_empty() { Choice::None } else { Choice::Auto }),
        Some(Value::String(s)) => match s.as_str() {
            "none" => Choice::None,
            "auto" => Choice::Auto,
            "required" => Choice::Required,
            other => return Err(bad("tool_choice", format!("`tool_choice` is \"{other}\"; {accepted}"))),
        },
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str);
            // An llmos tool may also be named by its id.
            let by_id = name.and_then(|n| list.iter().find(|t| t.llmos.as_deref() == Some(n)));
            match name {
                Some(n) if list.iter().any(|t| t.name == n) => Choice::Named(n.to_string()),
                Some(_) if by_id.is_some() => Choice::Named(by_id.map(|t| t.name.clone()).unwrap_or_default()),
                Some(n) => {
                    let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
                    return Err(bad("tool_choice", format!("`tool_choice` names the function `{n}`, which is not in `tools` ({})", names.join(", "))));
                }
                None => return Err(bad("tool_choice", format!("`tool_choice` has no function.name; {accepted}"))),
            }
        }
        Some(other) => return Err(bad("tool_choice", format!("`tool_choice` is {other}; {accepted}"))),
    };
    if list.is_empty() && c != Choice::None {
        return Err(bad("tool_choice", "`tool_choice` is set but `tools` is empty or missing: give the tools".into()));
    }
    Ok(c)
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls` (`None`: no tools in the request);
/// `ordered`: the request as written (for the declared order of the parameters' properties);
/// `resolve` finds the `llmos_tool` entries.
pub(crate) fn parse(body: &Map<String, Value>, ordered: Option<&Ordered>, resolve: Resolve<'_>) -> Result<Option<Tools>, ApiError> {
    let ordered_tools = ordered.and_then(|o| o.get("tools"));
    let present = |k: &str| body.get(k).filter(|v| !v.is_null());
    let list = match present("tools") {
        None => Vec::new(),
        Some(Value::Array(a)) if a.len() <= 128 => a.iter().enumerate().map(|(i, t)| tool(i, t, ordered_tools.and_then(|o| o.at(i)), resolve)).collect::<Result<Vec<_>, _>>()?,
        Some(v) => return Err(bad("tools", format!("`tools` is {}: give an array of at most 128 function tools", crate::json::kind(v)))),
    };
    if let Some(dup) = list.iter().enumerate().find(|(i, t)| list.iter().take(*i).any(|u| u.name == t.name)) {
        return Err(bad("tools", format!("two tools are named `{}`: names must differ", dup.1.name)));
    }
    let (choice, later) = match present("tool_choice") {
        Some(Value::Array(steps)) if list.iter().any(|t| t.llmos.is_some()) && !steps.is_empty() && steps.len() <= 64 => {
            let all = steps.iter().map(|s| choice(Some(s), &list)).collect::<Result<Vec<_>, _>>()?;
            let mut it = all.into_iter();
            (it.next().unwrap_or(Choice::Auto), it.collect())
        }
        Some(Value::Array(_)) => {
            return Err(bad("tool_choice", "`tool_choice` as a list (one choice per step, 1-64 entries) needs an {\"type\": \"llmos_tool\"} entry in `tools`".into()));
        }
        c => (choice(c, &list)?, Vec::new()),
    };
    let parallel = match present("parallel_tool_calls") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(bad("parallel_tool_calls", format!("`parallel_tool_calls` is {v}: give true or false"))),
    };
    if list.is_empty() && present("parallel_tool_calls").is_some() {
        return Err(bad("parallel_tool_calls", "`parallel_tool_calls` needs `tools`".into()));
    }
    Ok((!list.is_empty()).then_some(Tools { list, choice, later, parallel }))
}

impl Tools {
    /// Whether an llmos tool is among them (the request runs the tool loop).
    pub fn has_llmos(&self) -> bool {
        self.list.iter().any(|t| t.llmos.is_some())
    }

    /// The tools as step `step` (0 first) of a tool loop uses them: the first step takes
    /// `tool_choice`; later ones the list's entry for them, else `auto` (a forced call
    /// forces the first step only) — but `none` stays `none`.
    pub fn for_step(&self, step: usize) -> Self {
        let choice = match (step, &self.choice) {
            (0, c) | (_, c @ Choice::None) => c.clone(),
            (k, _) => self.later.get(k.saturating_sub(1)).cloned().unwrap_or(Choice::Auto),
        };
        Self { choice, ..self.clone() }
    }

    /// The tool the model calls by `name`.
    pub fn named(&self, name: &str) -> Option<&Tool> {
        self.list.iter().find(|t| t.name == name)
    }

    /// The grammar calls are decoded under, and whether the answer must be a call.
    pub fn grammar(&self) -> Result<Option<(Grammar, Start)>, ApiError> {
        let (tools, start): (Vec<&Tool>, Start) = match &self.choice {
            Choice::None => return Ok(None),
            Choice::Auto => (self.list.iter().collect(), Start::FirstToken),
            Choice::Required => (self.list.iter().collect(), Start::Always),
            Choice::Named(n) => (self.list.iter().filter(|t| &t.name == n).collect(), Start::Always),
        };
        let pairs: Vec<(String, Option<Value>)> = tools.iter().map(|t| (t.name.clone(), t.parameters.clone())).collect();
        let orders: Vec<HashMap<String, Vec<String>>> = tools.iter().map(|t| t.order.clone()).collect();
        let g = Grammar::tool_calls_in_order(&pairs, &orders, self.several()).map_err(|e| bad("tools", e.to_string()).with_code("unsupported_schema"))?;
        Ok(Some((g, start)))
    }

    /// Whether an answer may hold several calls: `parallel_tool_calls` with `auto` or
    /// `required` (a named function is called once).
    fn several(&self) -> bool {
        self.parallel && matches!(self.choice, Choice::Auto | Choice::Required)
    }

    /// The list as Hugging Face chat templates take it (`tools`).
    pub fn template_value(&self) -> Value {
        Value::Array(
            self.list
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect(),
        )
    }

    /// The tools described for a system message (templates that ignore `tools`).
    pub fn system_text(&self) -> String {
        let mut s = String::from("You can call these tools:\n");
        for t in &self.list {
            let params = t.parameters.as_ref().map_or_else(|| "{}".to_string(), Value::to_string);
            s.push_str(&format!("- {}: {} Arguments (JSON schema): {params}\n", t.name, t.description.as_deref().unwrap_or("")));
        }
        s.push_str(match &self.choice {
            Choice::None => "Do not call a tool now: answer in text.",
            _ => "To call a tool, answer with only a JSON object {\"name\": <tool name>, \"arguments\": <its arguments>}; otherwise answer in text.",
        });
        if self.several() {
            s.push_str(" To call several tools at once, answer with a JSON array of those objects.");
        }
        s
    }

    /// The calls in a finished answer, in order: `(name, arguments as JSON text)`; `None`
    /// when the answer is not one call (an object) or an array of calls.
    pub fn calls_of(&self, text: &str) -> Option<Vec<(String, String)>> {
        if self.choice == Choice::None {
            return None;
        }
        let v: Value = serde_json::from_str(text.trim()).ok()?;
        // The same text with its keys in the order written: the arguments keep the order the
        // model wrote them in (the declared order of the parameters), not `Value`'s sorted one.
        let ordered: Option<Ordered> = serde_json::from_str(text.trim()).ok();
        let one = |v: &Value, o: Option<&Ordered>| -> Option<(String, String)> {
            let name = v.get("name")?.as_str()?;
            let args = v.get("arguments")?;
            let mut text = String::new();
            json_in_order(args, o.and_then(|o| o.get("arguments")), &mut text);
            (self.list.iter().any(|t| t.name == name) && args.is_object()).then(|| (name.to_string(), text))
        };
        match &v {
            Value::Array(calls) if !calls.is_empty() => {
                calls.iter().enumerate().map(|(i, c)| one(c, ordered.as_ref().and_then(|o| o.at(i)))).collect()
            }
            Value::Array(_) => None,
            v => one(v, ordered.as_ref()).map(|c| vec![c]),
        }
    }
}

/// `v` as compact JSON text, every object's keys in the order `o` (the same JSON read as
/// [`Ordered`]) has them; keys `o` does not have (or without `o`) follow, by name.
fn json_in_order(v: &Value, o: Option<&Ordered>, out: &mut String) {
    match (v, o) {
        (Value::Object(map), Some(Ordered::Object(entries))) => {
            out.push('{');
            let mut written: Vec<&str> = Vec::with_capacity(map.len());
            let keys = entries.iter().map(|(k, sub)| (k.as_str(), Some(sub))).chain(map.keys().map(|k| (k.as_str(), None)));
            for (k, sub) in keys {
                let Some(value) = map.get(k).filter(|_| !written.contains(&k)) else { continue };
                if !written.is_empty() {
                    out.push(',');
                }
                written.push(k);
                out.push_str(&Value::String(k.to_string()).to_string());
                out.push(':');
                json_in_order(value, sub, out);
            }
            out.push('}');
        }
        (Value::Array(items), Some(Ordered::Array(subs))) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_in_order(item, subs.get(i), out);
            }
            out.push(']');
        }
        (v, _) => out.push_str(&v.to_string()),
    }
}

/// An assistant message's `tool_calls`, as the text the model writes for them (the prompt
/// shows the model its own calls the way it makes them).
pub(crate) fn calls_as_text(at: &str, v: &Value) -> Result<String, ApiError> {
    let shape = "give [{\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}]";
    let calls = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| bad("messages", format!("{at}.tool_calls is {v}: {shape}")))?;
    let mut out = Vec::with_capacity(calls.len());
    for (i, c) in calls.iter().enumerate() {
        let f = c.get("function");
        let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
        let args = f.and_then(|f| f.get("arguments")).and_then(Value::as_str);
        let (Some(name), Some(args)) = (name, args) else {
            return Err(bad("messages", format!("{at}.tool_calls[{i}] is {c}: {shape}")));
        };
        let args: Value = serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_string()));
        out.push(format!("{{\"name\": {}, \"arguments\": {args}}}", Value::String(name.to_string())));
    }
    // Several calls as the model writes them: one JSON array.
    Ok(if out.len() == 1 { out.join("") } else { format!("[{}]", out.join(", ")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_keep_the_order_the_model_wrote() {
        let f = Tool { name: "f".into(), description: None, parameters: None, order: HashMap::new(), llmos: None };
        let t = Tools { list: vec![f], choice: Choice::Auto, later: vec![], parallel: true };
        let calls = t.calls_of(r#"{"name": "f", "arguments": {"zeta": 1, "alpha": {"y": [2, {"b": 1, "a": "é\n"}], "b": null}}}"#).unwrap();
        assert_eq!(calls, [("f".to_string(), r#"{"zeta":1,"alpha":{"y":[2,{"b":1,"a":"é\n"}],"b":null}}"#.to_string())]);
        let two = t.calls_of(r#"[{"name":"f","arguments":{"b":1,"a":2}}, {"name":"f","arguments":{"d":1,"c":2,"d":3}}]"#).unwrap();
        assert_eq!((two[0].1.as_str(), two[1].1.as_str()), (r#"{"b":1,"a":2}"#, r#"{"d":3,"c":2}"#));
    }
}

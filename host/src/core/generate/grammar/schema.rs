//! The JSON Schema subset llmos decodes under, compiled to an arena of [`Node`]s that the
//! matcher walks (docs/generation.md §6a).

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Index of a node in [`Grammar::nodes`].
pub(crate) type NodeId = u32;

/// One property of an object node.
#[derive(Debug, Clone)]
pub(crate) struct Prop {
    /// The key as JSON text, quotes included (`"name"`).
    pub(crate) key: Vec<u8>,
    pub(crate) value: NodeId,
    pub(crate) required: bool,
}

/// What a value may be.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// An object with these properties, in this order (optional ones may be left out).
    Object(Vec<Prop>),
    /// An object with any keys; every value is `values`.
    AnyObject { values: NodeId },
    /// A string of `min..=max` characters.
    String { min: u32, max: Option<u32> },
    /// A JSON number.
    Number,
    /// A JSON number without fraction or exponent.
    Integer,
    /// One of these JSON texts exactly (`enum`, `const`, booleans, null).
    Literals(Vec<Vec<u8>>),
    /// An array of `min..=max` items.
    Array { items: NodeId, min: u32, max: Option<u32> },
    /// Any one of these.
    AnyOf(Vec<NodeId>),
}

/// A compiled schema: the root is node 0.
#[derive(Debug, Clone, Default)]
pub struct Grammar {
    pub(crate) nodes: Vec<Node>,
    /// While compiling: each object schema's property names in their declared order, by
    /// pointer ([`super::order::property_orders`]); empty once compiled.
    orders: HashMap<String, Vec<String>>,
}

/// A schema outside the subset, or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A keyword llmos does not decode under.
    #[error("the schema keyword `{keyword}` at {at} is not supported; accepted are {ACCEPTED}")]
    Unsupported {
        /// The keyword.
        keyword: String,
        /// JSON pointer of the schema holding it.
        at: String,
    },
    /// A keyword with a value of the wrong shape.
    #[error("the schema at {at} is invalid: {message}")]
    Invalid {
        /// JSON pointer.
        at: String,
        /// What is wrong.
        message: String,
    },
}

/// What the subset accepts (named in errors).
pub const ACCEPTED: &str = "type (object, string, number, integer, boolean, null, array), properties, required, \
additionalProperties: false, items, minItems, maxItems, minLength, maxLength, enum, const, anyOf, \
and the annotations title, description, default, examples, $schema";

/// Keywords that only annotate (ignored).
const ANNOTATIONS: &[&str] = &["title", "description", "default", "examples", "$schema", "$comment"];

/// Most characters of a string the schema leaves open (`json_object`, `{}`): a small model
/// otherwise may write one string until `max_tokens` runs out.
pub(crate) const OPEN_STRING_MAX: u32 = 128;
/// Most characters of a key of an open object.
pub(crate) const OPEN_KEY_MAX: u32 = 64;
/// Most keys of an open object, and items of an open array.
pub(crate) const OPEN_ITEMS_MAX: u32 = 16;

/// Most tool calls in one answer (`parallel_tool_calls`).
pub(crate) const MAX_CALLS: u32 = 8;

/// Most nesting of schemas (a guard against hostile input).
const MAX_DEPTH: usize = 32;

fn invalid(at: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid { at: at.to_string(), message: message.into() }
}

impl Grammar {
    /// Compiles a JSON schema of the subset.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let mut g = Self::default();
        g.node(schema, "#", 0)?;
        Ok(g)
    }

    /// Compiles a JSON schema of the subset, its object properties in the order `orders`
    /// gives (the order the request wrote them, [`super::order::property_orders`]); a
    /// property `orders` does not name comes after, by name.
    pub fn compile_in_order(schema: &Value, orders: HashMap<String, Vec<String>>) -> Result<Self, SchemaError> {
        let mut g = Self { orders, ..Self::default() };
        g.node(schema, "#", 0)?;
        g.orders = HashMap::new();
        Ok(g)
    }

    /// Any JSON object (`response_format: {"type": "json_object"}`).
    pub fn any_object() -> Self {
        let mut g = Self::default();
        let root = g.push(Node::AnyObject { values: 0 });
        let any = g.any_value();
        if let Some(Node::AnyObject { values }) = g.nodes.get_mut(root as usize) {
            *values = any;
        }
        g
    }

    /// A tool call, `{"name": <one of the tools>, "arguments": <that tool's parameters>}`
    /// (name first, so the model picks the tool before writing its arguments). A tool
    /// without parameters takes any object.
    pub fn tool_call(tools: &[(String, Option<Value>)]) -> Result<Self, SchemaError> {
        Self::tool_call_in_order(tools, &[])
    }

    /// [`Self::tool_call`] with each tool's object properties in the order `orders` gives
    /// (`orders[i]`: [`super::order::property_orders`] of tool `i`'s parameters, pointers
    /// from `#`; a tool without an entry, or a property it does not name, goes by name).
    pub fn tool_call_in_order(tools: &[(String, Option<Value>)], orders: &[HashMap<String, Vec<String>>]) -> Result<Self, SchemaError> {
        let mut g = Self::default();
        let root = g.push(Node::AnyOf(Vec::new()));
        let mut alts = Vec::with_capacity(tools.len());
        for (i, (name, params)) in tools.iter().enumerate() {
            let at = format!("tools[{i}].function.parameters");
            // The compiler names this tool's schemas from `at`, not `#`.
            g.orders = orders
                .get(i)
                .map(|o| o.iter().map(|(k, v)| (format!("{at}{}", k.strip_prefix('#').unwrap_or(k)), v.clone())).collect())
                .unwrap_or_default();
            let args = match params {
                Some(p) => {
                    let node = g.node(p, &at, 0);
                    g.orders = HashMap::new();
                    node?
                }
                None => {
                    let id = g.push(Node::AnyObject { values: 0 });
                    let any = g.any_value();
                    if let Some(Node::AnyObject { values }) = g.nodes.get_mut(id as usize) {
                        *values = any;
                    }
                    id
                }
            };
            let name = g.push(Node::Literals(vec![literal(&Value::String(name.clone()))]));
            let props = vec![
                Prop { key: b"\"name\"".to_vec(), value: name, required: true },
                Prop { key: b"\"arguments\"".to_vec(), value: args, required: true },
            ];
            alts.push(g.push(Node::Object(props)));
        }
        if let Some(Node::AnyOf(slot)) = g.nodes.get_mut(root as usize) {
            *slot = alts;
        }
        g.orders = HashMap::new();
        Ok(g)
    }

    /// The calls of one answer: with `several`, a single call (as [`Self::tool_call`]) or a
    /// JSON array of 2 to [`MAX_CALLS`] calls (`parallel_tool_calls`); without, one call.
    pub fn tool_calls(tools: &[(String, Option<Value>)], several: bool) -> Result<Self, SchemaError> {
        Self::tool_calls_in_order(tools, &[], several)
    }

    /// [`Self::tool_calls`] with each tool's properties in declared order (see
    /// [`Self::tool_call_in_order`]).
    pub fn tool_calls_in_order(tools: &[(String, Option<Value>)], orders: &[HashMap<String, Vec<String>>], several: bool) -> Result<Self, SchemaError> {
        let mut g = Self::tool_call_in_order(tools, orders)?;
        if several {
            let alts = match g.nodes.first() {
                Some(Node::AnyOf(alts)) => alts.clone(),
                _ => Vec::new(),
            };
            let items = g.push(Node::AnyOf(alts));
            let array = g.push(Node::Array { items, min: 2, max: Some(MAX_CALLS) });
            if let Some(Node::AnyOf(root)) = g.nodes.first_mut() {
                root.push(array);
            }
        }
        Ok(g)
    }

    fn push(&mut self, n: Node) -> NodeId {
        let id = NodeId::try_from(self.nodes.len()).unwrap_or(NodeId::MAX);
        self.nodes.push(n);
        id
    }

    /// Any JSON value (strings of at most [`OPEN_STRING_MAX`] characters).
    fn any_value(&mut self) -> NodeId {
        let any = self.push(Node::AnyOf(Vec::new()));
        let object = self.push(Node::AnyObject { values: any });
        let array = self.push(Node::Array { items: any, min: 0, max: Some(OPEN_ITEMS_MAX) });
        let string = self.push(Node::String { min: 0, max: Some(OPEN_STRING_MAX) });
        let number = self.push(Node::Number);
        let lits = self.push(Node::Literals(vec![b"true".to_vec(), b"false".to_vec(), b"null".to_vec()]));
        if let Some(Node::AnyOf(alts)) = self.nodes.get_mut(any as usize) {
            *alts = vec![object, array, string, number, lits];
        }
        any
    }

    fn node(&mut self, s: &Value, at: &str, depth: usize) -> Result<NodeId, SchemaError> {
        if depth > MAX_DEPTH {
            return Err(invalid(at, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let o = match s {
            Value::Bool(true) => return Ok(self.any_value()),
            Value::Object(o) => o,
            other => return Err(invalid(at, format!("a schema is an object, got {other}"))),
        };
        if let Some(v) = o.get("const") {
            self.only(o, at, &["const"])?;
            return Ok(self.push(Node::Literals(vec![literal(v)])));
        }
        if let Some(v) = o.get("enum") {
            self.only(o, at, &["enum", "type"])?;
            let Value::Array(vals) = v else { return Err(invalid(at, "`enum` must be a non-empty array")) };
            if vals.is_empty() {
                return Err(invalid(at, "`enum` must be a non-empty array"));
            }
            return Ok(self.push(Node::Literals(vals.iter().map(literal).collect())));
        }
        if let Some(v) = o.get("anyOf") {
            self.only(o, at, &["anyOf"])?;
            let Some(alts) = v.as_array().filter(|a| !a.is_empty()) else {
                return Err(invalid(at, "`anyOf` must be a non-empty array of schemas"));
            };
            let id = self.push(Node::AnyOf(Vec::new()));
            let mut ids = Vec::with_capacity(alts.len());
            for (i, a) in alts.iter().enumerate() {
                ids.push(self.node(a, &format!("{at}/anyOf/{i}"), depth.saturating_add(1))?);
            }
            if let Some(Node::AnyOf(slot)) = self.nodes.get_mut(id as usize) {
                *slot = ids;
            }
            return Ok(id);
        }
        match o.get("type") {
            None => {
                self.only(o, at, &[])?;
                Ok(self.any_value())
            }
            Some(Value::String(t)) => self.typed(t, o, at, depth),
            Some(Value::Array(ts)) => {
                let id = self.push(Node::AnyOf(Vec::new()));
                let mut ids = Vec::with_capacity(ts.len());
                for t in ts {
                    let t = t.as_str().ok_or_else(|| invalid(at, "`type` must be a string or an array of strings"))?;
                    ids.push(self.typed(t, o, at, depth)?);
                }
                if let Some(Node::AnyOf(slot)) = self.nodes.get_mut(id as usize) {
                    *slot = ids;
                }
                Ok(id)
            }
            Some(other) => Err(invalid(at, format!("`type` is {other}: give a type name"))),
        }
    }

    /// Refuses keywords outside `allowed` (plus `type` and annotations).
    fn only(&self, o: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), SchemaError> {
        for k in o.keys() {
            if k != "type" && !allowed.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()) {
                return Err(SchemaError::Unsupported { keyword: k.clone(), at: at.to_string() });
            }
        }
        Ok(())
    }

    fn typed(&mut self, t: &str, o: &Map<String, Value>, at: &str, depth: usize) -> Result<NodeId, SchemaError> {
        match t {
            "object" => self.object(o, at, depth),
            "array" => {
                self.only(o, at, &["items", "minItems", "maxItems"])?;
                let (min, max) = bounds(o, at, "minItems", "maxItems")?;
                let id = self.push(Node::Array { items: 0, min, max });
                let items = match o.get("items") {
                    Some(s) => self.node(s, &format!("{at}/items"), depth.saturating_add(1))?,
                    None => self.any_value(),
                };
                if let Some(Node::Array { items: slot, .. }) = self.nodes.get_mut(id as usize) {
                    *slot = items;
                }
                Ok(id)
            }
            "string" => {
                self.only(o, at, &["minLength", "maxLength"])?;
                let (min, max) = bounds(o, at, "minLength", "maxLength")?;
                Ok(self.push(Node::String { min, max }))
            }
            "number" => self.only(o, at, &[]).map(|()| self.push(Node::Number)),
            "integer" => self.only(o, at, &[]).map(|()| self.push(Node::Integer)),
            "boolean" => self
                .only(o, at, &[])
                .map(|()| self.push(Node::Literals(vec![b"true".to_vec(), b"false".to_vec()]))),
            "null" => self.only(o, at, &[]).map(|()| self.push(Node::Literals(vec![b"null".to_vec()]))),
            other => Err(invalid(
                at,
                format!("`type` is \"{other}\": accepted are object, string, number, integer, boolean, null, array"),
            )),
        }
    }

    fn object(&mut self, o: &Map<String, Value>, at: &str, depth: usize) -> Result<NodeId, SchemaError> {
        self.only(o, at, &["properties", "required", "additionalProperties"])?;
        let closed = match o.get("additionalProperties") {
            None => None,
            Some(Value::Bool(false)) => Some(true),
            Some(Value::Bool(true)) => Some(false),
            Some(_) => {
                return Err(SchemaError::Unsupported { keyword: "additionalProperties".into(), at: at.to_string() });
            }
        };
        let required: Vec<&str> = match o.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|k| k.as_str().ok_or_else(|| invalid(at, "`required` must be an array of property names")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid(at, "`required` must be an array of property names")),
        };
        let props = match o.get("properties") {
            None if closed != Some(true) && required.is_empty() => {
                let id = self.push(Node::AnyObject { values: 0 });
                let any = self.any_value();
                if let Some(Node::AnyObject { values }) = self.nodes.get_mut(id as usize) {
                    *values = any;
                }
                return Ok(id);
            }
            None => Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => return Err(invalid(at, "`properties` must be an object of schemas")),
        };
        if let Some(missing) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(invalid(at, format!("`required` names `{missing}`, which is not in `properties`")));
        }
        let id = self.push(Node::Object(Vec::new()));
        let mut list = Vec::with_capacity(props.len());
        let declared = self.orders.get(at).cloned().unwrap_or_default();
        let ordered = declared
            .iter()
            .filter_map(|k| props.get_key_value(k))
            .chain(props.iter().filter(|(k, _)| !declared.contains(k)));
        for (k, v) in ordered {
            let value = self.node(v, &format!("{at}/properties/{k}"), depth.saturating_add(1))?;
            list.push(Prop { key: literal(&Value::String(k.clone())), value, required: required.contains(&k.as_str()) });
        }
        if let Some(Node::Object(slot)) = self.nodes.get_mut(id as usize) {
            *slot = list;
        }
        Ok(id)
    }
}

fn bounds(o: &Map<String, Value>, at: &str, lo: &str, hi: &str) -> Result<(u32, Option<u32>), SchemaError> {
    let get = |k: &str| -> Result<Option<u32>, SchemaError> {
        match o.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| invalid(at, format!("`{k}` is {v}: give a non-negative integer"))),
        }
    };
    let (min, max) = (get(lo)?.unwrap_or(0), get(hi)?);
    if max.is_some_and(|m| m < min) {
        return Err(invalid(at, format!("`{hi}` is below `{lo}`")));
    }
    Ok((min, max))
}

/// A value as compact JSON text (how the model must write it).
fn literal(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

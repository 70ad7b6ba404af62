//! The declared order of a schema's properties. `serde_json::Value` keeps object keys
//! sorted (the crate is built without `preserve_order`), so a schema's own order is read
//! from the request's raw JSON: [`Ordered`] is that JSON with every object's keys in the
//! order written, and [`property_orders`] names, per object schema (by the JSON pointer the
//! compiler uses in its errors), its property names in that order.

use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// JSON with object keys in the order written (scalars are not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ordered {
    /// An object: its keys and values, in order.
    Object(Vec<(String, Ordered)>),
    /// An array.
    Array(Vec<Ordered>),
    /// Any other value.
    Scalar,
}

impl Ordered {
    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Ordered> {
        match self {
            Self::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The `i`th element of an array.
    pub fn at(&self, i: usize) -> Option<&Ordered> {
        match self {
            Self::Array(items) => items.get(i),
            _ => None,
        }
    }
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = Ordered;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
        Ok(Ordered::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
        Ok(Ordered::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
        Ok(Ordered::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
        Ok(Ordered::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
        Ok(Ordered::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Ordered, E> {
        Ok(Ordered::Scalar)
    }
    fn visit_none<E>(self) -> Result<Ordered, E> {
        Ok(Ordered::Scalar)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Ordered::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Ordered>()? {
            out.push((k, v));
        }
        Ok(Ordered::Object(out))
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrderedVisitor)
    }
}

/// The property names of every object schema under `schema`, in the order written, keyed
/// by the pointer the compiler gives that schema (`#`, `#/properties/a`, `#/items`,
/// `#/anyOf/0`, …).
pub fn property_orders(schema: &Ordered) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    walk(schema, "#".to_string(), &mut out, 0);
    out
}

fn walk(s: &Ordered, at: String, out: &mut HashMap<String, Vec<String>>, depth: usize) {
    // Deeper than the compiler goes (it refuses past 32 levels) is never looked up.
    if depth > 40 {
        return;
    }
    let Ordered::Object(entries) = s else { return };
    for (k, v) in entries {
        match (k.as_str(), v) {
            ("properties", Ordered::Object(props)) => {
                out.insert(at.clone(), props.iter().map(|(p, _)| p.clone()).collect());
                for (p, sub) in props {
                    walk(sub, format!("{at}/properties/{p}"), out, depth.saturating_add(1));
                }
            }
            ("items", sub) => walk(sub, format!("{at}/items"), out, depth.saturating_add(1)),
            ("anyOf", Ordered::Array(alts)) => {
                for (i, sub) in alts.iter().enumerate() {
                    walk(sub, format!("{at}/anyOf/{i}"), out, depth.saturating_add(1));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_follow_the_text_not_the_sorted_map() {
        let raw = r#"{"type":"object","properties":{"zeta":{"type":"integer"},"alpha":{"type":"object",
            "properties":{"y":{},"b":{}}},"list":{"type":"array","items":{"properties":{"q":{},"c":{}}}},
            "mid":{"anyOf":[{"properties":{"n":{},"m":{}}}]}}}"#;
        let o: Ordered = serde_json::from_str(raw).unwrap();
        let orders = property_orders(&o);
        assert_eq!(orders["#"], ["zeta", "alpha", "list", "mid"]);
        assert_eq!(orders["#/properties/alpha"], ["y", "b"]);
        assert_eq!(orders["#/properties/list/items"], ["q", "c"]);
        assert_eq!(orders["#/properties/mid/anyOf/0"], ["n", "m"]);
        assert_eq!(orders.len(), 4);
    }
}

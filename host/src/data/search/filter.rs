//! Metadata filters of a search: parsed once from JSON, checked on each row's metadata
//! before the row is scored.

use crate::json::kind;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::SearchError;

/// The most fields one filter may name.
pub const MAX_FILTER_FIELDS: usize = 32;
/// The most values an `in` condition may list.
pub const MAX_IN_VALUES: usize = 1024;

/// What the filter grammar accepts, for error messages.
const FILTER_FORMS: &str = "accepted: {\"field\": value} (string, number or boolean: equality), \
{\"field\": {\"in\": [values]}}, {\"field\": {\"gt\"|\"gte\"|\"lt\"|\"lte\": number or string}}; \
several fields must all match";

/// A metadata filter: every condition must hold (AND). Parse one with [`Filter::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    conditions: Vec<(String, Condition)>,
}

/// A value an equality or `in` condition compares with.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Str(String),
    Num(f64),
    Bool(bool),
}

/// A bound of a range condition.
#[derive(Debug, Clone, PartialEq)]
enum Bound {
    Num(f64),
    Str(String),
}

/// What one field must satisfy.
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Eq(Scalar),
    In(Vec<Scalar>),
    /// The comparison the stored value must have with the bound (`Greater` for `gt`), and
    /// whether equality also passes (`gte`, `lte`).
    Range(Ordering, bool, Bound),
}

impl Filter {
    /// Parses a filter: a JSON object whose fields are conditions on metadata fields:
    /// `"field": value` (equality with a string, number or boolean),
    /// `"field": {"in": [values]}`, `"field": {"gt"|"gte"|"lt"|"lte": number or string}`
    /// (several operators on one field must all hold). A metadata field that is an array
    /// matches equality and `in` when any element does; a missing field matches nothing.
    pub fn parse(v: &Value) -> Result<Filter, SearchError> {
        let Value::Object(fields) = v else {
            return Err(SearchError::Filter(format!(
                "a filter is a JSON object of field conditions, got {}; {FILTER_FORMS}",
                kind(v)
            )));
        };
        if fields.len() > MAX_FILTER_FIELDS {
            return Err(SearchError::Filter(format!(
                "{} fields named; at most {MAX_FILTER_FIELDS} are accepted",
                fields.len()
            )));
        }
        let mut conditions = Vec::new();
        for (field, cond) in fields {
            if field.is_empty() {
                return Err(SearchError::Filter(format!(
                    "a field name must not be empty; {FILTER_FORMS}"
                )));
            }
            match cond {
                Value::Object(ops) => {
                    if ops.is_empty() {
                        return Err(field_error(field, "has an empty condition {}"));
                    }
                    for (op, arg) in ops {
                        conditions.push((field.clone(), operator(field, op, arg)?));
                    }
                }
                other => {
                    let s = scalar(other).map_err(|why| field_error(field, &why))?;
                    conditions.push((field.clone(), Condition::Eq(s)));
                }
            }
        }
        Ok(Filter { conditions })
    }

    /// Whether the filter has no condition (it matches everything).
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether `metadata` satisfies every condition.
    pub fn matches(&self, metadata: &Map<String, Value>) -> bool {
        self.conditions
            .iter()
            .all(|(field, c)| metadata.get(field).is_some_and(|v| c.holds(v)))
    }
}

/// An error about one field of a filter.
fn field_error(field: &str, what: &str) -> SearchError {
    SearchError::Filter(format!("field `{field}` {what}; {FILTER_FORMS}"))
}

/// The condition `{op: arg}` on `field`.
fn operator(field: &str, op: &str, arg: &Value) -> Result<Condition, SearchError> {
    let range = |ord: Ordering, or_equal: bool| match arg {
        Value::Number(n) => Ok(Condition::Range(ord, or_equal, Bound::Num(number(n)))),
        Value::String(s) => Ok(Condition::Range(ord, or_equal, Bound::Str(s.clone()))),
        other => Err(field_error(
            field,
            &format!("operator `{op}` needs a number or a string, got {}", kind(other)),
        )),
    };
    match op {
        "gt" => range(Ordering::Greater, false),
        "gte" => range(Ordering::Greater, true),
        "lt" => range(Ordering::Less, false),
        "lte" => range(Ordering::Less, true),
        "in" => {
            let Value::Array(items) = arg else {
                return Err(field_error(
                    field,
                    &format!("operator `in` needs an array, got {}", kind(arg)),
                ));
            };
            if items.is_empty() || items.len() > MAX_IN_VALUES {
                return Err(field_error(
                    field,
                    &format!(
                        "operator `in` lists {} values; 1 to {MAX_IN_VALUES} are accepted",
                        items.len()
                    ),
                ));
            }
            let values = items
                .iter()
                .map(scalar)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|why| field_error(field, &format!("operator `in`: {why}")))?;
            Ok(Condition::In(values))
        }
        other => Err(field_error(
            field,
            &format!("has an unknown operator `{other}` (accepted operators: in, gt, gte, lt, lte)"),
        )),
    }
}

/// A value for equality: a string, number or boolean.
fn scalar(v: &Value) -> Result<Scalar, String> {
    match v {
        Value::String(s) => Ok(Scalar::Str(s.clone())),
        Value::Number(n) => Ok(Scalar::Num(number(n))),
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        Value::Array(_) => Err("is compared with an array; to accept several values use {\"in\": [values]}".into()),
        other => Err(format!(
            "is compared with {}, which is not a string, number or boolean",
            kind(other)
        )),
    }
}

/// A JSON number as `f64` (every JSON number has one).
fn number(n: &serde_json::Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

impl Scalar {
    /// Whether the stored `v` equals this value (an array: any of its elements).
    fn equals(&self, v: &Value) -> bool {
        match (self, v) {
            (_, Value::Array(items)) => items.iter().any(|i| !i.is_array() && self.equals(i)),
            (Scalar::Str(a), Value::String(b)) => a == b,
            (Scalar::Num(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

impl Condition {
    /// Whether the stored value `v` satisfies the condition.
    fn holds(&self, v: &Value) -> bool {
        match self {
            Condition::Eq(s) => s.equals(v),
            Condition::In(set) => set.iter().any(|s| s.equals(v)),
            Condition::Range(want, or_equal, bound) => {
                let got = match (bound, v) {
                    (Bound::Num(b), Value::Number(n)) => n.as_f64().and_then(|x| x.partial_cmp(b)),
                    (Bound::Str(b), Value::String(s)) => Some(s.as_str().cmp(b.as_str())),
                    _ => None,
                };
                got.is_some_and(|o| o == *want || (*or_equal && o == Ordering::Equal))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_filters_name_the_field_and_the_accepted_forms() {
        let bad = [
            (json!([1]), "a filter is a JSON object"),
            (json!("lang"), "got a string"),
            (json!({"lang": null}), "field `lang` is compared with null"),
            (json!({"lang": ["en"]}), "field `lang` is compared with an array; to accept several values use {\"in\""),
            (json!({"lang": {"eq": "en"}}), "field `lang` has an unknown operator `eq` (accepted operators: in, gt, gte, lt, lte)"),
            (json!({"lang": {}}), "field `lang` has an empty condition"),
            (json!({"lang": {"in": "en"}}), "operator `in` needs an array, got a string"),
            (json!({"lang": {"in": []}}), "operator `in` lists 0 values; 1 to 1024"),
            (json!({"lang": {"in": [{"a": 1}]}}), "operator `in`: is compared with an object"),
            (json!({"year": {"gt": true}}), "field `year` operator `gt` needs a number or a string, got a boolean"),
            (json!({"": 1}), "a field name must not be empty"),
        ];
        for (f, want) in bad {
            let e = Filter::parse(&f).unwrap_err().to_string();
            assert!(e.starts_with("filter: ") && e.contains(want), "{f}: {e}");
            assert!(e.contains("accepted"), "{f}: {e}");
        }
        let many: Map<String, Value> = (0..33).map(|i| (format!("f{i}"), json!(1))).collect();
        let e = Filter::parse(&Value::Object(many)).unwrap_err().to_string();
        assert!(e.contains("33 fields named; at most 32"), "{e}");
    }
}

//! The plugin's configuration (what the operator set with `--set KEY=VALUE` or
//! `llmos plugin configure`, validated against the manifest's `[config]`, defaults filled in),
//! with typed accessors whose errors name the key, the value and what is accepted.

use std::str::FromStr;

use crate::Error;
pub use crate::host::llmos::plugin::config::{get, get_all};

/// The value of `key`, or `default` when it is neither set nor has a default.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_string())
}

/// The value of `key`; an `invalid-input` error naming the key when it has none.
pub fn require(key: &str) -> Result<String, Error> {
    get(key).ok_or_else(|| {
        Error::invalid_input(format!(
            "config {key} is not set: set it with `llmos plugin configure PLUGIN {key}=VALUE`"
        ))
    })
}

/// `key` parsed as `T` (none when unset); an error names the key, the value and the type.
pub fn get_parsed<T>(key: &str) -> Result<Option<T>, Error>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    get(key).map(|v| parse(key, &v)).transpose()
}

/// `key` parsed as `T`, or `default` when unset.
pub fn get_parsed_or<T>(key: &str, default: T) -> Result<T, Error>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    Ok(get_parsed(key)?.unwrap_or(default))
}

fn parse<T>(key: &str, value: &str) -> Result<T, Error>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| {
        Error::invalid_input(format!(
            "config {key} = {value:?}: expected {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

/// `key` as a boolean (`true` or `false`), or `default` when unset.
pub fn get_bool(key: &str, default: bool) -> Result<bool, Error> {
    match get(key) {
        None => Ok(default),
        Some(v) => bool_of(key, &v),
    }
}

fn bool_of(key: &str, value: &str) -> Result<bool, Error> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::invalid_input(format!(
            "config {key} = {value:?}: expected true or false"
        ))),
    }
}

/// `key` as a list (one item per line; items trimmed, empty lines skipped); empty when unset.
pub fn get_list(key: &str) -> Vec<String> {
    get(key).as_deref().map(list_of).unwrap_or_default()
}

fn list_of(value: &str) -> Vec<String> {
    value
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_key_the_value_and_the_type() {
        let e = parse::<u32>("max_len", "ten").unwrap_err();
        let Error::InvalidInput(m) = e else {
            panic!("{e:?}")
        };
        assert!(m.contains("max_len") && m.contains("\"ten\"") && m.contains("u32"), "{m}");
        assert_eq!(parse::<u32>("n", " 12 ").unwrap(), 12);
    }

    #[test]
    fn bools_and_lists() {
        assert!(bool_of("k", "true").unwrap());
        assert!(!bool_of("k", " false").unwrap());
        let Err(Error::InvalidInput(m)) = bool_of("trim", "yes") else {
            panic!()
        };
        assert!(m.contains("trim = \"yes\"") && m.contains("true or false"), "{m}");
        assert_eq!(list_of(" a \n\n b\n"), ["a", "b"]);
    }
}

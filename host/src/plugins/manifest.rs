//! Plugin manifests (`manifest.toml` next to the component). Unknown keys are errors.
//!
//! ```toml
//! name = "pii-redact"            # [a-z][a-z0-9-]{0,63}
//! version = "0.1.0"              # MAJOR.MINOR.PATCH
//! world = "preprocessor"         # preprocessor | policy | integration | tool
//! description = "…"
//! capabilities = ["inference:pii-ner"]
//!
//! [config.replacement]           # the config schema
//! type = "string"                # string | integer | boolean | list (lines)
//! default = "[{kind}]"
//! required = false
//! description = "…"
//!
//! [limits]                       # what the plugin needs; defaults otherwise
//! timeout_ms = 200
//! memory_mib = 32
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PluginError;
use super::limits::LimitsRequest;
use crate::security::CapabilitySet;

/// The worlds of `llmos:plugin@0.1.1` (`tool` is new in 0.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// Transforms inputs.
    Preprocessor,
    /// Allows, denies or modifies requests and responses.
    Policy,
    /// Receives events after the fact.
    Integration,
    /// Offers tools to models and MCP clients (docs/tools.md).
    Tool,
}

impl World {
    /// The world's name in the WIT.
    pub fn name(self) -> &'static str {
        match self {
            World::Preprocessor => "preprocessor",
            World::Policy => "policy",
            World::Integration => "integration",
            World::Tool => "tool",
        }
    }

    /// The functions a component of this world must export.
    pub fn exports(self) -> &'static [&'static str] {
        match self {
            World::Preprocessor => &["preprocess"],
            World::Policy => &["check-request", "check-response"],
            World::Integration => &["on-event"],
            World::Tool => &["tools", "invoke"],
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a config value (all are passed to the plugin as strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigType {
    /// Any text.
    String,
    /// A signed 64-bit integer.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// Several values, one per line (`;` also separates them in operator values).
    List,
}

/// One entry of the config schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigField {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ConfigType,
    /// Value when the operator sets none.
    #[serde(default)]
    pub default: Option<String>,
    /// The operator must set it (a required field has no default).
    #[serde(default)]
    pub required: bool,
    /// For `llmos plugin info`.
    #[serde(default)]
    pub description: String,
}

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Unique name of the plugin.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The world its component targets.
    pub world: World,
    /// One line for `llmos plugin list`.
    #[serde(default)]
    pub description: String,
    /// Capabilities it asks for.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Its configuration schema.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigField>,
    /// What it needs of the per-call limits.
    #[serde(default)]
    pub limits: LimitsRequest,
}

pub(crate) fn valid_plugin_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() <= 64
        && b.first().is_some_and(u8::is_ascii_lowercase)
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

impl Manifest {
    /// Parses and validates TOML text.
    ///
    /// Errors never quote the file: it may be any file an operator (or an admin request)
    /// pointed at, so they say where and what was wrong, not what the text was.
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let at = |e: &toml::de::Error| {
            e.span().map_or_else(String::new, |s| {
                let line = text
                    .get(..s.start)
                    .map_or(0, |b| b.matches('\n').count())
                    .saturating_add(1);
                format!(" at line {line}")
            })
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            PluginError::Manifest(format!(
                "not valid TOML{}: this is not a plugin manifest (TOML with name, version, world, capabilities)",
                at(&e)
            ))
        })?;
        if !table.contains_key("name") || !table.contains_key("world") {
            return Err(PluginError::Manifest(
                "not a plugin manifest: it has no `name` or no `world` key".into(),
            ));
        }
        let m: Manifest = toml::from_str(text)
            .map_err(|e| PluginError::Manifest(format!("{}{}", e.message(), at(&e))))?;
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), PluginError> {
        let bad = |m: String| Err(PluginError::Manifest(m));
        if !valid_plugin_name(&self.name) {
            return bad(format!(
                "name {:?}: expected 1-64 characters a-z, 0-9 and '-', starting with a letter",
                self.name
            ));
        }
        let parts: Vec<&str> = self.version.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
            return bad(format!(
                "version {:?}: expected MAJOR.MINOR.PATCH",
                self.version
            ));
        }
        self.requested()?;
        for (key, f) in &self.config {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return bad(format!("config key {key:?}: use letters, digits and '_'"));
            }
            if f.required && f.default.is_some() {
                return bad(format!(
                    "config.{key}: a required field cannot have a default"
                ));
            }
            if let Some(d) = &f.default {
                check_value(key, f, d).map_err(PluginError::Manifest)?;
            }
        }
        Ok(())
    }

    /// The requested capabilities.
    pub fn requested(&self) -> Result<CapabilitySet, PluginError> {
        CapabilitySet::parse(&self.capabilities).map_err(|e| PluginError::Manifest(e.to_string()))
    }

    /// Checks operator values against the schema and merges them over the defaults.
    pub fn effective_config(
        &self,
        values: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, PluginError> {
        let mut out = BTreeMap::new();
        for (key, v) in values {
            let Some(f) = self.config.get(key) else {
                let accepted: Vec<&str> = self.config.keys().map(String::as_str).collect();
                return Err(PluginError::Config(format!(
                    "plugin {} has no config key {key:?}; accepted: {}",
                    self.name,
                    if accepted.is_empty() {
                        "(none)".to_string()
                    } else {
                        accepted.join(", ")
                    }
                )));
            };
            check_value(key, f, v).map_err(PluginError::Config)?;
            let v = match f.kind {
                // On a command line, `;` separates list items.
                ConfigType::List => v.replace(';', "\n"),
                _ => v.clone(),
            };
            out.insert(key.clone(), v);
        }
        for (key, f) in &self.config {
            if out.contains_key(key) {
                continue;
            }
            match (&f.default, f.required) {
                (Some(d), _) => {
                    out.insert(key.clone(), d.clone());
                }
                (None, true) => {
                    return Err(PluginError::Config(format!(
                        "plugin {} needs config {key} ({}); pass `--set {key}=VALUE` to install, or run `llmos plugin configure {} {key}=VALUE`",
                        self.name, f.description, self.name
                    )));
                }
                (None, false) => {}
            }
        }
        Ok(out)
    }
}

fn check_value(key: &str, f: &ConfigField, v: &str) -> Result<(), String> {
    match f.kind {
        ConfigType::Integer if v.parse::<i64>().is_err() => {
            Err(format!("config {key} = {v:?}: expected an integer"))
        }
        ConfigType::Boolean if v != "true" && v != "false" => {
            Err(format!("config {key} = {v:?}: expected true or false"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
name = "demo"
version = "1.2.3"
world = "policy"
capabilities = ["kv", "http:*"]
[config.max]
type = "integer"
default = "10"
[config.url]
type = "string"
required = true
[limits]
timeout_ms = 50
"#;

    #[test]
    fn parses_and_merges_config() {
        let m = Manifest::parse(OK).unwrap();
        assert_eq!(m.world, World::Policy);
        let mut v = BTreeMap::new();
        let e = m.effective_config(&v).unwrap_err().to_string();
        assert!(e.contains("needs config url"), "{e}");
        v.insert("url".into(), "http://x".into());
        let c = m.effective_config(&v).unwrap();
        assert_eq!(c["max"], "10");
        v.insert("max".into(), "ten".into());
        assert!(
            m.effective_config(&v)
                .unwrap_err()
                .to_string()
                .contains("integer")
        );
        v.remove("max");
        v.insert("mux".into(), "1".into());
        let e = m.effective_config(&v).unwrap_err().to_string();
        assert!(e.contains("accepted: max, url"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let e = Manifest::parse(&format!("{OK}\nextra = 1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("extra"), "{e}");
        let e = Manifest::parse(&OK.replace("timeout_ms", "timeout"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeout"), "{e}");
        let e = Manifest::parse(&OK.replace("\"kv\"", "\"fs:/\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fs:/"), "{e}");
        let e = Manifest::parse(&OK.replace("demo", "Demo!"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("name"), "{e}");
        let e = Manifest::parse(&OK.replace("policy", "filter"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("filter"), "{e}");
    }
}

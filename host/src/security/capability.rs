//! Capabilities: what a plugin may do beyond pure computation.
//!
//! A manifest *requests*, the operator *grants*, and only the intersection is *effective*.
//! Names have a kind and usually a target:
//!
//! | name | allows |
//! |---|---|
//! | `kv` | the plugin's own key-value namespace |
//! | `inference:<model>` | calls to that model (`inference:*` in a manifest: models the operator picks) |
//! | `secret:<name>` | reading that operator-provided secret |
//! | `http:<host>[:<port>]` | outbound HTTP to that host; without a port, 443 (https) or 80 (http) |
//!
//! A `*` target is a request for "whatever the operator grants of this kind"; it is not a grant
//! of everything unless the operator grants `*` explicitly.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A capability name that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid capability {given:?}: {reason}; accepted: kv, inference:<model>, secret:<name>, http:<host>[:<port>] (a target may be *)"
)]
pub struct CapabilityError {
    /// What was given.
    pub given: String,
    /// Why it was refused.
    pub reason: String,
}

/// One capability.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// `kv`
    Kv,
    /// `inference:<model>`; `*` for any.
    Inference(String),
    /// `secret:<name>`; `*` for any.
    Secret(String),
    /// `http:<host>[:<port>]`; host `*` for any. The host is lower-case.
    Http {
        /// Host name or IP literal (IPv6 without brackets), or `*`.
        host: String,
        /// Port; `None` means the scheme's default (443 for https, 80 for http).
        port: Option<u16>,
    },
}

fn valid_name(s: &str) -> bool {
    s == "*"
        || (!s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
}

impl FromStr for Capability {
    type Err = CapabilityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| CapabilityError {
            given: s.into(),
            reason: reason.into(),
        };
        let (kind, target) = match s.split_once(':') {
            Some((k, t)) => (k, Some(t)),
            None => (s, None),
        };
        match (kind, target) {
            ("kv", None) => Ok(Capability::Kv),
            ("kv", Some(_)) => Err(err("kv takes no target")),
            ("inference" | "secret", None) => Err(err("a target is required")),
            ("inference", Some(t)) if valid_name(t) => Ok(Capability::Inference(t.into())),
            ("secret", Some(t)) if valid_name(t) => Ok(Capability::Secret(t.into())),
            ("inference" | "secret", Some(_)) => {
                Err(err("targets use letters, digits, '-', '_' and '.'"))
            }
            ("http", Some(t)) => parse_http(t).ok_or_else(|| err("expected host or host:port")),
            ("http", None) => Err(err("a host is required")),
            _ => Err(err("unknown kind")),
        }
    }
}

fn parse_http(t: &str) -> Option<Capability> {
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        // [v6]:port or [v6]
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        h.parse::<std::net::Ipv6Addr>().ok()?;
        (h.to_string(), port)
    } else {
        let (h, port) = match t.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
            None => (t, None),
        };
        let ok = h == "*"
            || (!h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')));
        if !ok {
            return None;
        }
        (h.to_ascii_lowercase(), port)
    };
    Some(Capability::Http { host, port })
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Kv => f.write_str("kv"),
            Capability::Inference(m) => write!(f, "inference:{m}"),
            Capability::Secret(n) => write!(f, "secret:{n}"),
            Capability::Http { host, port } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                match port {
                    Some(p) => write!(f, "http:{host}:{p}"),
                    None => write!(f, "http:{host}"),
                }
            }
        }
    }
}

impl Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Capability {
    /// Does holding `self` cover `other`? Equal names, or `self` has a `*` target of the same
    /// kind. (`http:h` without a port covers only `http:h` without a port.)
    pub fn covers(&self, other: &Capability) -> bool {
        match (self, other) {
            (Capability::Inference(a), Capability::Inference(_))
            | (Capability::Secret(a), Capability::Secret(_))
                if a == "*" =>
            {
                true
            }
            (Capability::Http { host, port: None }, Capability::Http { .. }) if host == "*" => true,
            _ => self == other,
        }
    }

    /// The kind, e.g. `http` (for messages and the install check).
    pub fn kind(&self) -> &'static str {
        match self {
            Capability::Kv => "kv",
            Capability::Inference(_) => "inference",
            Capability::Secret(_) => "secret",
            Capability::Http { .. } => "http",
        }
    }
}

/// A set of capabilities (requested, granted or effective).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CapabilitySet(BTreeSet<Capability>);

impl CapabilitySet {
    /// Parses names; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, CapabilityError> {
        names.iter().map(|n| n.as_ref().parse()).collect()
    }

    /// The effective set: each granted capability that some requested one covers.
    /// Granted-but-not-requested capabilities are dropped, as are requests nobody granted.
    pub fn effective(requested: &CapabilitySet, granted: &CapabilitySet) -> CapabilitySet {
        granted
            .0
            .iter()
            .filter(|g| requested.0.iter().any(|r| r.covers(g)))
            .cloned()
            .collect()
    }

    /// Does the set hold a capability covering `needed`?
    pub fn allows(&self, needed: &Capability) -> bool {
        self.0.iter().any(|c| c.covers(needed))
    }

    /// May the plugin send HTTP to `host:port`? `default_port` is the scheme's (443/80): a
    /// capability without a port allows only that one.
    pub fn allows_http(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.0.iter().any(|c| match c {
            Capability::Http { host: h, port: p } => {
                (h == "*" || h.eq_ignore_ascii_case(host))
                    && (p.is_none_or(|p| p == port)
                        && (p.is_some() || h == "*" || port == default_port))
            }
            _ => false,
        })
    }

    /// Is any capability of this kind present?
    pub fn has_kind(&self, kind: &str) -> bool {
        self.0.iter().any(|c| c.kind() == kind)
    }

    /// Adds one; returns whether it was new.
    pub fn insert(&mut self, c: Capability) -> bool {
        self.0.insert(c)
    }

    /// Removes one; returns whether it was there.
    pub fn remove(&mut self, c: &Capability) -> bool {
        self.0.remove(c)
    }

    /// Capabilities in `self` that `other` lacks.
    pub fn difference(&self, other: &CapabilitySet) -> CapabilitySet {
        self.0.difference(&other.0).cloned().collect()
    }

    /// Iterates in order.
    pub fn iter(&self) -> impl Iterator<Item = &Capability> {
        self.0.iter()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the set contains exactly this capability.
    pub fn contains(&self, c: &Capability) -> bool {
        self.0.contains(c)
    }
}

impl FromIterator<Capability> for CapabilitySet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Display for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&names.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> CapabilitySet {
        CapabilitySet::parse(names).unwrap()
    }

    #[test]
    fn parse_and_display_round_trip() {
        for n in [
            "kv",
            "inference:minilm",
            "secret:token",
            "http:api.example.com",
            "http:127.0.0.1:8080",
            "http:[::1]:99",
            "http:*",
            "inference:*",
        ] {
            assert_eq!(n.parse::<Capability>().unwrap().to_string(), n);
        }
        for bad in [
            "",
            "kv:x",
            "inference",
            "inference:a b",
            "http:",
            "http:h:99999",
            "fs:/",
        ] {
            let e = bad.parse::<Capability>().unwrap_err();
            assert!(e.to_string().contains("accepted: kv"), "{e}");
        }
    }

    #[test]
    fn effective_is_the_intersection() {
        let requested = set(&["kv", "inference:minilm", "http:*"]);
        let granted = set(&[
            "kv",
            "inference:bert",
            "secret:token",
            "http:hooks.example.com",
        ]);
        let eff = CapabilitySet::effective(&requested, &granted);
        assert_eq!(eff, set(&["kv", "http:hooks.example.com"]));
        // requested, not granted
        assert!(!eff.allows(&"inference:minilm".parse().unwrap()));
        // granted, not requested
        assert!(!eff.allows(&"inference:bert".parse().unwrap()));
        assert!(!eff.allows(&"secret:token".parse().unwrap()));
        // a wildcard request does not grant anything by itself
        assert!(!eff.allows_http("other.example.com", 443, 443));
        assert!(eff.allows_http("HOOKS.example.com", 443, 443));
        assert!(!eff.allows_http("hooks.example.com", 8443, 443));
    }

    #[test]
    fn http_ports() {
        let eff = set(&["http:127.0.0.1:9000", "http:example.com"]);
        assert!(eff.allows_http("127.0.0.1", 9000, 80));
        assert!(!eff.allows_http("127.0.0.1", 9001, 80));
        assert!(eff.allows_http("example.com", 80, 80));
        assert!(!eff.allows_http("example.com", 8080, 80));
    }
}

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
//! | `http:[<scheme>://]<host>[:<port>]` | outbound HTTP to that host (see below) |
//! | `data:<collection>` | searching that data collection (`data.search`, WIT 0.1.1; `data:*` for any) |
//!
//! HTTP grants: without a scheme and a port, `http:host` allows https on 443 only; with a port,
//! `http:host:8443` allows that port (http or https); a scheme prefix (`http:http://host`,
//! `http:https://host:8443`) allows only that scheme, on the given port or the scheme's default.
//! The host may be a name, `*`, an IP address or a CIDR block (`http:10.0.0.0/8`,
//! `http:[fd00::/8]:443`). Whatever the name, the host checks the *resolved* address: loopback,
//! private, link-local (cloud metadata), unique-local, CGNAT, unspecified, broadcast and
//! multicast addresses are refused unless an address or CIDR grant covers them
//! ([`CapabilitySet::allows_addr`]).
//!
//! A `*` target is a request for "whatever the operator grants of this kind"; it is not a grant
//! of everything unless the operator grants `*` explicitly.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A capability name that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid capability {given:?}: {reason}; accepted: kv, inference:<model>, secret:<name>, data:<collection>, http:[http://|https://]<host|ip|cidr>[:<port>] (a target may be *)"
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
    /// `data:<collection>`: searching that collection; `*` for any.
    Data(String),
    /// `http:[<scheme>://]<host>[:<port>]`; host `*` for any. The host is lower-case.
    Http {
        /// Only this scheme; `None`: https, or either scheme when a port is given.
        scheme: Option<HttpScheme>,
        /// Host name, IP literal or CIDR block (IPv6 without brackets), or `*`.
        host: String,
        /// Port; `None` means the scheme's default (443 for https, 80 for http).
        port: Option<u16>,
    },
}

/// The scheme named in an HTTP grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HttpScheme {
    /// Plain `http` (default port 80).
    Http,
    /// `https` (default port 443).
    Https,
}

impl HttpScheme {
    /// The scheme's default port.
    pub fn default_port(self) -> u16 {
        match self {
            HttpScheme::Http => 80,
            HttpScheme::Https => 443,
        }
    }
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
            ("inference" | "secret" | "data", None) => Err(err("a target is required")),
            ("inference", Some(t)) if valid_name(t) => Ok(Capability::Inference(t.into())),
            ("secret", Some(t)) if valid_name(t) => Ok(Capability::Secret(t.into())),
            ("data", Some(t)) if valid_name(t) => Ok(Capability::Data(t.into())),
            ("inference" | "secret" | "data", Some(_)) => {
                Err(err("targets use letters, digits, '-', '_' and '.'"))
            }
            ("http", Some(t)) => parse_http(t).ok_or_else(|| err("expected host or host:port")),
            ("http", None) => Err(err("a host is required")),
            _ => Err(err("unknown kind")),
        }
    }
}

fn parse_http(t: &str) -> Option<Capability> {
    let (scheme, t) = if let Some(r) = t.strip_prefix("https://") {
        (Some(HttpScheme::Https), r)
    } else if let Some(r) = t.strip_prefix("http://") {
        (Some(HttpScheme::Http), r)
    } else {
        (None, t)
    };
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        // [v6]:port, [v6], [v6/len]:port or [v6/len]
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        match h.split_once('/') {
            Some((a, len)) => {
                a.parse::<Ipv6Addr>().ok()?;
                (len.parse::<u8>().ok()? <= 128).then_some(())?;
            }
            None => {
                h.parse::<Ipv6Addr>().ok()?;
            }
        }
        (h.to_ascii_lowercase(), port)
    } else {
        let (h, port) = match t.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
            None => (t, None),
        };
        let ok = if let Some((a, len)) = h.split_once('/') {
            a.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
        } else {
            h == "*"
                || (!h.is_empty()
                    && h.len() <= 253
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')))
        };
        if !ok {
            return None;
        }
        (h.to_ascii_lowercase(), port)
    };
    Some(Capability::Http { scheme, host, port })
}

/// An IP address or CIDR block of a grant's host (`None` for names and `*`).
fn ip_net(host: &str) -> Option<(IpAddr, u8)> {
    match host.split_once('/') {
        Some((a, len)) => Some((a.parse().ok()?, len.parse().ok()?)),
        None => {
            let ip: IpAddr = host.parse().ok()?;
            Some((ip, if ip.is_ipv4() { 32 } else { 128 }))
        }
    }
}

/// Does the block `net/len` contain `ip`?
fn net_contains((net, len): (IpAddr, u8), ip: IpAddr) -> bool {
    match (net, canonical(ip)) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32u32.saturating_sub(u32::from(len)))
                .unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128u32.saturating_sub(u32::from(len)))
                .unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// An IPv4-mapped IPv6 address as IPv4; others unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is refused without an explicit address grant: loopback, private,
/// link-local (which holds the cloud metadata address 169.254.169.254), unique-local, CGNAT,
/// unspecified, broadcast, multicast, documentation. `None` for a public address.
pub fn special_address(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let o = a.octets();
            if a.is_loopback() {
                Some("loopback")
            } else if a.is_private() {
                Some("private")
            } else if a.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared CGNAT")
            } else if o[0] == 0 || a.is_unspecified() {
                Some("unspecified")
            } else if a.is_broadcast() || a.is_multicast() || o[0] >= 240 {
                Some("broadcast, multicast or reserved")
            } else if a.is_documentation() {
                Some("documentation")
            } else {
                None
            }
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            if a.is_loopback() {
                Some("loopback")
            } else if a.is_unspecified() {
                Some("unspecified")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("unique-local")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if a.is_multicast() {
                Some("multicast")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else if s[0] == 0x0064 && s[1] == 0xff9b || s[0] == 0x2002 {
                Some("NAT64/6to4 (may embed a private IPv4 address)")
            } else {
                None
            }
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Kv => f.write_str("kv"),
            Capability::Inference(m) => write!(f, "inference:{m}"),
            Capability::Secret(n) => write!(f, "secret:{n}"),
            Capability::Data(c) => write!(f, "data:{c}"),
            Capability::Http { scheme, host, port } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                let scheme = match scheme {
                    Some(HttpScheme::Http) => "http://",
                    Some(HttpScheme::Https) => "https://",
                    None => "",
                };
                match port {
                    Some(p) => write!(f, "http:{scheme}{host}:{p}"),
                    None => write!(f, "http:{scheme}{host}"),
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
            | (Capability::Data(a), Capability::Data(_))
                if a == "*" =>
            {
                true
            }
            (
                Capability::Http {
                    scheme: None,
                    host,
                    port: None,
                },
                Capability::Http { .. },
            ) if host == "*" => true,
            _ => self == other,
        }
    }

    /// The kind, e.g. `http` (for messages and the install check).
    pub fn kind(&self) -> &'static str {
        match self {
            Capability::Kv => "kv",
            Capability::Inference(_) => "inference",
            Capability::Secret(_) => "secret",
            Capability::Data(_) => "data",
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

    /// May the plugin send HTTP to `host:port` (the name check, before any lookup)? A grant
    /// matches by name (or `*`), or by an address/CIDR containing an IP-literal `host`, and by
    /// scheme and port ([`Capability::Http`]).
    pub fn allows_http(&self, scheme: HttpScheme, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let literal = host.parse::<IpAddr>().ok();
        self.http_grants(scheme, port).any(|h| {
            h == "*"
                || h.eq_ignore_ascii_case(host)
                || literal.is_some_and(|ip| ip_net(h).is_some_and(|n| net_contains(n, ip)))
        })
    }

    /// May the plugin connect to the resolved address `ip` on `port`? Public addresses: yes;
    /// special ones ([`special_address`]) only under an address or CIDR grant that covers them.
    pub fn allows_addr(&self, scheme: HttpScheme, ip: IpAddr, port: u16) -> bool {
        special_address(ip).is_none()
            || self
                .http_grants(scheme, port)
                .any(|h| ip_net(h).is_some_and(|n| net_contains(n, ip)))
    }

    /// Hosts of the HTTP grants that allow this scheme and port.
    fn http_grants(&self, scheme: HttpScheme, port: u16) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(move |c| match c {
            Capability::Http {
                scheme: s,
                host,
                port: p,
            } => {
                let ok = match (s, p) {
                    (Some(s), p) => *s == scheme && p.unwrap_or(s.default_port()) == port,
                    (None, Some(p)) => *p == port,
                    // no scheme, no port: https on 443 (`*`: https on any port)
                    (None, None) => scheme == HttpScheme::Https && (host == "*" || port == 443),
                };
                ok.then_some(host.as_str())
            }
            _ => None,
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
            "data:docs",
            "data:*",
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
            "data",
            "data:a/b",
        ] {
            let e = bad.parse::<Capability>().unwrap_err();
            assert!(e.to_string().contains("accepted: kv"), "{e}");
        }
    }

    #[test]
    fn data_grants_cover_their_collection_or_any() {
        let docs: Capability = "data:docs".parse().unwrap();
        let any: Capability = "data:*".parse().unwrap();
        assert!(any.covers(&docs) && docs.covers(&docs));
        assert!(!docs.covers(&"data:other".parse().unwrap()));
        assert!(!"secret:*".parse::<Capability>().unwrap().covers(&docs));
        assert_eq!(docs.kind(), "data");
        let eff = CapabilitySet::effective(&set(&["data:*"]), &set(&["data:docs"]));
        assert!(eff.allows(&docs) && !eff.allows(&"data:hr".parse().unwrap()));
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
        assert!(!eff.allows_http(HttpScheme::Https, "other.example.com", 443));
        assert!(eff.allows_http(HttpScheme::Https, "HOOKS.example.com", 443));
        assert!(!eff.allows_http(HttpScheme::Https, "hooks.example.com", 8443));
    }

    #[test]
    fn http_ports_and_schemes() {
        use HttpScheme::{Http, Https};
        let eff = set(&[
            "http:127.0.0.1:9000",
            "http:example.com",
            "http:http://plain.test",
        ]);
        assert!(eff.allows_http(Http, "127.0.0.1", 9000));
        assert!(!eff.allows_http(Http, "127.0.0.1", 9001));
        // no port, no scheme: https on 443 only, never plain http on 80
        assert!(eff.allows_http(Https, "example.com", 443));
        assert!(!eff.allows_http(Http, "example.com", 80));
        assert!(!eff.allows_http(Https, "example.com", 8080));
        // an explicit scheme
        assert!(eff.allows_http(Http, "plain.test", 80));
        assert!(!eff.allows_http(Https, "plain.test", 443));
    }

    #[test]
    fn resolved_addresses() {
        use HttpScheme::Https;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let eff = set(&["http:*", "http:10.0.0.0/8:8443", "http:[fd00::/8]:443"]);
        for bad in [
            "127.0.0.1",
            "169.254.169.254",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "fe80::1",
            "fc00::1",
            "::",
        ] {
            assert!(special_address(ip(bad)).is_some(), "{bad}");
            assert!(!eff.allows_addr(Https, ip(bad), 443), "{bad}");
        }
        assert!(eff.allows_addr(Https, ip("93.184.216.34"), 443));
        assert!(eff.allows_addr(Https, ip("10.1.2.3"), 8443));
        assert!(!eff.allows_addr(Https, ip("10.1.2.3"), 443));
        assert!(eff.allows_addr(Https, ip("fd00::5"), 443));
        assert!(eff.allows_http(Https, "10.9.9.9", 8443));
        assert!(!eff.allows_http(HttpScheme::Http, "10.9.9.9", 80));
        for n in [
            "http:10.0.0.0/8",
            "http:[fd00::/8]:443",
            "http:https://h:8443",
            "http:http://h",
        ] {
            assert_eq!(n.parse::<Capability>().unwrap().to_string(), n);
        }
        for bad in ["http:10.0.0.0/33", "http:h/8", "http:ftp://h"] {
            assert!(bad.parse::<Capability>().is_err(), "{bad}");
        }
    }
}

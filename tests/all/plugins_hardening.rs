//! Hardening of the plugin sandbox (issue 10, items 6–9 and 12): outbound HTTP checked on the
//! resolved address, limits raised by a manifest need the operator's approval, revocation
//! racing a first load, bounded wasi resource tables, output and log limits.

use std::sync::atomic::Ordering;

use llmos::plugins::PluginHost;
use llmos::plugins::registry;

use crate::plugins_common::{host, install, request, serve};

const PROBE: &str = "testing/probe";

fn probe(host: &PluginHost, name: &str, cmds: &[&str]) -> Vec<String> {
    host.preprocess(name, request(cmds)).unwrap()
}

fn audit_details(host: &PluginHost) -> Vec<String> {
    host.audit()
        .records()
        .unwrap()
        .into_iter()
        .map(|r| r.detail)
        .collect()
}

/// item 9: a granted *name* that resolves to loopback is refused, naming the resolved address
/// and the grant that would allow it; the explicit address grant works.
#[test]
fn granted_name_resolving_to_loopback_is_refused() {
    let (_d, host) = host();
    let server = serve();
    let port = server.addr.port();
    let p = install(&host, PROBE, &[&format!("http:localhost:{port}")], &[]);
    let cmd = format!("http http://localhost:{port}/x");
    assert_eq!(
        probe(&host, &p, &[&cmd]),
        ["err:http:ErrorCode::DestinationIpProhibited"]
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    let details = audit_details(&host);
    let refusal = details
        .iter()
        .find(|d| d.contains("resolved to"))
        .unwrap_or_else(|| panic!("no refusal in the audit log: {details:?}"));
    assert!(refusal.contains("127.0.0.1"), "{refusal}");
    assert!(refusal.contains("loopback"), "{refusal}");
    assert!(
        refusal.contains(&format!("llmos plugin grant {p} http:127.0.0.1:{port}")),
        "{refusal}"
    );

    // The explicit address grant reaches the test server (by address, and by the name).
    registry::grant(&host, &p, &[format!("http:127.0.0.1:{port}")]).unwrap();
    let direct = format!("http http://127.0.0.1:{port}/x");
    assert_eq!(probe(&host, &p, &[&direct, &cmd]), ["ok:200", "ok:200"]);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

/// item 9: a wildcard host grant never reaches loopback or the metadata address; a CIDR
/// grant does, on its own port and scheme.
#[test]
fn wildcard_grants_skip_special_addresses_cidr_grants_reach_them() {
    let (_d, host) = host();
    let server = serve();
    let port = server.addr.port();
    let p = install(
        &host,
        PROBE,
        &[&format!("http:*:{port}"), "http:http://*"],
        &[],
    );
    let local = format!("http http://127.0.0.1:{port}/");
    assert_eq!(
        probe(
            &host,
            &p,
            &[&local, "http http://169.254.169.254/latest/meta-data/"]
        ),
        [
            "err:http:ErrorCode::DestinationIpProhibited",
            "err:http:ErrorCode::DestinationIpProhibited"
        ]
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);

    // A CIDR without a port is https on 443: plain http to the test port is not covered.
    registry::grant(&host, &p, &["http:127.0.0.0/8".to_string()]).unwrap();
    assert_eq!(
        probe(&host, &p, &[&local]),
        ["err:http:ErrorCode::DestinationIpProhibited"]
    );
    registry::grant(&host, &p, &[format!("http:127.0.0.0/8:{port}")]).unwrap();
    assert_eq!(probe(&host, &p, &[&local]), ["ok:200"]);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

/// item 9: a grant without a port or scheme is https on 443 only: plain http on 80 is denied
/// before any lookup or connection.
#[test]
fn portless_grant_does_not_allow_plain_http() {
    let (_d, host) = host();
    let p = install(&host, PROBE, &["http:example.com"], &[]);
    assert_eq!(
        probe(&host, &p, &["http http://example.com/"]),
        ["err:http:ErrorCode::HttpRequestDenied"]
    );
    let details = audit_details(&host);
    assert!(
        details
            .iter()
            .any(|d| d.contains("http:http://example.com:80")),
        "{details:?}"
    );
}

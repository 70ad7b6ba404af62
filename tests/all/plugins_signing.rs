//! Signed plugins through the real binary: `plugin keygen`, `plugin sign`, `plugin publisher
//! add|list|revoke`, and the checks of `plugin install` / `plugin upgrade` (tampered
//! component, tampered manifest, unknown key, revoked publisher, `require_signature`).

use std::path::{Path, PathBuf};

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, text};

/// Runs `llmos ARGS`; returns success and stdout + stderr.
fn run(home: &Home, args: &[&str]) -> (bool, String) {
    let out = home.cmd(args).output().unwrap();
    (out.status.success(), text(&out))
}

fn ok(home: &Home, args: &[&str]) -> String {
    let (ok, out) = run(home, args);
    assert!(ok, "llmos {args:?} failed:\n{out}");
    out
}

fn refused(home: &Home, args: &[&str]) -> String {
    let (ok, out) = run(home, args);
    assert!(!ok, "llmos {args:?} should fail:\n{out}");
    out
}

/// A folder with the probe's component and manifest, as an author has them.
fn project(home: &Home) -> (PathBuf, PathBuf) {
    let dir = home.dir.path().join("project");
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("probe.wasm");
    let m = dir.join("manifest.toml");
    std::fs::copy(wasm("testing/probe"), &c).unwrap();
    std::fs::copy(manifest("testing/probe"), &m).unwrap();
    (c, m)
}

/// Makes a key; returns (key file, public key, key id) as `keygen` printed them.
fn keygen(home: &Home, name: &str) -> (PathBuf, String, String) {
    let path = home.dir.path().join(format!("{name}.pem"));
    let out = ok(home, &["plugin", "keygen", "--out", s(&path)]);
    let field = |label: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} in:\n{out}"))
            .trim()
            .to_string()
    };
    let (pk, id) = (field("public key"), field("key id"));
    assert!(pk.starts_with("ed25519:"), "{out}");
    (path, pk, id)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sign(home: &Home, c: &Path, m: &Path, key: &Path) {
    ok(
        home,
        &["plugin", "sign", s(c), "--manifest", s(m), "--key", s(key)],
    );
}

fn install(home: &Home, c: &Path, m: &Path) -> (bool, String) {
    run(home, &["plugin", "install", s(c), "--manifest", s(m)])
}

fn installed(home: &Home) -> String {
    ok(home, &["plugin", "list"])
}

#[test]
fn a_signed_plugin_installs_with_its_publisher_shown_and_kept() {
    let home = Home::new();
    let (c, m) = project(&home);
    let (key, pk, id) = keygen(&home, "acme");
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(key_text.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key must be owner-only");
    }
    ok(&home, &["plugin", "publisher", "add", "acme", &pk]);
    sign(&home, &c, &m, &key);
    let sig: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.with_extension("wasm.sig")).unwrap()).unwrap();
    assert_eq!(sig["key_id"], id.as_str());
    assert_eq!(sig["public_key"], pk.as_str());
    // No --signature: COMPONENT.wasm.sig is found next to the component.
    let (good, out) = install(&home, &c, &m);
    assert!(good, "{out}");
    let want = format!("signature publisher acme ({id})");
    assert!(out.contains(&want), "install report lacks {want:?}:\n{out}");
    let info = ok(&home, &["plugin", "info", "test-probe"]);
    assert!(info.contains(&format!("publisher acme ({id})")), "{info}");
    let list = ok(&home, &["plugin", "publisher", "list"]);
    assert!(
        list.contains("acme") && list.contains("trusted") && list.contains(&pk),
        "{list}"
    );
    // Nothing secret in the store: the private key never leaves its file.
    let audit = ok(&home, &["plugin", "audit"]);
    assert!(audit.contains("publisher-added"), "{audit}");
    assert!(!audit.contains(key_text.lines().nth(1).unwrap()), "{audit}");
}

#[test]
fn tampered_component_or_manifest_is_refused_naming_which_even_when_not_required() {
    let home = Home::new();
    let (c, m) = project(&home);
    let (key, pk, _) = keygen(&home, "acme");
    ok(&home, &["plugin", "publisher", "add", "acme", &pk]);
    sign(&home, &c, &m, &key);
    let sig = c.with_extension("wasm.sig");

    // Another (valid) component under the signed name: the signature no longer matches.
    let other = home.dir.path().join("project/other.wasm");
    std::fs::copy(wasm("testing/echo"), &other).unwrap();
    std::fs::copy(&sig, other.with_extension("wasm.sig")).unwrap();
    let (good, out) = install(&home, &other, &m);
    assert!(!good, "{out}");
    assert!(
        out.contains("plugin test-probe refused: bad signature")
            && out.contains("the component changed after signing"),
        "{out}"
    );

    // The manifest edited after signing (a capability added).
    let text = std::fs::read_to_string(&m).unwrap();
    let edited = home.dir.path().join("project/edited.toml");
    std::fs::write(
        &edited,
        text.replace("capabilities = [", "capabilities = [\"secret:admin\", "),
    )
    .unwrap();
    let (good, out) = install(&home, &c, &edited);
    assert!(!good, "{out}");
    assert!(out.contains("the manifest changed after signing"), "{out}");
    assert!(!out.contains("the component changed"), "{out}");

    // A signature file that is not one.
    let junk = home.dir.path().join("junk.sig");
    std::fs::write(&junk, "not json").unwrap();
    let out = refused(
        &home,
        &[
            "plugin",
            "install",
            s(&c),
            "--manifest",
            s(&m),
            "--signature",
            s(&junk),
        ],
    );
    assert!(out.contains("invalid signature file"), "{out}");
    assert!(installed(&home).contains("no plugins installed"));
}

#[test]
fn an_unknown_key_is_refused_when_signatures_are_required_and_shown_otherwise() {
    let home = Home::new();
    let (c, m) = project(&home);
    let (key, _, id) = keygen(&home, "stranger");
    sign(&home, &c, &m, &key);
    let config = home.dir.path().join("llmos.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{base}\n[plugins]\nrequire_signature = true\n"),
    )
    .unwrap();
    let (good, out) = install(&home, &c, &m);
    assert!(!good, "{out}");
    assert!(
        out.contains(&format!("signed by key {id}"))
            && out.contains("not a trusted publisher's")
            && out.contains("llmos plugin publisher add NAME ed25519:"),
        "{out}"
    );
    std::fs::write(&config, base).unwrap();
    let (good, out) = install(&home, &c, &m);
    assert!(good, "{out}");
    assert!(
        out.contains(&format!(
            "signed by unknown key {id} (not a trusted publisher)"
        )),
        "{out}"
    );
}

#[test]
fn a_revoked_publisher_is_refused_and_stays_recorded() {
    let home = Home::new();
    let (c, m) = project(&home);
    let (key, pk, id) = keygen(&home, "acme");
    ok(&home, &["plugin", "publisher", "add", "acme", &pk]);
    sign(&home, &c, &m, &key);
    let out = ok(&home, &["plugin", "publisher", "revoke", "acme"]);
    assert!(out.contains("revoked"), "{out}");
    let (good, out) = install(&home, &c, &m);
    assert!(!good, "{out}");
    assert!(
        out.contains(&format!(
            "signed by publisher acme (key {id}), which was revoked"
        )),
        "{out}"
    );
    let list = ok(&home, &["plugin", "publisher", "list"]);
    assert!(list.contains("acme") && list.contains("revoked"), "{list}");
    // The revoked key cannot come back under another name.
    let out = refused(&home, &["plugin", "publisher", "add", "acme2", &pk]);
    assert!(
        out.contains("already recorded as publisher acme (revoked)"),
        "{out}"
    );
    let audit = ok(&home, &["plugin", "audit"]);
    assert!(audit.contains("publisher-revoked"), "{audit}");
    assert!(installed(&home).contains("no plugins installed"));
}

#[test]
fn require_signature_refuses_unsigned_and_a_plugin_is_pinned_to_its_publisher() {
    let home = Home::new();
    let (c, m) = project(&home);
    let config = home.dir.path().join("llmos.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{base}\n[plugins]\nrequire_signature = true\n"),
    )
    .unwrap();
    let (good, out) = install(&home, &c, &m);
    assert!(!good, "{out}");
    assert!(
        out.contains("it is unsigned and [plugins] require_signature is on"),
        "{out}"
    );

    let (a_key, a_pk, a_id) = keygen(&home, "acme");
    let (b_key, b_pk, b_id) = keygen(&home, "beta");
    ok(&home, &["plugin", "publisher", "add", "acme", &a_pk]);
    ok(&home, &["plugin", "publisher", "add", "beta", &b_pk]);
    sign(&home, &c, &m, &a_key);
    let (good, out) = install(&home, &c, &m);
    assert!(good, "{out}");

    // Version 0.2.0 signed by the other trusted publisher: the plugin is pinned to acme, so
    // it is refused naming both, unless the operator allows the change.
    let dir = home.dir.path().join("v2");
    std::fs::create_dir_all(&dir).unwrap();
    let (c2, m2) = (dir.join("probe.wasm"), dir.join("manifest.toml"));
    std::fs::copy(&c, &c2).unwrap();
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m2,
        text.replace("version = \"0.1.0\"", "version = \"0.2.0\""),
    )
    .unwrap();
    let up = [
        "plugin",
        "upgrade",
        "test-probe",
        s(&c2),
        "--manifest",
        s(&m2),
    ];
    let out = refused(&home, &up);
    assert!(out.contains("unsigned"), "{out}");
    sign(&home, &c2, &m2, &b_key);
    let out = refused(&home, &up);
    assert!(
        out.contains(&format!(
            "plugin test-probe refused: the installed version 0.1.0 is from publisher acme \
             ({a_id}), this version is from publisher beta ({b_id})"
        )) && out.contains("--allow-publisher-change"),
        "{out}"
    );
    let info = ok(&home, &["plugin", "info", "test-probe"]);
    assert!(info.contains(&format!("publisher acme ({a_id})")), "{info}");
    let mut allowed = up.to_vec();
    allowed.push("--allow-publisher-change");
    let out = ok(&home, &allowed);
    assert!(
        out.contains(&format!(
            "signer changed: publisher acme ({a_id}) -> publisher beta ({b_id})"
        )),
        "{out}"
    );
    let info = ok(&home, &["plugin", "info", "test-probe"]);
    assert!(
        info.contains("0.2.0") && info.contains(&format!("publisher beta ({b_id})")),
        "{info}"
    );
}

#[test]
fn the_admin_api_install_checks_the_signature_file_it_names() {
    use crate::support::{call, create_key};
    let home = Home::new();
    let (c, m) = project(&home);
    let (key, pk, id) = keygen(&home, "acme");
    ok(&home, &["plugin", "publisher", "add", "acme", &pk]);
    sign(&home, &c, &m, &key);
    // A signature of another file, kept aside: naming it must refuse the install.
    let other = home.dir.path().join("other.wasm");
    std::fs::copy(wasm("testing/echo"), &other).unwrap();
    sign(&home, &other, &m, &key);
    let admin = create_key(&home, &["admin"]);
    let srv = home.serve(&["--models", "minilm"]);
    let body = |sig: &Path| serde_json::json!({"path": c, "manifest": m, "signature": sig});
    let (code, bad) = call(
        &srv,
        "POST",
        "/admin/plugins",
        Some(&admin),
        Some(body(&other.with_extension("wasm.sig"))),
    );
    assert_eq!(code, 400, "{bad}");
    let msg = bad["error"]["message"].as_str().unwrap();
    assert!(msg.contains("the component changed after signing"), "{bad}");
    let (code, made) = call(
        &srv,
        "POST",
        "/admin/plugins",
        Some(&admin),
        Some(body(&c.with_extension("wasm.sig"))),
    );
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["plugin"]["signature"]["publisher"], "acme", "{made}");
    assert_eq!(made["plugin"]["signature"]["key_id"], id.as_str(), "{made}");
}

#[test]
fn signing_publishers_and_plugin_test_work_while_serving() {
    // The same operator commands with `llmos serve` holding the store: they go over the
    // admin socket, and a signed install carries its signature there.
    let home = Home::new();
    let (c, m) = project(&home);
    let (key, pk, id) = keygen(&home, "acme");
    sign(&home, &c, &m, &key);
    let _s = home.serve(&["--models", "minilm"]);
    let out = ok(&home, &["plugin", "publisher", "add", "acme", &pk]);
    assert!(
        out.contains(&format!("publisher acme added (key {id})")),
        "{out}"
    );
    let (good, out) = install(&home, &c, &m);
    assert!(good, "{out}");
    assert!(
        out.contains(&format!("signature publisher acme ({id})")),
        "the signature did not travel with the upload:\n{out}"
    );
    // A tampered component is refused by the server as it is locally.
    let bad = home.dir.path().join("project").join("bad.wasm");
    let mut bytes = std::fs::read(&c).unwrap();
    bytes.extend_from_slice(b"\0\0\0\0");
    std::fs::write(&bad, &bytes).unwrap();
    std::fs::copy(c.with_extension("wasm.sig"), bad.with_extension("wasm.sig")).unwrap();
    let e = refused(
        &home,
        &[
            "plugin",
            "upgrade",
            "test-probe",
            s(&bad),
            "--manifest",
            s(&m),
        ],
    );
    assert!(e.contains("the component changed after signing"), "{e}");
    // The plugin is pinned to acme over the socket too: an unsigned upgrade is refused
    // naming the publisher; --allow-publisher-change travels with the upload.
    let plain = home.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let c3 = plain.join("probe.wasm");
    std::fs::copy(&c, &c3).unwrap();
    let up = [
        "plugin",
        "upgrade",
        "test-probe",
        s(&c3),
        "--manifest",
        s(&m),
    ];
    let e = refused(&home, &up);
    assert!(
        e.contains(&format!(
            "is from publisher acme ({id}), this version is unsigned"
        )),
        "{e}"
    );
    let mut allowed = up.to_vec();
    allowed.push("--allow-publisher-change");
    let out = ok(&home, &allowed);
    assert!(
        out.contains(&format!(
            "signer changed: publisher acme ({id}) -> unsigned"
        )),
        "{out}"
    );

    // plugin test runs in the server, with its models and the plugin's grants.
    ok(
        &home,
        &["plugin", "grant", "test-probe", "kv", "inference:minilm"],
    );
    let out = home
        .cmd(&[
            "plugin",
            "test",
            "test-probe",
            "--json",
            "--input",
            "kv.set k v",
            "--input",
            "embed minilm hi",
            "--input",
            "secret token",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["result"],
        serde_json::json!(["ok:()", "ok:384", "err:denied:secret:token"]),
        "{r:#}"
    );
    assert_eq!(r["trace"]["denied"], serde_json::json!(["secret:token"]));
    let out = ok(&home, &["plugin", "publisher", "revoke", "acme"]);
    assert!(out.contains("publisher acme revoked"), "{out}");
    let list = ok(&home, &["plugin", "publisher", "list"]);
    assert!(list.contains("acme") && list.contains("revoked"), "{list}");
    let audit = ok(&home, &["plugin", "audit"]);
    assert!(audit.contains("publisher-revoked"), "{audit}");
}

//! Installed plugins: install, upgrade, grant, revoke, enable, disable, configure, secrets,
//! remove, list, info. The CLI (`llmos plugin …`) and, later, the HTTP admin API call these
//! functions; they print nothing.
//!
//! Components live in `<home>/plugins/<name>/<sha256>.wasm`; the record (manifest, digest,
//! grants, config, enabled) is a sealed JSON document in the store's `plugins` tree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wasmtime::component::types::ComponentItem;

use super::PluginError;
use super::engine::sha256_hex;
use super::host::{PluginHost, Pre};
use super::limits::{Limits, LimitsRequest};
use super::manifest::{Manifest, World};
use super::state::{PluginCtx, secret_key};
use crate::data::{Store, Tree};
use crate::security::audit::now_ms;
use crate::security::signing::{self, SigningError, Subject};
use crate::security::{Capability, CapabilitySet};

/// What the store keeps about an installed plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// The manifest it was installed with.
    pub manifest: Manifest,
    /// sha256 of the component.
    pub sha256: String,
    /// Size of the component, bytes.
    pub size: u64,
    /// Capabilities the operator granted (only those also requested are effective).
    pub granted: CapabilitySet,
    /// Whether calls are allowed.
    pub enabled: bool,
    /// Config values the operator set (defaults are not stored).
    pub config: BTreeMap<String, String>,
    /// When it was installed or last upgraded (ms since the Unix epoch).
    pub installed_at_ms: u64,
    /// The operator's overrides of the manifest's limits.
    #[serde(default)]
    pub limits: LimitsRequest,
    /// Host interfaces the component imports although its manifest requests no capability
    /// of their kind (whole-world toolchains import them all): every call to them is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_imports: Vec<DeniedImport>,
    /// Who signed this version (`None`: unsigned). See `llmos plugin sign`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignedBy>,
    /// A `tool` plugin's tools, as its `tools()` returned them at install or upgrade (and the
    /// host validated them). Empty for the other worlds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolEntry>,
}

/// One tool of a `tool` plugin, as kept in its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolEntry {
    /// Its name (the tool's id in the catalogue, `tools:<name>` in a key's scopes).
    pub name: String,
    /// For the model.
    pub description: String,
    /// The JSON Schema (an object schema) of its arguments.
    pub parameters: serde_json::Value,
}

/// Longest tool description, bytes.
pub const MAX_TOOL_DESCRIPTION: usize = 1024;

/// Whether `n` is a valid tool name: `^[a-z0-9][a-z0-9_-]{0,63}$` without `__`.
pub fn valid_tool_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b.first().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
        && !n.contains("__")
}

/// Checks the tools a component offers (docs/tools.md §2): at least one; names valid and
/// unique, here and among the tools of every other installed plugin; descriptions at most
/// [`MAX_TOOL_DESCRIPTION`] bytes; parameters an object schema in the structured-output
/// subset. The error names the tool and the rule.
pub fn check_tools(
    plugin: &str,
    specs: Vec<super::bindings::types::ToolSpec>,
    installed: &[PluginRecord],
) -> Result<Vec<ToolEntry>, PluginError> {
    let bad = |m: String| PluginError::Invalid(format!("plugin {plugin}: {m}"));
    if specs.is_empty() {
        return Err(bad(
            "its tools() returned no tool; a tool plugin offers at least one".into(),
        ));
    }
    let mut out: Vec<ToolEntry> = Vec::with_capacity(specs.len());
    for t in specs {
        let name = t.name;
        if !valid_tool_name(&name) {
            return Err(bad(format!(
                "tool name {name:?} is not accepted: names match ^[a-z0-9][a-z0-9_-]{{0,63}}$ and do not contain \"__\""
            )));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(bad(format!("it offers tool {name:?} twice; tool names are unique")));
        }
        if let Some(other) = installed
            .iter()
            .find(|r| r.manifest.name != plugin && r.tools.iter().any(|o| o.name == name))
        {
            return Err(bad(format!(
                "tool {name:?} is already offered by installed plugin {}; tool names are unique across plugins",
                other.manifest.name
            )));
        }
        if t.description.len() > MAX_TOOL_DESCRIPTION {
            return Err(bad(format!(
                "tool {name:?}'s description is {} bytes; at most {MAX_TOOL_DESCRIPTION} are accepted",
                t.description.len()
            )));
        }
        let parameters: serde_json::Value = serde_json::from_str(&t.parameters_json).map_err(|e| {
            bad(format!("tool {name:?}'s parameters-json is not JSON: {e}"))
        })?;
        if parameters.get("type").and_then(serde_json::Value::as_str) != Some("object") {
            return Err(bad(format!(
                "tool {name:?}'s parameters-json must be an object schema ({{\"type\": \"object\", \"properties\": {{…}}}})"
            )));
        }
        crate::core::generate::grammar::Grammar::compile(&parameters).map_err(|e| {
            bad(format!(
                "tool {name:?}'s parameters-json is outside the structured-output subset (docs/generation.md): {e}"
            ))
        })?;
        out.push(ToolEntry {
            name,
            description: t.description,
            parameters,
        });
    }
    Ok(out)
}

/// For a `tool` component: calls its `tools()` once under the manifest's limits and the
/// grants it will have, and checks them ([`check_tools`]). Empty for other worlds.
fn component_tools(
    host: &PluginHost,
    manifest: &Manifest,
    pre: Pre,
    granted: &CapabilitySet,
    config: &BTreeMap<String, String>,
) -> Result<Vec<ToolEntry>, PluginError> {
    if manifest.world != World::Tool {
        return Ok(Vec::new());
    }
    let requested = manifest.requested()?;
    let mut limits = Limits::from_request(&manifest.limits);
    limits.memory_mib = limits
        .memory_mib
        .min(host.inner.settings.engine.max_memory_mib);
    let ctx = PluginCtx {
        name: manifest.name.clone(),
        effective: CapabilitySet::effective(&requested, granted),
        requested,
        config: manifest.effective_config(config)?,
        limits,
    };
    let specs = host.component_tools(ctx, pre)?;
    check_tools(&manifest.name, specs, &list(host.store())?)
}

/// The verified signer of an installed version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedBy {
    /// The trusted publisher owning the key; `None` for a valid signature by a key no
    /// publisher has (accepted only while `[plugins] require_signature` is off).
    pub publisher: Option<String>,
    /// The key id.
    pub key_id: String,
    /// The public key, `ed25519:<base64>`.
    pub public_key: String,
}

impl std::fmt::Display for SignedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.publisher {
            Some(p) => write!(f, "publisher {p} ({})", self.key_id),
            None => write!(
                f,
                "signed by unknown key {} (not a trusted publisher)",
                self.key_id
            ),
        }
    }
}

/// How a record's signature reads: its signer, or `unsigned`.
pub fn signature_line(r: &PluginRecord) -> String {
    r.signature
        .as_ref()
        .map_or_else(|| "unsigned".to_string(), ToString::to_string)
}

/// An interface a component imports without requesting its capability kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeniedImport {
    /// The import, e.g. `llmos:plugin/kv@0.1.0`.
    pub import: String,
    /// The capability kind it needs: `kv`, `inference`, `secret`, `data` or `http`.
    pub capability: String,
}

impl std::fmt::Display for DeniedImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (the manifest requests no {} capability: every call is denied)",
            self.import, self.capability
        )
    }
}

impl PluginRecord {
    /// Reads a record.
    pub fn get(store: &Store, name: &str) -> Result<Self, PluginError> {
        store
            .get_json(Tree::Plugins, name.as_bytes())?
            .ok_or_else(|| PluginError::NotInstalled(name.into()))
    }

    fn put(&self, store: &Store) -> Result<(), PluginError> {
        Ok(store.put_json(Tree::Plugins, self.manifest.name.as_bytes(), self)?)
    }

    /// Where its component is stored.
    pub fn component_path(&self, home: &Path) -> PathBuf {
        home.join("plugins")
            .join(&self.manifest.name)
            .join(format!("{}.wasm", self.sha256))
    }

    /// The per-call limits: the manifest's request, then the operator's overrides.
    pub fn limits(&self) -> Limits {
        Limits::from_request(&self.manifest.limits).with_overrides(&self.limits)
    }

    /// Requested ∩ granted.
    pub fn effective(&self) -> CapabilitySet {
        match self.manifest.requested() {
            Ok(r) => CapabilitySet::effective(&r, &self.granted),
            Err(_) => CapabilitySet::default(),
        }
    }
}

/// Folder of the data location where the admin API writes uploaded components and
/// manifests (one private folder per request, removed after it). Files there are exempt from
/// `[plugins] install_root`, which confines paths to files already on the server.
pub const UPLOADS: &str = "plugin-uploads";

/// Whether `path` (canonical) is an upload the admin API wrote (see [`UPLOADS`]).
fn is_upload(host: &PluginHost, path: &Path) -> bool {
    host.home()
        .join(UPLOADS)
        .canonicalize()
        .is_ok_and(|dir| path.starts_with(dir))
}

/// What to install or upgrade from.
#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    /// The component (`.wasm`).
    pub component: PathBuf,
    /// The manifest; default `manifest.toml` next to the component, else `<stem>.toml`.
    pub manifest: Option<PathBuf>,
    /// Capabilities to grant now.
    pub grants: Vec<String>,
    /// Expected sha256 of the component (hex); a mismatch refuses the install.
    pub sha256: Option<String>,
    /// Config values to set.
    pub config: BTreeMap<String, String>,
    /// The operator approves the manifest's limits above the host's defaults (without it such
    /// an install or upgrade is refused, listing each raised limit).
    pub approve_limits: bool,
    /// The signature file (`llmos plugin sign`); default `<component>.sig` when it exists.
    pub signature: Option<PathBuf>,
}

/// The outcome of an install or upgrade.
#[derive(Debug, Clone)]
pub struct InstallReport {
    /// The stored record.
    pub record: PluginRecord,
    /// Version before an upgrade.
    pub previous_version: Option<String>,
    /// Capabilities the new version requests that the old one did not (not granted).
    pub added: CapabilitySet,
    /// Capabilities the old version requested that the new one does not (grants dropped).
    pub removed: CapabilitySet,
    /// Requested capabilities still not granted: the plugin will be denied them.
    pub ungranted: CapabilitySet,
    /// Grants that the manifest does not request (kept, but never effective).
    pub unrequested: CapabilitySet,
    /// Limits the manifest raises above the host's defaults (approved by the operator).
    pub raised_limits: Vec<super::limits::RaisedLimit>,
    /// On upgrade, when the signer differs from the previous version's: `old -> new`.
    pub signer_change: Option<String>,
}

/// Refuses a manifest that raises limits above the defaults unless the operator approved.
fn check_limits(manifest: &Manifest, approved: bool) -> Result<(), PluginError> {
    let raised = manifest.limits.raised();
    if raised.is_empty() || approved {
        return Ok(());
    }
    let raised: Vec<String> = raised.iter().map(ToString::to_string).collect();
    Err(PluginError::LimitsNotApproved {
        plugin: manifest.name.clone(),
        raised: raised.join(", "),
    })
}

/// Reads the component and the manifest and checks everything that needs no engine.
fn read_inputs(
    host: &PluginHost,
    req: &InstallRequest,
) -> Result<(Vec<u8>, String, Manifest, String), PluginError> {
    let settings = &host.inner.settings;
    let path = req
        .component
        .canonicalize()
        .map_err(|e| PluginError::Invalid(format!("component {}: {e}", req.component.display())))?;
    if let Some(root) = &settings.install_root
        && !is_upload(host, &path)
    {
        confine(&path, root, "component")?;
    }
    if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
        return Err(PluginError::Invalid(format!(
            "component {}: expected a .wasm file",
            path.display()
        )));
    }
    let meta = std::fs::metadata(&path)
        .map_err(|e| PluginError::Invalid(format!("component {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(PluginError::Invalid(format!(
            "{} is not a file",
            path.display()
        )));
    }
    if meta.len() > settings.max_component_bytes {
        return Err(PluginError::Invalid(format!(
            "component {} is {} bytes; the limit is {}",
            path.display(),
            meta.len(),
            settings.max_component_bytes
        )));
    }
    let bytes = std::fs::read(&path)
        .map_err(|e| PluginError::Invalid(format!("component {}: {e}", path.display())))?;
    let sha = sha256_hex(&bytes);
    if let Some(expected) = &req.sha256
        && !expected.eq_ignore_ascii_case(&sha)
    {
        return Err(PluginError::Digest {
            expected: expected.to_ascii_lowercase(),
            actual: sha,
        });
    }
    check_is_component(&bytes, &path)?;
    let manifest_path = match &req.manifest {
        Some(m) => m.clone(),
        None => {
            let next = path.with_file_name("manifest.toml");
            if next.exists() {
                next
            } else {
                path.with_extension("toml")
            }
        }
    };
    if let Some(root) = &settings.install_root
        && !manifest_path
            .canonicalize()
            .is_ok_and(|m| is_upload(host, &m))
    {
        confine(&manifest_path, root, "manifest")?;
    }
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        PluginError::Manifest(format!(
            "{}: {e} (pass --manifest FILE)",
            manifest_path.display()
        ))
    })?;
    let manifest = Manifest::parse(&text)
        .map_err(|e| PluginError::Manifest(format!("{}: {e}", manifest_path.display())))?;
    let manifest_sha = sha256_hex(text.as_bytes());
    Ok((bytes, sha, manifest, manifest_sha))
}

/// Verifies the signature of an install or upgrade (`req.signature`, else `<component>.sig`
/// when it exists). A present signature must be valid and must not be by a revoked
/// publisher; with `[plugins] require_signature` it must also exist and be a trusted
/// publisher's.
fn check_signature(
    host: &PluginHost,
    req: &InstallRequest,
    subject: Subject,
) -> Result<Option<SignedBy>, PluginError> {
    let settings = &host.inner.settings;
    let refuse = |reason: String| PluginError::Signature {
        plugin: subject.plugin.clone(),
        reason,
    };
    let path = match &req.signature {
        Some(p) => Some(p.clone()),
        None => {
            let mut p = req.component.clone().into_os_string();
            p.push(".sig");
            let p = PathBuf::from(p);
            p.exists().then_some(p)
        }
    };
    let Some(path) = path else {
        if settings.require_signature {
            return Err(refuse(
                "it is unsigned and [plugins] require_signature is on; sign it with \
                 `llmos plugin sign COMPONENT.wasm --manifest FILE --key KEYFILE` and pass \
                 --signature FILE (default COMPONENT.wasm.sig)"
                    .into(),
            ));
        }
        return Ok(None);
    };
    if let Some(root) = &settings.install_root
        && !path.canonicalize().is_ok_and(|p| is_upload(host, &p))
    {
        confine(&path, root, "signature")?;
    }
    let file = signing::read_signature(&path).map_err(|e| refuse(e.to_string()))?;
    let key = signing::verify(&file, &subject)
        .map_err(|e| refuse(format!("{} ({})", e, path.display())))?;
    let publishers = signing::Publishers::new(host.store().clone());
    let publisher = match publishers.check(&key) {
        Ok(p) => Some(p.name),
        Err(e @ SigningError::UnknownKey { .. }) if settings.require_signature => {
            return Err(refuse(format!("{e} ([plugins] require_signature is on)")));
        }
        Err(SigningError::UnknownKey { .. }) => None,
        Err(e) => return Err(refuse(e.to_string())),
    };
    Ok(Some(SignedBy {
        publisher,
        key_id: key.key_id(),
        public_key: key.to_string(),
    }))
}

/// Refuses a new version of a plugin installed from a trusted publisher unless the same
/// publisher signed it (publisher pinning; the operator overrides with
/// `--allow-publisher-change`).
fn check_pinned_publisher(old: &PluginRecord, new: Option<&SignedBy>) -> Result<(), PluginError> {
    let Some(pinned) = old.signature.as_ref().filter(|s| s.publisher.is_some()) else {
        return Ok(());
    };
    if new.is_some_and(|n| n.publisher.is_some() && n.publisher == pinned.publisher) {
        return Ok(());
    }
    let now = new.map_or_else(|| "unsigned".to_string(), ToString::to_string);
    Err(PluginError::Signature {
        plugin: old.manifest.name.clone(),
        reason: format!(
            "the installed version {} is from {pinned}, this version is {}{now}: a plugin stays \
             with its publisher; to accept the change, upgrade with --allow-publisher-change \
             (admin API: \"allow_publisher_change\": true)",
            old.manifest.version,
            if new.is_some_and(|n| n.publisher.is_some()) { "from " } else { "" },
        ),
    })
}

fn subject(manifest: &Manifest, sha: &str, manifest_sha: &str) -> Subject {
    Subject {
        plugin: manifest.name.clone(),
        version: manifest.version.clone(),
        component_sha256: sha.to_string(),
        manifest_sha256: manifest_sha.to_string(),
    }
}

/// Refuses a file outside the install folder (both canonicalised: no `..` or link escapes).
fn confine(path: &Path, root: &Path, what: &str) -> Result<(), PluginError> {
    let root = root
        .canonicalize()
        .map_err(|e| PluginError::Invalid(format!("install folder {}: {e}", root.display())))?;
    let path = path
        .canonicalize()
        .map_err(|e| PluginError::Invalid(format!("{what} {}: {e}", path.display())))?;
    if path.starts_with(&root) {
        Ok(())
    } else {
        Err(PluginError::Invalid(format!(
            "{what} {} is outside the allowed folder {} ([plugins] install_root)",
            path.display(),
            root.display()
        )))
    }
}

/// A component starts with `\0asm` and layer 1 (bytes 6..8 = `01 00`); a core module has
/// version 1 and layer 0.
fn check_is_component(bytes: &[u8], path: &Path) -> Result<(), PluginError> {
    if bytes.len() < 8 || !bytes.starts_with(b"\0asm") {
        return Err(PluginError::Invalid(format!(
            "{} is not WebAssembly",
            path.display()
        )));
    }
    if bytes.get(6..8) != Some(&[1u8, 0][..]) {
        return Err(PluginError::Invalid(format!(
            "{} is a core WebAssembly module, not a component; build with `--target wasm32-wasip2` (or wrap it with `wasm-tools component new`)",
            path.display()
        )));
    }
    Ok(())
}

/// The capability kind an import needs, if any. `None`: always allowed.
fn import_kind(name: &str) -> Result<Option<&'static str>, String> {
    let iface = name.split('@').next().unwrap_or(name);
    Ok(match iface {
        "llmos:plugin/kv" => Some("kv"),
        "llmos:plugin/inference" => Some("inference"),
        "llmos:plugin/secrets" => Some("secret"),
        "llmos:plugin/data" => Some("data"),
        i if i.starts_with("wasi:http/") => Some("http"),
        i if i.starts_with("llmos:plugin/") || i.starts_with("wasi:") => None,
        _ => return Err(format!("imports {name}, which llmos does not provide")),
    })
}

/// Compiles and checks the component against its manifest: the world's exports, imports
/// llmos provides. Returns the host interfaces it imports without requesting their
/// capability kind: they stay linked, and every call to them is denied (deny by default; a
/// whole-world toolchain such as componentize-py or jco imports every interface).
fn validate(
    host: &PluginHost,
    bytes: &[u8],
    sha: &str,
    manifest: &Manifest,
) -> Result<(Vec<DeniedImport>, Pre), PluginError> {
    let (component, pre, _) = host.prepare(bytes, sha, manifest.world)?;
    let requested = manifest.requested()?;
    let ty = component.component_type();
    let engine = host.engine();
    let mut denied = Vec::new();
    for (name, _) in ty.imports(engine) {
        match import_kind(name) {
            Err(m) => return Err(PluginError::Invalid(m)),
            Ok(Some(kind)) if !requested.has_kind(kind) => denied.push(DeniedImport {
                import: name.to_string(),
                capability: kind.to_string(),
            }),
            Ok(_) => {}
        }
    }
    let exports: Vec<&str> = ty.exports(engine).map(|(n, _)| n).collect();
    for f in manifest.world.exports() {
        let ok = ty
            .exports(engine)
            .any(|(n, item)| n == *f && matches!(item.ty, ComponentItem::ComponentFunc(_)));
        if !ok {
            return Err(PluginError::Invalid(format!(
                "the manifest declares world {} but the component does not export {f} (it exports: {})",
                manifest.world,
                exports.join(", ")
            )));
        }
    }
    Ok((denied, pre))
}

fn store_component(home: &Path, name: &str, sha: &str, bytes: &[u8]) -> Result<(), PluginError> {
    let dir = home.join("plugins").join(name);
    let io = |e: std::io::Error| PluginError::Io(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(io)?;
    let path = dir.join(format!("{sha}.wasm"));
    let tmp = dir.join(format!("{sha}.wasm.tmp"));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(())
}

/// On a store shared by replicas, keeps the component's bytes in it once (sealed, by
/// sha256), so every replica can load it (and precompile it for itself).
fn share_component(store: &crate::data::Store, sha: &str, bytes: &[u8]) -> Result<(), PluginError> {
    if store.shared() && store.get_sealed(Tree::Components, sha.as_bytes())?.is_none() {
        store.put(Tree::Components, sha.as_bytes(), bytes)?;
    }
    Ok(())
}

fn parse_caps(names: &[String]) -> Result<CapabilitySet, PluginError> {
    CapabilitySet::parse(names).map_err(|e| PluginError::Grant(e.to_string()))
}

fn report(
    record: PluginRecord,
    previous: Option<&PluginRecord>,
) -> Result<InstallReport, PluginError> {
    let requested = record.manifest.requested()?;
    let old = match previous {
        Some(p) => p.manifest.requested()?,
        None => CapabilitySet::default(),
    };
    let effective = record.effective();
    let ungranted = requested
        .iter()
        .filter(|r| !effective.iter().any(|e| r.covers(e)))
        .cloned()
        .collect();
    let unrequested = record
        .granted
        .iter()
        .filter(|g| !requested.iter().any(|r| r.covers(g)))
        .cloned()
        .collect();
    Ok(InstallReport {
        added: if previous.is_some() {
            requested.difference(&old)
        } else {
            CapabilitySet::default()
        },
        removed: old.difference(&requested),
        raised_limits: record.manifest.limits.raised(),
        previous_version: previous.map(|p| p.manifest.version.clone()),
        signer_change: previous
            .filter(|p| p.signature != record.signature)
            .map(|p| format!("{} -> {}", signature_line(p), signature_line(&record))),
        ungranted,
        unrequested,
        record,
    })
}

/// Installs a plugin after validating it (component, world, imports, size, digest, path).
pub fn install(host: &PluginHost, req: &InstallRequest) -> Result<InstallReport, PluginError> {
    let (bytes, sha, manifest, manifest_sha) = read_inputs(host, req)?;
    let store = host.store();
    if store
        .get(Tree::Plugins, manifest.name.as_bytes())?
        .is_some()
    {
        return Err(PluginError::Exists(manifest.name.clone()));
    }
    let signature = check_signature(host, req, subject(&manifest, &sha, &manifest_sha))?;
    let (denied_imports, pre) = validate(host, &bytes, &sha, &manifest)?;
    manifest.effective_config(&req.config)?;
    check_limits(&manifest, req.approve_limits)?;
    let granted = parse_caps(&req.grants)?;
    let tools = component_tools(host, &manifest, pre, &granted, &req.config)?;
    store_component(host.home(), &manifest.name, &sha, &bytes)?;
    share_component(host.store(), &sha, &bytes)?;
    let record = PluginRecord {
        sha256: sha,
        size: bytes.len() as u64,
        granted,
        enabled: true,
        config: req.config.clone(),
        installed_at_ms: now_ms(),
        manifest,
        limits: LimitsRequest::default(),
        denied_imports,
        signature,
        tools,
    };
    record.put(store)?;
    let name = &record.manifest.name;
    host.audit().record(
        "installed",
        name,
        None,
        format!(
            "{} {} granted {}, {}",
            name,
            record.manifest.version,
            record.granted,
            signature_line(&record)
        ),
    )?;
    host.invalidate(name);
    report(record, None)
}

/// Replaces an installed plugin by a new version. Grants of capabilities both versions
/// request are kept; capabilities only the new version requests must be granted again
/// (`req.grants` or `llmos plugin grant`). Config values the new schema lacks are dropped.
///
/// A plugin whose installed version is signed by a trusted publisher is pinned to that
/// publisher: a new version signed by another publisher, by a key of no publisher, or not
/// at all is refused, naming both; [`upgrade_with`] with `allow_publisher_change` accepts it.
pub fn upgrade(
    host: &PluginHost,
    name: &str,
    req: &InstallRequest,
) -> Result<InstallReport, PluginError> {
    upgrade_with(host, name, req, false)
}

/// [`upgrade`], where `allow_publisher_change` lets the operator accept a new version that is
/// not signed by the publisher of the installed one (`--allow-publisher-change`).
pub fn upgrade_with(
    host: &PluginHost,
    name: &str,
    req: &InstallRequest,
    allow_publisher_change: bool,
) -> Result<InstallReport, PluginError> {
    let old = PluginRecord::get(host.store(), name)?;
    let (bytes, sha, manifest, manifest_sha) = read_inputs(host, req)?;
    if manifest.name != name {
        return Err(PluginError::Manifest(format!(
            "the manifest names plugin {}, not {name}",
            manifest.name
        )));
    }
    if manifest.world != old.manifest.world {
        return Err(PluginError::Invalid(format!(
            "plugin {name} is a {} but the new version is a {}; remove and install instead",
            old.manifest.world, manifest.world
        )));
    }
    let signature = check_signature(host, req, subject(&manifest, &sha, &manifest_sha))?;
    if !allow_publisher_change {
        check_pinned_publisher(&old, signature.as_ref())?;
    }
    let (denied_imports, pre) = validate(host, &bytes, &sha, &manifest)?;
    let old_requested = old.manifest.requested()?;
    let new_requested = manifest.requested()?;
    let mut granted: CapabilitySet = old
        .granted
        .iter()
        .filter(|g| {
            old_requested.iter().any(|r| r.covers(g)) && new_requested.iter().any(|r| r.covers(g))
        })
        .cloned()
        .collect();
    for g in parse_caps(&req.grants)?.iter() {
        granted.insert(g.clone());
    }
    let mut config: BTreeMap<String, String> = old
        .config
        .iter()
        .filter(|(k, _)| manifest.config.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    config.extend(req.config.clone());
    manifest.effective_config(&config)?;
    check_limits(&manifest, req.approve_limits)?;
    let tools = component_tools(host, &manifest, pre, &granted, &config)?;
    store_component(host.home(), name, &sha, &bytes)?;
    share_component(host.store(), &sha, &bytes)?;
    let record = PluginRecord {
        sha256: sha,
        size: bytes.len() as u64,
        granted,
        enabled: old.enabled,
        config,
        installed_at_ms: now_ms(),
        manifest,
        limits: old.limits.clone(),
        denied_imports,
        signature,
        tools,
    };
    record.put(host.store())?;
    if old.sha256 != record.sha256 {
        let _ = std::fs::remove_file(old.component_path(host.home()));
    }
    host.audit().record(
        "upgraded",
        name,
        None,
        format!(
            "{} -> {}, {}",
            old.manifest.version,
            record.manifest.version,
            signature_line(&record)
        ),
    )?;
    host.invalidate(name);
    report(record, Some(&old))
}

fn update(
    host: &PluginHost,
    name: &str,
    f: impl FnOnce(&mut PluginRecord) -> Result<(), PluginError>,
) -> Result<PluginRecord, PluginError> {
    let mut r = PluginRecord::get(host.store(), name)?;
    f(&mut r)?;
    r.put(host.store())?;
    host.invalidate(name);
    Ok(r)
}

/// Grants capabilities; returns the record and the grants its manifest does not request
/// (stored, but never effective).
pub fn grant(
    host: &PluginHost,
    name: &str,
    caps: &[String],
) -> Result<(PluginRecord, CapabilitySet), PluginError> {
    let caps = parse_caps(caps)?;
    let r = update(host, name, |r| {
        for c in caps.iter() {
            r.granted.insert(c.clone());
        }
        Ok(())
    })?;
    for c in caps.iter() {
        host.audit()
            .record("granted", name, Some(c.to_string()), "operator grant")?;
    }
    let requested = r.manifest.requested()?;
    let unrequested = caps
        .iter()
        .filter(|c| !requested.iter().any(|q| q.covers(c)))
        .cloned()
        .collect();
    Ok((r, unrequested))
}

/// Revokes capabilities.
pub fn revoke(host: &PluginHost, name: &str, caps: &[String]) -> Result<PluginRecord, PluginError> {
    let caps = parse_caps(caps)?;
    let r = update(host, name, |r| {
        for c in caps.iter() {
            if !r.granted.remove(c) {
                return Err(PluginError::Grant(format!(
                    "plugin {name} was not granted {c}"
                )));
            }
        }
        Ok(())
    })?;
    for c in caps.iter() {
        host.audit()
            .record("revoked", name, Some(c.to_string()), "operator revoke")?;
    }
    Ok(r)
}

/// Enables or disables calls to a plugin.
pub fn set_enabled(
    host: &PluginHost,
    name: &str,
    enabled: bool,
) -> Result<PluginRecord, PluginError> {
    update(host, name, |r| {
        r.enabled = enabled;
        Ok(())
    })
}

/// Sets the operator's limit overrides (fields left `None` keep the manifest's value).
pub fn set_limits(
    host: &PluginHost,
    name: &str,
    overrides: LimitsRequest,
) -> Result<PluginRecord, PluginError> {
    update(host, name, |r| {
        r.limits = overrides;
        Ok(())
    })
}

/// Sets (or with `None`, unsets) config values, validated against the manifest's schema.
pub fn configure(
    host: &PluginHost,
    name: &str,
    values: &BTreeMap<String, Option<String>>,
) -> Result<PluginRecord, PluginError> {
    update(host, name, |r| {
        let mut config = r.config.clone();
        for (k, v) in values {
            match v {
                Some(v) => config.insert(k.clone(), v.clone()),
                None => config.remove(k),
            };
        }
        r.manifest.effective_config(&config)?;
        r.config = config;
        Ok(())
    })
}

/// Stores a secret for a plugin (sealed; readable by it only with `secret:<name>` granted).
pub fn set_secret(
    host: &PluginHost,
    name: &str,
    secret: &str,
    value: &str,
) -> Result<(), PluginError> {
    PluginRecord::get(host.store(), name)?;
    let cap: Capability = format!("secret:{secret}")
        .parse()
        .map_err(|e: crate::security::CapabilityError| PluginError::Grant(e.to_string()))?;
    if secret == "*" {
        return Err(PluginError::Grant("a secret needs a name, not *".into()));
    }
    host.store().put(
        Tree::PluginSecrets,
        &secret_key(name, secret),
        value.as_bytes(),
    )?;
    host.audit().record(
        "secret-set",
        name,
        Some(cap.to_string()),
        "operator set a secret",
    )?;
    Ok(())
}

/// Removes a plugin: its record, component, kv data and secrets.
pub fn remove(host: &PluginHost, name: &str) -> Result<PluginRecord, PluginError> {
    let r = PluginRecord::get(host.store(), name)?;
    let store = host.store();
    let prefix = format!("{name}\0");
    super::state::clear_kv(store, name)?;
    store.remove_prefix(Tree::PluginSecrets, prefix.as_bytes())?;
    store.remove(Tree::Plugins, name.as_bytes())?;
    let dir = host.home().join("plugins").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    host.audit()
        .record("removed", name, None, r.manifest.version.clone())?;
    host.invalidate(name);
    Ok(r)
}

/// Every installed plugin, by name.
pub fn list(store: &Store) -> Result<Vec<PluginRecord>, PluginError> {
    store
        .values(Tree::Plugins, b"")?
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v).map_err(|e| {
                PluginError::Store(crate::data::StoreError::Decode {
                    tree: Tree::Plugins.name(),
                    key: String::from_utf8_lossy(&k).into_owned(),
                    message: e.to_string(),
                })
            })
        })
        .collect()
}

/// One plugin's record.
pub fn info(store: &Store, name: &str) -> Result<PluginRecord, PluginError> {
    PluginRecord::get(store, name)
}

/// The world of an installed plugin.
pub fn world_of(store: &Store, name: &str) -> Result<World, PluginError> {
    Ok(PluginRecord::get(store, name)?.manifest.world)
}

fn publisher_err(e: SigningError) -> PluginError {
    match e {
        SigningError::Store(e) => PluginError::Store(e),
        e => PluginError::Publisher(e.to_string()),
    }
}

/// The trusted publishers, by name (revoked ones included).
pub fn publishers(host: &PluginHost) -> Result<Vec<signing::Publisher>, PluginError> {
    signing::Publishers::new(host.store().clone())
        .list()
        .map_err(publisher_err)
}

/// Trusts `public_key` (`ed25519:<base64>`) as publisher `name`; audited.
pub fn add_publisher(
    host: &PluginHost,
    name: &str,
    public_key: &str,
) -> Result<signing::Publisher, PluginError> {
    let p = signing::Publishers::new(host.store().clone())
        .add(name, public_key)
        .map_err(publisher_err)?;
    host.audit().record(
        "publisher-added",
        &p.name,
        None,
        format!("key {} {}", p.key_id, p.public_key),
    )?;
    Ok(p)
}

/// Revokes publisher `name`: its signatures are refused from now on; audited.
pub fn revoke_publisher(host: &PluginHost, name: &str) -> Result<signing::Publisher, PluginError> {
    let p = signing::Publishers::new(host.store().clone())
        .revoke(name)
        .map_err(publisher_err)?;
    host.audit()
        .record("publisher-revoked", &p.name, None, format!("key {}", p.key_id))?;
    Ok(p)
}

//! The CLI while `llmos serve` runs: the server holds the store (sled's lock), so the
//! `plugin` and `keys` commands send the same operation to it over its admin socket
//! (`$LLMOS_HOME/admin.sock`, `api/local.rs`) and print what the local path prints, from the
//! same records (the admin API answers with the registry's own structs).
//!
//! The socket is tried first (a connect costs microseconds, where opening a held store waits
//! a second for the lock); when nothing answers on it the command opens the store itself.
//! The client checks that the server is the same user (its peer credentials) before sending
//! anything: a socket planted by someone else gets no secret and no component.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::UnixStream;

use super::KeysCommand;
use super::plugin::{self, InstallArgs, PluginCommand};
use super::plugin_test::TestArgs;
use super::sign::{self, PublisherCommand};
use crate::api::admin::InstallReply;
use crate::api::local::{own_uid, socket_path};
use crate::data::StoreError;
use crate::data::backend::BackendError;
use crate::plugins::{HostSettings, PluginError};
use crate::plugins::limits::LimitsRequest;
use crate::plugins::registry::PluginRecord;
use crate::plugins::trace::TestReport;
use crate::security::signing::Publisher;
use crate::security::{AuditRecord, CapabilitySet};

/// Longest the CLI waits for one answer (the server's own request timeout is shorter).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// A running server, reached over its admin socket.
pub(crate) struct Server {
    rt: tokio::runtime::Runtime,
    sender: SendRequest<Full<Bytes>>,
    path: PathBuf,
}

impl Server {
    /// Connects to the server of the data location `home`; `None` when none answers (no
    /// socket, or a stale one a crashed server left).
    pub(crate) fn connect(home: &Path) -> Result<Option<Self>> {
        let path = socket_path(home);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let stream = match rt.block_on(UnixStream::connect(&path)) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(e) => {
                let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                    " (it belongs to another user: run the command as the server's user, or use \
                     the HTTP admin API with an admin key)"
                } else {
                    ""
                };
                return Err(e).with_context(|| {
                    format!(
                        "cannot connect to the running server's admin socket {}{hint}",
                        path.display()
                    )
                });
            }
        };
        let sender = rt.block_on(handshake(stream, &path))?;
        Ok(Some(Self { rt, sender, path }))
    }

    /// Sends one request; the answer's JSON, or the server's error message as the error.
    fn call(&mut self, method: Method, uri: &str, body: Option<&Value>) -> Result<Value> {
        let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))
            .context("building the request")?;
        let path = self.path.clone();
        let answer = async {
            self.sender.ready().await?;
            let resp = self.sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        let (status, body) = self
            .rt
            .block_on(async { tokio::time::timeout(ANSWER_TIMEOUT, answer).await })
            .with_context(|| format!("no answer from {} in {ANSWER_TIMEOUT:?}", path.display()))?
            .with_context(|| format!("talking to the server over {}", path.display()))?;
        let v: Value = serde_json::from_slice(&body).with_context(|| {
            format!(
                "the server answered {status} with a body that is not JSON: {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        if !status.is_success() {
            match v.pointer("/error/message").and_then(Value::as_str) {
                Some(m) => bail!("{m}"),
                None => bail!("the server answered {status}: {v}"),
            }
        }
        Ok(v)
    }

    /// `GET uri`, its answer decoded.
    pub(crate) fn get<T: DeserializeOwned>(&mut self, uri: &str) -> Result<T> {
        decode(self.call(Method::GET, uri, None)?)
    }

    /// `POST uri` with a JSON body, its answer decoded.
    pub(crate) fn post<T: DeserializeOwned>(&mut self, uri: &str, body: &Value) -> Result<T> {
        decode(self.call(Method::POST, uri, Some(body))?)
    }

    /// `DELETE uri`.
    pub(crate) fn delete(&mut self, uri: &str) -> Result<Value> {
        self.call(Method::DELETE, uri, None)
    }
}

/// HTTP/1.1 over the socket, after checking that the server runs as this user.
async fn handshake(stream: UnixStream, path: &Path) -> Result<SendRequest<Full<Bytes>>> {
    let theirs = stream
        .peer_cred()
        .with_context(|| format!("reading the peer credentials of {}", path.display()))?
        .uid();
    let mine = own_uid().context("reading this process's uid")?;
    if theirs != mine {
        bail!(
            "{} is served by uid {theirs}, not by you (uid {mine}): refusing to send it anything. \
             Remove it if no server of yours is running",
            path.display()
        );
    }
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake over {}", path.display()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).context("the server's answer is not what this llmos expects (a different version?)")
}

/// One field of an answer.
fn field<T: DeserializeOwned>(v: &Value, name: &str) -> Result<T> {
    decode(v.get(name).cloned().unwrap_or(Value::Null))
        .with_context(|| format!("reading `{name}` of the server's answer"))
}

/// A path segment (plugin names, key ids) escaped for a URI.
pub(crate) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What became of a command.
pub(crate) enum Forward {
    /// The server ran it and its output is printed.
    Done,
    /// No server answers: run it here.
    Local(PluginCommand),
}

/// Sends a `plugin` command to the running server, if one answers on the admin socket.
pub(crate) fn plugin(cmd: PluginCommand, home: &Path, settings: &HostSettings) -> Result<Forward> {
    if !forwardable(&cmd) {
        return Ok(Forward::Local(cmd));
    }
    match Server::connect(home)? {
        Some(mut s) => run_plugin(&mut s, cmd, settings).map(|()| Forward::Done),
        None => Ok(Forward::Local(cmd)),
    }
}

/// The store was held: a server that started meanwhile gets the command; with no socket
/// the error says who holds the store and how to proceed.
pub(crate) fn plugin_after_lock(
    cmd: PluginCommand,
    home: &Path,
    settings: &HostSettings,
    e: PluginError,
) -> Result<()> {
    match plugin(cmd, home, settings)? {
        Forward::Done => Ok(()),
        Forward::Local(_) => Err(held(home, e.into())),
    }
}

/// Whether opening the plugin host failed because another process holds the store.
pub(crate) fn is_locked(e: &PluginError) -> bool {
    matches!(e, PluginError::Store(s) if store_locked(s))
}

/// Whether opening the store failed because another process holds it.
pub(crate) fn store_locked(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend(BackendError::Locked { .. }))
}

/// The error for a held store with no admin socket to reach its holder.
pub(crate) fn held(home: &Path, e: anyhow::Error) -> anyhow::Error {
    e.context(format!(
        "the data location {} is held by another llmos process and nothing answers on {}: \
         a `llmos serve` with `[server] admin_socket = false`, or another command still running. \
         Stop it, or set `admin_socket = true` (the default) and restart the server so that this \
         command reaches it, or make the change through the HTTP admin API with an admin key \
         (e.g. `POST /admin/plugins/NAME/grant`, `POST /admin/keys`)",
        home.display(),
        socket_path(home).display()
    ))
}

/// The commands the admin API serves (others, e.g. authoring commands, need no store or
/// run here).
fn forwardable(cmd: &PluginCommand) -> bool {
    use PluginCommand as P;
    matches!(
        cmd,
        P::Install(_)
            | P::Upgrade { .. }
            | P::List
            | P::Info { .. }
            | P::Grant { .. }
            | P::Revoke { .. }
            | P::Enable { .. }
            | P::Disable { .. }
            | P::Configure { .. }
            | P::Limits { .. }
            | P::Secret { .. }
            | P::Remove { .. }
            | P::Audit
            | P::Publisher(_)
    )
}

fn run_plugin(s: &mut Server, cmd: PluginCommand, settings: &HostSettings) -> Result<()> {
    use PluginCommand as P;
    match cmd {
        P::Install(args) => {
            let r: InstallReply = s.post("/admin/plugins", &body(args, settings)?)?;
            plugin::print_report("installed", &r.into());
        }
        P::Upgrade {
            name,
            args,
            allow_publisher_change,
        } => {
            let uri = format!("/admin/plugins/{}/upgrade", seg(&name));
            let mut body = body(args, settings)?;
            if let Some(o) = body.as_object_mut() {
                o.insert("allow_publisher_change".into(), allow_publisher_change.into());
            }
            let r: InstallReply = s.post(&uri, &body)?;
            plugin::print_report("upgraded", &r.into());
        }
        P::List => {
            let v: Value = s.get("/admin/plugins")?;
            plugin::print_list(&field::<Vec<PluginRecord>>(&v, "plugins")?);
        }
        P::Info { name } => {
            let v: Value = s.get(&format!("/admin/plugins/{}", seg(&name)))?;
            let usage = field(&v, "kv_usage")?;
            plugin::print_info_usage(&decode(v)?, usage);
        }
        P::Grant { name, caps } => {
            let uri = format!("/admin/plugins/{}/grant", seg(&name));
            let v: Value = s.post(&uri, &json!({"capabilities": caps}))?;
            let unrequested: CapabilitySet = field(&v, "unrequested")?;
            plugin::print_grant(&name, &decode(v)?, &unrequested);
        }
        P::Revoke { name, caps } => {
            let uri = format!("/admin/plugins/{}/revoke", seg(&name));
            let r: PluginRecord = s.post(&uri, &json!({"capabilities": caps}))?;
            println!("{name}: effective {}", r.effective());
        }
        P::Enable { name } => {
            let _: PluginRecord = s.post(&format!("/admin/plugins/{}/enable", seg(&name)), &json!({}))?;
            println!("{name} enabled");
        }
        P::Disable { name } => {
            let _: PluginRecord = s.post(&format!("/admin/plugins/{}/disable", seg(&name)), &json!({}))?;
            println!("{name} disabled");
        }
        P::Configure {
            name,
            values,
            unset,
        } => {
            let changes = plugin::config_changes(&values, unset)?;
            let set: serde_json::Map<String, Value> = changes
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), json!(v))))
                .collect();
            let unset: Vec<&String> = changes.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k).collect();
            let uri = format!("/admin/plugins/{}/configure", seg(&name));
            let r: PluginRecord = s.post(&uri, &json!({"set": set, "unset": unset}))?;
            plugin::print_info(&r);
        }
        P::Limits { name, limits } => {
            let body = json!(LimitsRequest::from(limits));
            let uri = format!("/admin/plugins/{}/limits", seg(&name));
            let r: PluginRecord = s.post(&uri, &body)?;
            plugin::print_info(&r);
        }
        P::Secret {
            name,
            secret,
            value,
        } => {
            let value = plugin::secret_value(value)?;
            let uri = format!("/admin/plugins/{}/secret", seg(&name));
            let _: Value = s.post(&uri, &json!({"name": secret, "value": value}))?;
            println!("secret {secret} stored for {name} (readable with secret:{secret} granted)");
        }
        P::Remove { name } => {
            let v = s.delete(&format!("/admin/plugins/{}", seg(&name)))?;
            let version: String = field(&v, "version")?;
            println!("removed {name} {version}");
        }
        P::Audit => plugin::print_audit(audit_records(s)?),
        P::Publisher(c) => publisher(s, c)?,
        // Authoring, keygen and sign need no store; `plugin test` goes through [`test`],
        // `plugin dev` through [`install`].
        other @ (P::Author(_) | P::Keygen(_) | P::Sign(_) | P::Test(_) | P::Dev(_)) => {
            bail!("this command does not run through the admin socket: {other:?}")
        }
    }
    Ok(())
}

/// Every audit record, oldest first, a page at a time.
fn audit_records(s: &mut Server) -> Result<Vec<AuditRecord>> {
    let mut all = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let uri = match after {
            Some(a) => format!("/admin/audit?limit=1000&after={a}"),
            None => "/admin/audit?limit=1000".to_string(),
        };
        let v: Value = s.get(&uri)?;
        all.extend(field::<Vec<AuditRecord>>(&v, "records")?);
        match field::<Option<u64>>(&v, "next")? {
            Some(n) => after = Some(n),
            None => return Ok(all),
        }
    }
}

/// An install or upgrade's request body: the component's bytes (base64), the manifest's and
/// the signature's text (the server need not see the caller's files, and `install_root`
/// keeps confining path installs over HTTP).
fn body(args: InstallArgs, settings: &HostSettings) -> Result<Value> {
    use base64::Engine as _;
    let max_bytes = settings.max_component_bytes;
    let path = &args.path;
    if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
        bail!("invalid plugin: component {}: expected a .wasm file", path.display());
    }
    let meta = std::fs::metadata(path)
        .with_context(|| format!("invalid plugin: component {}", path.display()))?;
    if !meta.is_file() {
        bail!("invalid plugin: {} is not a file", path.display());
    }
    if meta.len() > max_bytes {
        bail!(
            "invalid plugin: component {} is {} bytes; the limit is {max_bytes}",
            path.display(),
            meta.len()
        );
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("invalid plugin: component {}", path.display()))?;
    let manifest = args.manifest.clone().unwrap_or_else(|| {
        let next = path.with_file_name("manifest.toml");
        if next.exists() {
            next
        } else {
            path.with_extension("toml")
        }
    });
    if let Some(root) = &settings.install_root {
        confine(path, root, "component")?;
        confine(&manifest, root, "manifest")?;
    }
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "invalid manifest: {} (pass --manifest FILE)",
            manifest.display()
        )
    })?;
    // The signature as a local install finds it: --signature, else `<component>.sig`.
    let signature = args.signature.clone().or_else(|| {
        let mut next = path.clone().into_os_string();
        next.push(".sig");
        let next = PathBuf::from(next);
        next.exists().then_some(next)
    });
    let signature = match signature {
        Some(sig) => {
            if let Some(root) = &settings.install_root {
                confine(&sig, root, "signature")?;
            }
            Some(std::fs::read_to_string(&sig).with_context(|| {
                format!("invalid plugin: signature {}", sig.display())
            })?)
        }
        None => None,
    };
    Ok(json!({
        "component_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
        "manifest_toml": text,
        "signature_json": signature,
        "grants": args.grants,
        "sha256": args.sha256,
        "config": plugin::parse_kv(&args.values)?,
        "approve_limits": args.approve_limits,
    }))
}

/// Installs (`upgrade: None`) or upgrades (`Some(name)`) over the socket with the body
/// `plugin install` / `plugin upgrade` send; the registry's report (for `plugin dev`).
pub(crate) fn install(
    s: &mut Server,
    upgrade: Option<&str>,
    path: PathBuf,
    manifest: PathBuf,
    grants: Vec<String>,
    approve_limits: bool,
    settings: &HostSettings,
) -> Result<crate::plugins::registry::InstallReport> {
    let args = InstallArgs {
        path,
        manifest: Some(manifest),
        grants,
        sha256: None,
        values: Vec::new(),
        approve_limits,
        signature: None,
    };
    let uri = match upgrade {
        Some(name) => format!("/admin/plugins/{}/upgrade", seg(name)),
        None => "/admin/plugins".to_string(),
    };
    let r: InstallReply = s.post(&uri, &body(args, settings)?)?;
    Ok(r.into())
}

/// `[plugins] install_root` as a local install applies it (the server does not confine
/// what its owner uploads): both files canonicalised, no `..` or link escapes.
fn confine(path: &Path, root: &Path, what: &str) -> Result<()> {
    let root = root
        .canonicalize()
        .with_context(|| format!("invalid plugin: install folder {}", root.display()))?;
    let full = path
        .canonicalize()
        .with_context(|| format!("invalid plugin: {what} {}", path.display()))?;
    if !full.starts_with(&root) {
        bail!(
            "invalid plugin: {what} {} is outside the allowed folder {} ([plugins] install_root)",
            full.display(),
            root.display()
        );
    }
    Ok(())
}

/// Sends a `keys` command to the running server, if one answers; `Some(cmd)` to run here.
pub(super) fn keys(cmd: KeysCommand, home: &Path) -> Result<Option<KeysCommand>> {
    let Some(mut s) = Server::connect(home)? else {
        return Ok(Some(cmd));
    };
    match cmd {
        KeysCommand::Create {
            scopes,
            name,
            expires,
            tenant,
            max_streams,
            max_queued_tokens,
            priority,
        } => {
            let v: Value = s.post(
                "/admin/keys",
                &json!({"name": name, "scopes": scopes, "expires": expires, "tenant": tenant,
                    "max_streams": max_streams, "max_queued_tokens": max_queued_tokens,
                    "priority": priority}),
            )?;
            let secret: String = field(&v, "secret")?;
            super::print_key_created(&field(&v, "key")?, &secret);
        }
        KeysCommand::List => {
            let v: Value = s.get("/admin/keys")?;
            super::print_keys(field(&v, "keys")?);
        }
        KeysCommand::Revoke { id } => {
            let v = s.delete(&format!("/admin/keys/{}", seg(&id)))?;
            super::print_key_revoked(&field::<String>(&v, "revoked")?);
        }
    }
    Ok(None)
}

/// `llmos plugin publisher …` on the server.
fn publisher(s: &mut Server, cmd: PublisherCommand) -> Result<()> {
    match cmd {
        PublisherCommand::Add { name, public_key } => {
            let p: Publisher = s.post(
                "/admin/publishers",
                &json!({"name": name, "public_key": public_key}),
            )?;
            sign::print_added(&p);
        }
        PublisherCommand::List => {
            #[derive(serde::Deserialize)]
            struct List {
                publishers: Vec<Publisher>,
            }
            let r: List = s.get("/admin/publishers")?;
            sign::print_list(&r.publishers);
        }
        PublisherCommand::Revoke { name } => {
            let uri = format!("/admin/publishers/{}/revoke", seg(&name));
            let p: Publisher = s.post(&uri, &json!({}))?;
            sign::print_revoked(&p);
        }
    }
    Ok(())
}

/// `llmos plugin test` on the running server, if one answers on the admin socket (its
/// loaded models answer the plugin's inference calls). `None`: no server.
pub(crate) fn test(home: &Path, a: &TestArgs) -> Result<Option<TestReport>> {
    let Some(mut s) = Server::connect(home)? else {
        return Ok(None);
    };
    let uri = format!("/admin/plugins/{}/test", seg(&a.name));
    let mut body = json!(a.input());
    if let Some(o) = body.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    s.post(&uri, &body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(seg("shout-loud_1.0"), "shout-loud_1.0");
        assert_eq!(seg("a/b c?"), "a%2Fb%20c%3F");
    }
}


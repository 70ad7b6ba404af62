//! `llmos plugin keygen | sign | publisher …`: signing keys, signatures and trusted publishers
//! ([`crate::security::signing`]).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::plugins::{PluginHost, registry};
use crate::plugins::engine::sha256_hex;
use crate::plugins::manifest::Manifest;
use crate::security::signing::{self, Publisher, Subject};

/// `llmos plugin keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, mode 0600; an existing file is never
    /// replaced). Keep it out of the plugin's repository.
    #[arg(long, value_name = "KEYFILE")]
    pub out: PathBuf,
}

/// `llmos plugin sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The component (`.wasm`) to sign.
    pub component: PathBuf,
    /// Its manifest [default: manifest.toml next to the component, else <component>.toml].
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// The private key file (`llmos plugin keygen --out`).
    #[arg(long, value_name = "KEYFILE")]
    pub key: PathBuf,
    /// Where to write the signature [default: COMPONENT.wasm.sig].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `llmos plugin publisher …`.
#[derive(Debug, clap::Subcommand)]
pub enum PublisherCommand {
    /// Trust a publisher's public key (`ed25519:<base64>`, as `llmos plugin keygen` prints).
    Add {
        /// A name for the publisher (letters, digits, '.', '_', '-').
        name: String,
        /// The public key.
        public_key: String,
    },
    /// List publishers (revoked ones too).
    List,
    /// Revoke a publisher: its signatures are refused from now on (the record stays).
    Revoke {
        /// The publisher.
        name: String,
    },
}

/// Writes a new key and prints its public half and key id.
pub fn keygen(a: &KeygenArgs) -> anyhow::Result<()> {
    let key = signing::generate();
    signing::write_private_key(&a.out, &key)?;
    let pk = signing::public_key(&key);
    println!("private key {} (keep it secret)", a.out.display());
    println!("public key  {pk}");
    println!("key id      {}", pk.key_id());
    println!("operators trust it with: llmos plugin publisher add NAME {pk}");
    Ok(())
}

/// The manifest path `install` would use.
fn manifest_path(component: &Path, manifest: Option<&Path>) -> PathBuf {
    match manifest {
        Some(m) => m.to_path_buf(),
        None => {
            let next = component.with_file_name("manifest.toml");
            if next.exists() {
                next
            } else {
                component.with_extension("toml")
            }
        }
    }
}

/// Signs a component and its manifest; writes the signature file.
pub fn sign(a: &SignArgs) -> anyhow::Result<()> {
    let key = signing::read_private_key(&a.key)?;
    let bytes = std::fs::read(&a.component)
        .with_context(|| format!("component {}", a.component.display()))?;
    let mpath = manifest_path(&a.component, a.manifest.as_deref());
    let text = std::fs::read_to_string(&mpath)
        .with_context(|| format!("manifest {} (pass --manifest FILE)", mpath.display()))?;
    let manifest =
        Manifest::parse(&text).with_context(|| format!("manifest {}", mpath.display()))?;
    let subject = Subject {
        plugin: manifest.name.clone(),
        version: manifest.version.clone(),
        component_sha256: sha256_hex(&bytes),
        manifest_sha256: sha256_hex(text.as_bytes()),
    };
    let sig = signing::sign(&key, &subject);
    let out = a.out.clone().unwrap_or_else(|| {
        let mut p = a.component.clone().into_os_string();
        p.push(".sig");
        PathBuf::from(p)
    });
    let mut json = serde_json::to_string_pretty(&sig)?;
    json.push('\n');
    let mut tmp = out.clone().into_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, &out))
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "signed {} {} ({}, {})",
        subject.plugin,
        subject.version,
        a.component.display(),
        mpath.display()
    );
    println!("  component sha256 {}", subject.component_sha256);
    println!("  manifest sha256  {}", subject.manifest_sha256);
    println!("  key id           {}", sig.key_id);
    println!("  signature        {}", out.display());
    Ok(())
}

/// Runs a `publisher` subcommand; changes are audited.
pub fn publisher(host: &PluginHost, cmd: PublisherCommand) -> anyhow::Result<()> {
    match cmd {
        PublisherCommand::Add { name, public_key } => {
            print_added(&registry::add_publisher(host, &name, &public_key)?);
        }
        PublisherCommand::List => print_list(&registry::publishers(host)?),
        PublisherCommand::Revoke { name } => print_revoked(&registry::revoke_publisher(host, &name)?),
    }
    Ok(())
}

/// `publisher add`'s output.
pub(crate) fn print_added(p: &Publisher) {
    println!("publisher {} added (key {})", p.name, p.key_id);
}

/// `publisher revoke`'s output.
pub(crate) fn print_revoked(p: &Publisher) {
    println!(
        "publisher {} revoked (key {}): its signatures are refused from now on",
        p.name, p.key_id
    );
}

/// `publisher list`'s output.
pub(crate) fn print_list(all: &[Publisher]) {
    if all.is_empty() {
        println!("no publishers (llmos plugin publisher add NAME ed25519:KEY)");
    }
    for p in all {
        println!(
            "{:<20} {:<16} {:<8} {}",
            p.name,
            p.key_id,
            if p.revoked_at_ms.is_some() {
                "revoked"
            } else {
                "trusted"
            },
            p.public_key
        );
    }
}

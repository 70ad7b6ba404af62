//! `llmos plugin test NAME --input TEXT [--model M] [--json]`: one traced call of an installed
//! plugin ([`crate::plugins::trace`]), printed for a person or as JSON.

use std::sync::Arc;

use anyhow::{Context, bail};

use crate::config::{Config, Paths};
use crate::core::engine::Core;
use crate::plugins::core_backend::CoreBackend;
use crate::plugins::inference::InferenceBackend;
use crate::plugins::trace::{TestInput, TestReport};
use crate::plugins::{HostSettings, PluginHost, registry};
use crate::security::audit::now_ms;

/// `llmos plugin test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The installed plugin.
    pub name: String,
    /// An input text (repeatable): the request's inputs (preprocessor, policy), or the
    /// event's inputs (integration).
    #[arg(long = "input", value_name = "TEXT", required = true)]
    pub inputs: Vec<String>,
    /// A model to load for the plugin's `inference` calls (as `llmos run` loads it); also the
    /// request's model. Without it inference calls return `unavailable`.
    #[arg(long)]
    pub model: Option<String>,
    /// Policies: call `check-response` with this response body (JSON) instead of
    /// `check-request`.
    #[arg(long, value_name = "JSON")]
    pub output_json: Option<String>,
    /// Integrations: the synthetic event's kind.
    #[arg(long, default_value = "inference.finished")]
    pub event: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the test with the models of this data location (`--model`) and `[plugins]` settings.
/// While `llmos serve` runs, the call runs in the server (over its admin socket), with the
/// models it has loaded.
pub fn run(a: &TestArgs, config: Config, paths: Paths) -> anyhow::Result<()> {
    if let Some(report) = super::remote::test(&paths.home, a)? {
        return show(a, &report);
    }
    let settings = HostSettings::from(&config.plugins);
    let home = paths.home.clone();
    let backend: Option<Arc<dyn InferenceBackend>> = match &a.model {
        Some(m) => {
            let core = Arc::new(Core::new(config, paths)?);
            core.model(m).with_context(|| format!("--model {m}"))?;
            Some(Arc::new(CoreBackend(core)))
        }
        None => None,
    };
    let host = match PluginHost::open(&home, settings, backend) {
        Ok(h) => h,
        Err(e) if super::remote::is_locked(&e) => return Err(super::remote::held(&home, e.into())),
        Err(e) => return Err(e.into()),
    };
    run_on(&host, a)
}

impl TestArgs {
    /// The input as the host (or the admin API) takes it.
    pub(crate) fn input(&self) -> TestInput {
        TestInput {
            inputs: self.inputs.clone(),
            model: self.model.clone(),
            output_json: self.output_json.clone(),
            event: Some(self.event.clone()),
        }
    }
}

/// Runs the test on an open host (models as the host has them).
pub fn run_on(host: &PluginHost, a: &TestArgs) -> anyhow::Result<()> {
    let world = registry::world_of(host.store(), &a.name)?;
    let call = a
        .input()
        .call(world, format!("plugin-test-{}", now_ms()))
        .map_err(|e| anyhow::anyhow!(e.replace("output_json", "--output-json")))?;
    let report = host.test_call(&a.name, &call)?;
    show(a, &report)
}

/// Prints a report (for a person, or as JSON with `--json`); a failed call fails the command.
pub(crate) fn show(a: &TestArgs, report: &TestReport) -> anyhow::Result<()> {
    if a.json {
        println!("{:#}", serde_json::json!(report));
    } else {
        print_report(report);
    }
    if let Some(e) = &report.error {
        bail!("the call failed: {e}");
    }
    Ok(())
}

fn none_if_empty<'a>(v: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = v.map(String::as_str).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(" ")
    }
}

fn print_report(r: &TestReport) {
    println!("{} {} ({}): {}", r.plugin, r.version, r.world, r.function);
    match (&r.result, &r.error) {
        (Some(v), _) => println!("result  {v}"),
        (None, Some(e)) => println!("error   {e}"),
        (None, None) => {}
    }
    let t = &r.trace;
    println!("logs ({})", t.logs.len());
    for l in &t.logs {
        println!("  {:<5} {}", l.level, l.message);
    }
    println!("host calls ({})", t.host_calls.len());
    for c in &t.host_calls {
        println!(
            "  {}({}) -> {}  [{} us]",
            c.function, c.args, c.outcome, c.micros
        );
    }
    println!("capabilities");
    println!("  used    {}", none_if_empty(t.used.iter()));
    println!("  denied  {}", none_if_empty(t.denied.iter()));
    let s = &r.spent;
    println!("spent");
    println!(
        "  wall time    {:.3} ms (limit {} ms)",
        s.wall_ms, s.timeout_ms
    );
    println!(
        "  peak memory  {:.2} MiB linear memory (limit {} MiB)",
        s.peak_memory_bytes as f64 / f64::from(1u32 << 20),
        s.memory_limit_bytes >> 20
    );
    println!(
        "  host calls   {} (limit {})",
        s.host_calls, s.max_host_calls
    );
    println!("  fuel         not metered (time is bounded by epoch interruption)");
}

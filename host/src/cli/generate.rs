//! `llmos generate` (a prompt, streamed to stdout) and `llmos chat` (interactive, with
//! history and `/reset`), on the same engine as `/v1/completions` and `/v1/chat/completions`.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::core::Model;
use crate::core::generate::{ChatMessage, GenEvent, GenerateRequest, Sampling, Usage};

/// Sampling flags shared by both commands.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Generation model.
    #[arg(long, short)]
    pub model: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// 0 = greedy (always the most likely token).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Keep the most likely tokens whose probabilities sum to this.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Drop tokens less likely than min_p × the most likely.
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Penalise tokens already seen (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Same seed ⇒ same text.
    #[arg(long)]
    pub seed: Option<u64>,
    /// A string that ends the text (repeatable; never printed).
    #[arg(long)]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    fn request(&self, prompt: Vec<u32>) -> GenerateRequest {
        GenerateRequest {
            prompt,
            max_tokens: self.max_tokens,
            sampling: Sampling {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repetition_penalty: self.repetition_penalty,
                seed: self.seed,
                ..Sampling::default()
            },
            stop: self.stop.clone(),
            logprobs: None,
            constraint: None,
        }
    }
}

/// `llmos generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The prompt (else stdin).
    prompt: Option<String>,
}

impl GenerateArgs {
    /// The model's name.
    pub fn model(&self) -> String {
        self.sampling.model.clone()
    }
}

impl ChatArgs {
    /// The model's name.
    pub fn model(&self) -> String {
        self.sampling.model.clone()
    }
}

/// Streams one generation to stdout; returns the text, why it ended and the counts.
fn stream(model: &Model, req: GenerateRequest) -> Result<(String, String, Usage)> {
    let mut s = model.generate(req)?;
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    while let Some(ev) = s.next_blocking() {
        match ev? {
            GenEvent::Token { text: t, .. } => {
                out.write_all(t.as_bytes())?;
                out.flush()?;
                text.push_str(&t);
            }
            GenEvent::Done {
                finish_reason,
                usage,
            } => return Ok((text, finish_reason.as_str().to_string(), usage)),
        }
    }
    bail!("model {} stopped before the generation ended", model.name())
}

/// Runs `llmos generate`: the text on stdout, then how it ended on stderr.
pub fn generate(model: &Model, a: GenerateArgs) -> Result<()> {
    let prompt = match a.prompt {
        Some(p) => p,
        None => std::io::read_to_string(std::io::stdin()).context("reading the prompt from stdin")?,
    };
    let ids = model.prompt_ids(&prompt)?;
    let (_, finish, usage) = stream(model, a.sampling.request(ids))?;
    println!();
    eprintln!(
        "[finish_reason {finish}, {} prompt + {} generated tokens]",
        usage.prompt_tokens, usage.completion_tokens
    );
    Ok(())
}

/// `llmos chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    sampling: SamplingArgs,
    /// A system message that starts every conversation.
    #[arg(long)]
    system: Option<String>,
}

/// Runs `llmos chat`: one line from stdin per user turn; `/reset` forgets the
/// conversation, `/exit` (or end of input) quits.
pub fn chat(model: &Model, a: ChatArgs) -> Result<()> {
    let start: Vec<ChatMessage> = a
        .system
        .iter()
        .map(|s| ChatMessage {
            role: "system".into(),
            content: s.clone(),
        })
        .collect();
    let mut history = start.clone();
    eprintln!("chatting with {} (/reset forgets, /exit quits)", model.name());
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.clone_from(&start);
                eprintln!("[conversation reset]");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage {
            role: "user".into(),
            content: line,
        });
        let ids = match model.chat_ids(&history) {
            Ok(ids) => ids,
            Err(e) => {
                history.pop();
                eprintln!("error: {e}");
                continue;
            }
        };
        match stream(model, a.sampling.request(ids)) {
            Ok((text, _, _)) => {
                println!();
                history.push(ChatMessage {
                    role: "assistant".into(),
                    content: text,
                });
            }
            Err(e) => {
                history.pop();
                println!();
                eprintln!("error: {e:#}");
            }
        }
    }
    Ok(())
}

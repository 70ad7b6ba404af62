//! Grammar-constrained decoding (docs/generation.md §6a): a JSON Schema subset compiles to
//! a [`Grammar`]; a [`Matcher`] follows one sequence's bytes through it; a [`TokenTable`]
//! (each token's bytes and a trie, built once per model) turns a matcher state into the
//! set of tokens that may come next. [`JsonConstraint`] is what the engine sees: before each
//! draw, tokens the grammar refuses get −∞; an end-of-sequence token is allowed only where
//! the value is complete (and so forced once nothing else may follow).

mod matcher;
pub mod order;
mod schema;
mod validate;
mod vocab;

use std::sync::Arc;

pub use matcher::Matcher;
pub use schema::{ACCEPTED, Grammar, SchemaError};
pub use vocab::TokenTable;

/// A constraint on what a sequence may generate (`GenerateRequest::constraint`).
pub trait Constraint: Send + Sync + std::fmt::Debug {
    /// The state of one new sequence.
    fn start(&self) -> Box<dyn ConstraintState>;
}

/// One sequence's state under a [`Constraint`].
pub trait ConstraintState: Send {
    /// Sets the logits of tokens that may not come next to −∞; `eos` are the model's
    /// end-of-sequence tokens.
    fn mask(&mut self, logits: &mut [f32], eos: &[u32]);
    /// Records the token drawn.
    fn accept(&mut self, token: u32);
}

/// Whether the answer must be the grammar's value, or may be free text instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Only the grammar's value (`response_format`, a required tool call).
    Always,
    /// The first token decides: one that opens a JSON object (`{`) commits to the grammar,
    /// any other to free text (tool_choice `auto`).
    FirstToken,
}

/// JSON under a grammar, over a model's token table.
#[derive(Debug)]
pub struct JsonConstraint {
    grammar: Grammar,
    table: Arc<TokenTable>,
    start: Start,
}

impl JsonConstraint {
    /// A constraint for `grammar` over `table`.
    pub fn new(grammar: Grammar, table: Arc<TokenTable>, start: Start) -> Self {
        Self { grammar, table, start }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Undecided,
    Json,
    Free,
}

struct JsonState {
    c: Arc<JsonConstraint>,
    m: Matcher,
    mode: Mode,
    levels: Vec<Matcher>,
    allowed: Vec<bool>,
}

impl Constraint for Arc<JsonConstraint> {
    fn start(&self) -> Box<dyn ConstraintState> {
        let mode = match self.start {
            Start::Always => Mode::Json,
            Start::FirstToken => Mode::Undecided,
        };
        Box::new(JsonState {
            c: Arc::clone(self),
            m: Matcher::new(),
            mode,
            levels: Vec::new(),
            allowed: vec![false; self.table.len()],
        })
    }
}

/// Whether a token's first byte other than whitespace opens an object.
fn opens_object(bytes: Option<&[u8]>) -> bool {
    bytes.and_then(|b| b.iter().find(|c| !c.is_ascii_whitespace())) == Some(&b'{')
}

impl ConstraintState for JsonState {
    fn mask(&mut self, logits: &mut [f32], eos: &[u32]) {
        if self.mode == Mode::Free {
            return;
        }
        let (g, table) = (&self.c.grammar, &self.c.table);
        table.allowed(g, &self.m, &mut self.levels, &mut self.allowed);
        let ends = self.mode == Mode::Undecided || self.m.is_complete(g) || !self.allowed.contains(&true);
        let kept: Vec<(u32, f32)> = eos
            .iter()
            .filter_map(|&e| logits.get(e as usize).map(|&l| (e, l)))
            .collect();
        let undecided = self.mode == Mode::Undecided;
        for (i, l) in logits.iter_mut().enumerate() {
            let id = u32::try_from(i).unwrap_or(u32::MAX);
            let ok = self.allowed.get(i).copied().unwrap_or(false) || (undecided && !opens_object(table.bytes(id)));
            if !ok {
                *l = f32::NEG_INFINITY;
            }
        }
        if ends {
            for (e, l) in kept {
                if let Some(x) = logits.get_mut(e as usize) {
                    *x = l;
                }
            }
        }
    }

    fn accept(&mut self, token: u32) {
        let bytes = self.c.table.bytes(token).unwrap_or_default();
        if self.mode == Mode::Undecided {
            let mut m = self.m.clone();
            // `[` opens the array of several tool calls when the grammar takes one.
            let opens = opens_object(Some(bytes)) || bytes.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'[');
            self.mode = if opens && m.feed_all(&self.c.grammar, bytes) {
                self.m = m;
                Mode::Json
            } else {
                Mode::Free
            };
            return;
        }
        if self.mode == Mode::Json {
            self.m.feed_all(&self.c.grammar, bytes);
        }
    }
}

#[cfg(test)]
mod tests;

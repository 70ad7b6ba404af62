//! The model's vocabulary as bytes (byte-level BPE: the GPT-2 byte-to-unicode alphabet
//! mapped back), and a trie over it so that a mask walks shared prefixes once.

use std::collections::HashMap;

use tokenizers::Tokenizer;

use super::matcher::Matcher;
use super::schema::Grammar;

#[derive(Debug, Default)]
struct TrieNode {
    children: Vec<(u8, u32)>,
    tokens: Vec<u32>,
}

/// Each token's bytes (`None`: special or control tokens, never inside JSON) and the trie.
#[derive(Debug)]
pub struct TokenTable {
    bytes: Vec<Option<Box<[u8]>>>,
    /// Every token.
    trie: Vec<TrieNode>,
    /// Tokens that are plain string content (printable ASCII but `"` and `\\`, whole UTF-8
    /// characters), with their character counts: inside a string any of them may come next
    /// (length bounds permitting), so a mask there walks only [`Self::rest`].
    plain: Vec<(u32, u32)>,
    /// The trie of the other tokens.
    rest: Vec<TrieNode>,
}

/// Characters of `b` if it is plain string content.
fn plain_chars(b: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(b).ok()?;
    if text.chars().any(|c| c < ' ' || c == '"' || c == '\\' || c == '\u{7f}') {
        return None;
    }
    u32::try_from(text.chars().count()).ok()
}

fn trie_of<'a>(tokens: impl Iterator<Item = (usize, &'a [u8])>) -> Vec<TrieNode> {
    let mut trie = vec![TrieNode::default()];
    for (id, b) in tokens {
        let mut at = 0usize;
        for &c in b {
            let next = trie.get(at).and_then(|n| n.children.iter().find(|(x, _)| *x == c).map(|(_, i)| *i));
            at = match next {
                Some(i) => i as usize,
                None => {
                    let i = trie.len();
                    trie.push(TrieNode::default());
                    if let Some(n) = trie.get_mut(at) {
                        n.children.push((c, u32::try_from(i).unwrap_or(u32::MAX)));
                    }
                    i
                }
            };
        }
        if let Some(n) = trie.get_mut(at) {
            n.tokens.push(u32::try_from(id).unwrap_or(u32::MAX));
        }
    }
    trie
}

/// GPT-2's byte-to-unicode alphabet, reversed.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
        let c = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256u32.saturating_add(extra)).unwrap_or('\0');
            extra = extra.saturating_add(1);
            c
        };
        map.insert(c, b);
    }
    map
}

impl TokenTable {
    /// Reads the vocabulary of a byte-level BPE tokenizer; another kind is refused.
    pub fn new(tok: &Tokenizer) -> Result<Self, String> {
        let byte_level = tok
            .get_decoder()
            .and_then(|d| serde_json::to_string(d).ok())
            .is_some_and(|d| d.contains("ByteLevel"));
        if !byte_level {
            return Err("structured output needs a byte-level BPE tokenizer (GPT-2 style, as every GGUF import writes); this model's tokenizer is another kind".into());
        }
        let map = unicode_to_byte();
        let added = tok.get_added_tokens_decoder();
        let size = tok.get_vocab_size(true);
        let mut bytes = Vec::with_capacity(size);
        for id in 0..size {
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            let b = match added.get(&id) {
                Some(a) if a.special => None,
                Some(a) => Some(a.content.as_bytes().to_vec()),
                None => tok
                    .id_to_token(id)
                    .and_then(|t| t.chars().map(|c| map.get(&c).copied()).collect::<Option<Vec<u8>>>()),
            };
            bytes.push(b.filter(|b| !b.is_empty()).map(Vec::into_boxed_slice));
        }
        Ok(Self::from_bytes(bytes))
    }

    /// A table from each token's bytes.
    pub fn from_bytes(bytes: Vec<Option<Box<[u8]>>>) -> Self {
        let all = || bytes.iter().enumerate().filter_map(|(i, b)| b.as_deref().map(|b| (i, b)));
        let trie = trie_of(all());
        let plain: Vec<(u32, u32)> = all()
            .filter_map(|(i, b)| Some((u32::try_from(i).ok()?, plain_chars(b)?)))
            .collect();
        let rest = trie_of(all().filter(|(_, b)| plain_chars(b).is_none()));
        Self { bytes, trie, plain, rest }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A token's bytes (`None` for special tokens and ids outside the table).
    pub fn bytes(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize).and_then(|b| b.as_deref())
    }

    /// Marks in `allowed` every token the grammar accepts after `m`. `levels` is scratch
    /// space kept between calls (one matcher per trie depth).
    pub fn allowed(&self, g: &Grammar, m: &Matcher, levels: &mut Vec<Matcher>, allowed: &mut [bool]) {
        allowed.iter_mut().for_each(|a| *a = false);
        if levels.is_empty() {
            levels.push(m.clone());
        } else if let Some(first) = levels.first_mut() {
            first.clone_from(m);
        }
        let trie = match m.string_body(g) {
            Some((chars, max)) => {
                let room = max.map_or(u32::MAX, |m| m.saturating_sub(chars));
                for &(id, n) in &self.plain {
                    if n <= room
                        && let Some(a) = allowed.get_mut(id as usize)
                    {
                        *a = true;
                    }
                }
                &self.rest
            }
            None => &self.trie,
        };
        self.walk(trie, g, 0, 0, levels, allowed);
    }

    #[allow(clippy::only_used_in_recursion)] // why: a method, next to the table it walks
    fn walk(&self, trie: &[TrieNode], g: &Grammar, node: usize, depth: usize, levels: &mut Vec<Matcher>, allowed: &mut [bool]) {
        let Some(n) = trie.get(node) else { return };
        let next = depth.saturating_add(1);
        while levels.len() <= next {
            levels.push(Matcher::new());
        }
        for &(b, child) in &n.children {
            let (lo, hi) = levels.split_at_mut(next);
            let (Some(src), Some(dst)) = (lo.last(), hi.first_mut()) else { return };
            if !dst.feed_from(g, src, b) {
                continue;
            }
            if let Some(c) = trie.get(child as usize) {
                for &t in &c.tokens {
                    if let Some(a) = allowed.get_mut(t as usize) {
                        *a = true;
                    }
                }
            }
            self.walk(trie, g, child as usize, next, levels, allowed);
        }
    }
}

//! The incremental matcher: a pushdown automaton over bytes for the JSON a [`Grammar`]
//! describes. A [`Matcher`] holds a few live stacks (more than one only while an `anyOf`
//! has not been decided yet); a byte either advances them or is refused.

use super::schema::{Grammar, Node, NodeId, OPEN_ITEMS_MAX, OPEN_KEY_MAX, Prop};

/// Most consecutive whitespace bytes between JSON tokens (a small model otherwise emits
/// newlines forever).
const MAX_WS: u8 = 1;
/// Most bytes of a number.
const MAX_NUMBER: u8 = 24;
/// Most live stacks (ambiguous `anyOf` branches) kept at once.
const MAX_STACKS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Str {
    Body,
    Escape,
    Hex(u8),
    /// Continuation bytes left, and the range of the next one.
    Utf8(u8, u8, u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Sign,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Obj {
    Open,
    Key,
    KeyString,
    Colon,
    Value,
    AfterValue,
    Comma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arr {
    Open,
    AfterItem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// A value of this node starts here.
    Value(NodeId),
    Str { node: NodeId, chars: u32, st: Str },
    Num { integer: bool, st: Num, len: u8 },
    Lit { node: NodeId, pick: u32, off: u32 },
    Arr { node: NodeId, items: u32, st: Arr },
    Obj { node: NodeId, start: u32, prop: u32, off: u32, st: Obj },
}

/// One parse: the open values, innermost last, and the current whitespace run.
#[derive(Debug, Clone, Default)]
struct Stack {
    frames: Vec<Frame>,
    ws: u8,
}

enum Out {
    Ok,
    Dead,
    Fork(NodeId),
}

/// The state of one sequence under a grammar.
#[derive(Debug, Clone)]
pub struct Matcher {
    stacks: Vec<Stack>,
    live: usize,
}

impl Matcher {
    /// Before the first byte.
    pub fn new() -> Self {
        Self { stacks: vec![Stack { frames: vec![Frame::Value(0)], ws: 0 }], live: 1 }
    }

    /// Advances by `b`; false (and the state is dead) if the grammar refuses it.
    pub fn feed(&mut self, g: &Grammar, b: u8) -> bool {
        let src = self.clone();
        self.feed_from(g, &src, b)
    }

    /// Advances by all of `bytes`; false if any is refused.
    pub fn feed_all(&mut self, g: &Grammar, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.feed(g, b))
    }

    /// Becomes `src` advanced by `b`, reusing this state's allocations.
    pub fn feed_from(&mut self, g: &Grammar, src: &Self, b: u8) -> bool {
        self.live = 0;
        for s in src.stacks.iter().take(src.live) {
            self.emit(g, s, b);
        }
        self.live > 0
    }

    fn emit(&mut self, g: &Grammar, s: &Stack, b: u8) {
        if self.live >= MAX_STACKS {
            return;
        }
        if self.stacks.len() <= self.live {
            self.stacks.push(Stack::default());
        }
        let Some(slot) = self.stacks.get_mut(self.live) else { return };
        slot.clone_from(s);
        match step(g, slot, b) {
            Out::Ok => self.live = self.live.saturating_add(1),
            Out::Dead => {}
            Out::Fork(node) => {
                let base = slot.clone();
                let alts = match g.nodes.get(node as usize) {
                    Some(Node::AnyOf(a)) => a.clone(),
                    _ => Vec::new(),
                };
                for alt in alts {
                    let mut c = base.clone();
                    if let Some(top) = c.frames.last_mut() {
                        *top = Frame::Value(alt);
                    }
                    self.emit(g, &c, b);
                }
            }
        }
    }

    /// Inside the body of a string (one parse, no escape or character half-way): its
    /// characters so far and its most.
    pub fn string_body(&self, g: &Grammar) -> Option<(u32, Option<u32>)> {
        if self.live != 1 {
            return None;
        }
        match self.stacks.first()?.frames.last()? {
            Frame::Str { node, chars, st: Str::Body } => match g.nodes.get(*node as usize) {
                Some(Node::String { max, .. }) => Some((*chars, *max)),
                _ => Some((*chars, Some(OPEN_KEY_MAX))),
            },
            _ => None,
        }
    }

    /// Whether the bytes so far are a whole value (end of sequence allowed).
    pub fn is_complete(&self, g: &Grammar) -> bool {
        self.stacks.iter().take(self.live).any(|s| match s.frames.as_slice() {
            [] => true,
            [Frame::Num { st, .. }] => num_accepts(*st),
            [Frame::Lit { node, pick, off }] => lit(g, *node, *pick).is_some_and(|l| l.len() == *off as usize),
            _ => false,
        })
    }

    /// Whether no byte can follow (the value is closed).
    pub fn is_closed(&self) -> bool {
        self.stacks.iter().take(self.live).all(|s| s.frames.is_empty())
    }

    /// Whether any parse is still alive.
    pub fn is_alive(&self) -> bool {
        self.live > 0
    }
}

impl Default for Matcher {
    fn default() -> Self {
        Self::new()
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

fn num_accepts(st: Num) -> bool {
    matches!(st, Num::Zero | Num::Int | Num::Frac | Num::Exp)
}

fn lits(g: &Grammar, node: NodeId) -> &[Vec<u8>] {
    match g.nodes.get(node as usize) {
        Some(Node::Literals(l)) => l,
        _ => &[],
    }
}

fn lit(g: &Grammar, node: NodeId, pick: u32) -> Option<&[u8]> {
    lits(g, node).get(pick as usize).map(Vec::as_slice)
}

fn props(g: &Grammar, node: NodeId) -> &[Prop] {
    match g.nodes.get(node as usize) {
        Some(Node::Object(p)) => p,
        _ => &[],
    }
}

fn inc(x: u32) -> u32 {
    x.saturating_add(1)
}

/// A whitespace byte where JSON allows it: counted, refused past the bound.
fn ws(s: &mut Stack) -> Out {
    if s.ws >= MAX_WS {
        return Out::Dead;
    }
    s.ws = s.ws.saturating_add(1);
    Out::Ok
}

/// The innermost value is complete: pop it and tell its parent.
fn complete(s: &mut Stack) {
    s.frames.pop();
    match s.frames.last_mut() {
        Some(Frame::Obj { st, .. }) if *st == Obj::KeyString => *st = Obj::Colon,
        Some(Frame::Obj { st, .. }) => *st = Obj::AfterValue,
        Some(Frame::Arr { items, st, .. }) => {
            *items = inc(*items);
            *st = Arr::AfterItem;
        }
        _ => {}
    }
}

/// Feeds one byte to one stack.
fn step(g: &Grammar, s: &mut Stack, b: u8) -> Out {
    let white = is_ws(b);
    loop {
        let Some(top) = s.frames.last().copied() else { return Out::Dead };
        let out = match top {
            Frame::Value(_) if white => return ws(s),
            Frame::Value(node) => start(g, s, node, b),
            Frame::Str { node, chars, st } => string(g, s, node, chars, st, b),
            Frame::Num { integer, st, len } => match number(integer, st, len, b) {
                Some(f) => set_top(s, f),
                None if num_accepts(st) => {
                    complete(s);
                    continue; // the byte belongs to the parent
                }
                None => Out::Dead,
            },
            Frame::Lit { node, pick, off } => match literal(g, s, node, pick, off, b) {
                Some(out) => out,
                None => continue,
            },
            Frame::Arr { node, items, st } => array(g, s, node, items, st, b),
            Frame::Obj { node, start, prop, off, st } => {
                if white && matches!(st, Obj::Open | Obj::Colon | Obj::AfterValue | Obj::Comma) {
                    return ws(s);
                }
                object(g, s, (node, start, prop, off, st), b)
            }
        };
        if !white && !matches!(out, Out::Dead) {
            s.ws = 0;
        }
        return out;
    }
}

fn set_top(s: &mut Stack, f: Frame) -> Out {
    match s.frames.last_mut() {
        Some(top) => {
            *top = f;
            Out::Ok
        }
        None => Out::Dead,
    }
}

/// The first byte of a value of `node`.
fn start(g: &Grammar, s: &mut Stack, node: NodeId, b: u8) -> Out {
    match g.nodes.get(node as usize) {
        Some(Node::AnyOf(_)) => Out::Fork(node),
        Some(Node::Object(_) | Node::AnyObject { .. }) if b == b'{' => {
            set_top(s, Frame::Obj { node, start: 0, prop: 0, off: 0, st: Obj::Open })
        }
        Some(Node::String { .. }) if b == b'"' => set_top(s, Frame::Str { node, chars: 0, st: Str::Body }),
        Some(Node::Array { .. }) if b == b'[' => set_top(s, Frame::Arr { node, items: 0, st: Arr::Open }),
        Some(n @ (Node::Number | Node::Integer)) => {
            let integer = matches!(n, Node::Integer);
            match b {
                b'-' => set_top(s, Frame::Num { integer, st: Num::Sign, len: 1 }),
                b'0' => set_top(s, Frame::Num { integer, st: Num::Zero, len: 1 }),
                b'1'..=b'9' => set_top(s, Frame::Num { integer, st: Num::Int, len: 1 }),
                _ => Out::Dead,
            }
        }
        Some(Node::Literals(l)) => match l.iter().position(|x| x.first() == Some(&b)) {
            Some(pick) => {
                let pick = u32::try_from(pick).unwrap_or(u32::MAX);
                let out = set_top(s, Frame::Lit { node, pick, off: 1 });
                settle_literal(g, s, node, pick, 1);
                out
            }
            None => Out::Dead,
        },
        _ => Out::Dead,
    }
}

/// Pops a literal that is complete and that no other candidate extends.
fn settle_literal(g: &Grammar, s: &mut Stack, node: NodeId, pick: u32, off: u32) {
    let all = lits(g, node);
    let Some(typed) = lit(g, node, pick).and_then(|l| l.get(..off as usize)) else { return };
    let done = typed.len() == lit(g, node, pick).map_or(0, <[u8]>::len);
    let longer = all.iter().any(|l| l.len() > typed.len() && l.starts_with(typed));
    if done && !longer {
        complete(s);
    }
}

/// A byte of a literal; `None`: the literal is complete and the byte is its parent's.
fn literal(g: &Grammar, s: &mut Stack, node: NodeId, pick: u32, off: u32, b: u8) -> Option<Out> {
    let typed = lit(g, node, pick).and_then(|l| l.get(..off as usize)).unwrap_or_default();
    let next = lits(g, node)
        .iter()
        .position(|l| l.starts_with(typed) && l.get(off as usize) == Some(&b));
    match next {
        Some(j) => {
            let pick = u32::try_from(j).unwrap_or(u32::MAX);
            let out = set_top(s, Frame::Lit { node, pick, off: inc(off) });
            settle_literal(g, s, node, pick, inc(off));
            Some(out)
        }
        None if lit(g, node, pick).is_some_and(|l| l.len() == off as usize) => {
            complete(s);
            None
        }
        None => Some(Out::Dead),
    }
}

fn number(integer: bool, st: Num, len: u8, b: u8) -> Option<Frame> {
    if len >= MAX_NUMBER {
        return None;
    }
    let next = match (st, b) {
        (Num::Sign, b'0') => Num::Zero,
        (Num::Sign, b'1'..=b'9') => Num::Int,
        (Num::Int, b'0'..=b'9') => Num::Int,
        (Num::Zero | Num::Int, b'.') if !integer => Num::Dot,
        (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') if !integer => Num::E,
        (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
        (Num::E, b'+' | b'-') => Num::ESign,
        (Num::E | Num::ESign | Num::Exp, b'0'..=b'9') => Num::Exp,
        _ => return None,
    };
    Some(Frame::Num { integer, st: next, len: len.saturating_add(1) })
}

fn string(g: &Grammar, s: &mut Stack, node: NodeId, chars: u32, st: Str, b: u8) -> Out {
    let (min, max) = match g.nodes.get(node as usize) {
        Some(Node::String { min, max }) => (*min, *max),
        _ => (0, Some(OPEN_KEY_MAX)), // a key of an open object
    };
    let room = max.is_none_or(|m| chars < m);
    let next = match st {
        Str::Body => match b {
            b'"' if chars >= min => {
                complete(s);
                return Out::Ok;
            }
            b'\\' if room => (inc(chars), Str::Escape),
            0x20..=0x7f if b != b'"' && b != b'\\' && room => (inc(chars), Str::Body),
            0xc2..=0xdf if room => (inc(chars), Str::Utf8(1, 0x80, 0xbf)),
            0xe0 if room => (inc(chars), Str::Utf8(2, 0xa0, 0xbf)),
            0xed if room => (inc(chars), Str::Utf8(2, 0x80, 0x9f)),
            0xe1..=0xef if room => (inc(chars), Str::Utf8(2, 0x80, 0xbf)),
            0xf0 if room => (inc(chars), Str::Utf8(3, 0x90, 0xbf)),
            0xf1..=0xf3 if room => (inc(chars), Str::Utf8(3, 0x80, 0xbf)),
            0xf4 if room => (inc(chars), Str::Utf8(3, 0x80, 0x8f)),
            _ => return Out::Dead,
        },
        Str::Utf8(left, lo, hi) if (lo..=hi).contains(&b) => match left {
            0 | 1 => (chars, Str::Body),
            n => (chars, Str::Utf8(n.saturating_sub(1), 0x80, 0xbf)),
        },
        Str::Escape => match b {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => (chars, Str::Body),
            b'u' => (chars, Str::Hex(4)),
            _ => return Out::Dead,
        },
        // No surrogates (`\uD800`-`\uDFFF`): a lone one is not valid Unicode text.
        Str::Hex(4) if b.is_ascii_hexdigit() && !matches!(b, b'd' | b'D') => (chars, Str::Hex(3)),
        Str::Hex(n @ 1..=3) if b.is_ascii_hexdigit() => {
            (chars, if n == 1 { Str::Body } else { Str::Hex(n.saturating_sub(1)) })
        }
        _ => return Out::Dead,
    };
    set_top(s, Frame::Str { node, chars: next.0, st: next.1 })
}

fn array(g: &Grammar, s: &mut Stack, node: NodeId, items: u32, st: Arr, b: u8) -> Out {
    let Some(Node::Array { items: item, min, max }) = g.nodes.get(node as usize) else { return Out::Dead };
    if is_ws(b) {
        return ws(s);
    }
    match (st, b) {
        (Arr::Open, b']') | (Arr::AfterItem, b']') if items >= *min => {
            complete(s);
            Out::Ok
        }
        (Arr::Open, _) if max.is_none_or(|m| m > 0) => {
            s.frames.push(Frame::Value(*item));
            step(g, s, b)
        }
        (Arr::AfterItem, b',') if max.is_none_or(|m| items < m) => {
            s.frames.push(Frame::Value(*item));
            Out::Ok
        }
        _ => Out::Dead,
    }
}

/// The last property an object may write next when the one before was `start - 1`: up to
/// and including the first required one.
fn candidates(ps: &[Prop], start: u32) -> std::ops::Range<usize> {
    let start = start as usize;
    let end = ps
        .iter()
        .enumerate()
        .skip(start)
        .find(|(_, p)| p.required)
        .map_or(ps.len(), |(i, _)| i.saturating_add(1));
    start..end
}

fn object(g: &Grammar, s: &mut Stack, f: (NodeId, u32, u32, u32, Obj), b: u8) -> Out {
    let (node, start, prop, off, st) = f;
    let open = matches!(g.nodes.get(node as usize), Some(Node::AnyObject { .. }));
    let ps = props(g, node);
    let frame = |start, prop, off, st| Frame::Obj { node, start, prop, off, st };
    let none_required_from = |i: usize| ps.iter().skip(i).all(|p| !p.required);
    match (st, b) {
        (Obj::Open, b'}') if open || none_required_from(0) => {
            complete(s);
            Out::Ok
        }
        (Obj::AfterValue, b'}') if open || none_required_from((prop as usize).saturating_add(1)) => {
            complete(s);
            Out::Ok
        }
        // An open object counts its keys in `start`.
        (Obj::AfterValue, b',') if open && inc(start) < OPEN_ITEMS_MAX => set_top(s, frame(inc(start), prop, 0, Obj::Comma)),
        (Obj::AfterValue, b',') if !open && (prop as usize).saturating_add(1) < ps.len() => {
            set_top(s, frame(inc(prop), prop, 0, Obj::Comma))
        }
        (Obj::Open | Obj::Comma, b'"') if open => {
            let out = set_top(s, frame(start, prop, 0, Obj::KeyString));
            s.frames.push(Frame::Str { node, chars: 0, st: Str::Body });
            out
        }
        (Obj::Open | Obj::Comma, _) | (Obj::Key, _) => {
            let typed = ps.get(prop as usize).and_then(|p| p.key.get(..off as usize)).unwrap_or_default();
            let range = candidates(ps, start);
            let next = ps
                .iter()
                .enumerate()
                .skip(range.start)
                .take(range.len())
                .find(|(_, p)| p.key.starts_with(typed) && p.key.get(off as usize) == Some(&b));
            match next {
                Some((j, p)) => {
                    let j = u32::try_from(j).unwrap_or(u32::MAX);
                    let done = p.key.len() == (off as usize).saturating_add(1);
                    set_top(s, frame(start, j, inc(off), if done { Obj::Colon } else { Obj::Key }))
                }
                None => Out::Dead,
            }
        }
        (Obj::Colon, b':') => {
            let value = if open {
                match g.nodes.get(node as usize) {
                    Some(Node::AnyObject { values }) => *values,
                    _ => return Out::Dead,
                }
            } else {
                match ps.get(prop as usize) {
                    Some(p) => p.value,
                    None => return Out::Dead,
                }
            };
            let out = set_top(s, frame(start, prop, off, Obj::Value));
            s.frames.push(Frame::Value(value));
            out
        }
        _ => Out::Dead,
    }
}

//! `normalize`: a preprocessor that makes text canonical before policies and models see it.
//!
//! 1. Unicode NFKC (compatibility composition: full-width letters, ligatures, superscripts);
//! 2. removal of control characters (C0/C1 except tab and newlines), zero-width and bidi
//!    formatting characters, and the byte-order mark;
//! 3. whitespace clean-up: runs of whitespace become one space (config `collapse_whitespace`),
//!    optionally keeping line breaks (`keep_newlines`), and trimming (`trim`).

use llmos_plugin::preprocessor::{Guest, Request};
use llmos_plugin::{Error, config};
use unicode_normalization::UnicodeNormalization;

struct Normalize;

#[derive(Clone, Copy)]
struct Options {
    collapse_whitespace: bool,
    keep_newlines: bool,
    trim: bool,
}

/// Characters removed outright: invisible formatting that changes nothing a reader sees
/// but can hide words from policies (zero-width joiners, bidi overrides, BOM, soft hyphen).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn normalize(text: &str, o: Options) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    let mut pending_newlines = 0usize;
    for c in text.nfkc() {
        let c = if c == '\r' { '\n' } else { c };
        if is_invisible(c) || (c.is_control() && !c.is_whitespace()) {
            continue;
        }
        if c.is_whitespace() {
            if !(o.collapse_whitespace || (o.keep_newlines && c == '\n')) {
                out.push(c);
                continue;
            }
            if o.keep_newlines && c == '\n' {
                pending_newlines += 1;
            } else {
                pending_space = true;
            }
            continue;
        }
        if pending_newlines > 0 {
            if !(o.trim && out.is_empty()) {
                out.push_str(if pending_newlines > 1 { "\n\n" } else { "\n" });
            }
        } else if pending_space && !(o.trim && out.is_empty()) {
            out.push(' ');
        }
        pending_space = false;
        pending_newlines = 0;
        out.push(c);
    }
    if !o.trim {
        if pending_newlines > 0 {
            out.push('\n');
        } else if pending_space {
            out.push(' ');
        }
        out
    } else {
        out.trim().to_string()
    }
}

impl Guest for Normalize {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        let o = Options {
            collapse_whitespace: config::get_bool("collapse_whitespace", true)?,
            keep_newlines: config::get_bool("keep_newlines", false)?,
            trim: config::get_bool("trim", true)?,
        };
        Ok(request.inputs.iter().map(|t| normalize(t, o)).collect())
    }
}

llmos_plugin::export_preprocessor!(Normalize);

//! Files to documents: `.txt`, `.md` (one document each), `.html`/`.htm` (its text, via
//! `html2text`), `.csv` (one document per row: a text column, the others metadata) and
//! `.jsonl` (one document per line: a text field, the others metadata). A bad record is
//! reported with its file and line, and the rest goes on.
//!
//! PDF is refused: see [`Format::of`].

use crate::json::kind;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A document to ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// Its id, when given (else the keyed fingerprint of its content).
    pub id: Option<String>,
    /// Its text.
    pub text: String,
    /// Metadata.
    pub metadata: Map<String, Value>,
    /// Where it came from (`file` or `file:line`).
    pub source: Option<String>,
}

/// A record that could not be read; the others were.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadRecord {
    /// The file (or upload name).
    pub file: String,
    /// 1-based line (0: the whole file).
    pub line: u64,
    /// What was wrong.
    pub message: String,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Which fields of CSV and JSONL records hold the text and the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// The text column (CSV) or field (JSONL) [default `text`].
    pub text: String,
    /// The id column or field, used when present [default `id`].
    pub id: String,
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            text: "text".into(),
            id: "id".into(),
        }
    }
}

/// The formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text.
    Text,
    /// Markdown (kept as written: it is text).
    Markdown,
    /// HTML: its text.
    Html,
    /// CSV with a header row.
    Csv,
    /// JSON lines.
    Jsonl,
}

/// The extensions read, for messages.
pub const ACCEPTED: &str = ".txt, .md, .html, .htm, .csv, .jsonl";

impl Format {
    /// The format of a file name, by extension. PDF is refused: no pure-Rust PDF text
    /// extractor we could vet does it reliably (text order, fonts without a Unicode map,
    /// and panics on malformed files), so a PDF must be converted to text first.
    pub fn of(name: &str) -> Result<Self, String> {
        let ext = Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        Ok(match ext.as_str() {
            "txt" | "text" => Self::Text,
            "md" | "markdown" => Self::Markdown,
            "html" | "htm" => Self::Html,
            "csv" => Self::Csv,
            "jsonl" | "ndjson" => Self::Jsonl,
            "pdf" => {
                return Err(format!(
                    "{name}: PDF is not read (no pure-Rust PDF text extractor is reliable enough); \
                     convert it to text first (e.g. `pdftotext`); accepted: {ACCEPTED}"
                ));
            }
            _ => return Err(format!("{name}: unknown file type; accepted: {ACCEPTED}")),
        })
    }
}

/// Files under `paths` (folders recursively, in name order), and the ones that are not read
/// with why.
pub fn walk(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<BadRecord>) {
    let (mut files, mut skipped) = (Vec::new(), Vec::new());
    let mut todo: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(p) = todo.pop() {
        let name = p.display().to_string();
        let skip = |m: String| BadRecord {
            file: name.clone(),
            line: 0,
            message: m,
        };
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => match std::fs::read_dir(&p) {
                Ok(rd) => {
                    let mut inner: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    inner.sort();
                    todo.extend(inner.into_iter().rev());
                }
                Err(e) => skipped.push(skip(format!("cannot read the folder: {e}"))),
            },
            Ok(_) => match Format::of(&name) {
                Ok(_) => files.push(p),
                Err(e) => skipped.push(skip(e.trim_start_matches(&format!("{name}: ")).to_string())),
            },
            Err(e) => skipped.push(skip(format!("cannot read: {e}"))),
        }
    }
    (files, skipped)
}

/// Reads one file's documents (`name` is what reports call it).
pub fn parse(name: &str, bytes: &[u8], fields: &Fields) -> (Vec<Doc>, Vec<BadRecord>) {
    let bad = |line: u64, message: String| BadRecord {
        file: name.to_string(),
        line,
        message,
    };
    let format = match Format::of(name) {
        Ok(f) => f,
        Err(e) => return (Vec::new(), vec![bad(0, e)]),
    };
    match format {
        Format::Csv => return csv_docs(name, bytes, fields),
        Format::Jsonl => return jsonl_docs(name, bytes, fields),
        Format::Text | Format::Markdown | Format::Html => {}
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.to_string(),
        Err(e) => {
            let line = line_of(bytes, e.valid_up_to());
            return (Vec::new(), vec![bad(line, "is not UTF-8 text".into())]);
        }
    };
    let text = if format == Format::Html {
        match html2text::config::plain_no_decorate()
            .allow_width_overflow()
            .string_from_read(text.as_bytes(), 1000)
        {
            Ok(t) => t,
            Err(e) => return (Vec::new(), vec![bad(0, format!("cannot read the HTML: {e}"))]),
        }
    } else {
        text
    };
    if text.trim().is_empty() {
        return (Vec::new(), vec![bad(0, "holds no text".into())]);
    }
    let mut metadata = Map::new();
    metadata.insert("source".into(), Value::String(name.to_string()));
    let doc = Doc {
        id: None,
        text,
        metadata,
        source: Some(name.to_string()),
    };
    (vec![doc], Vec::new())
}

fn line_of(bytes: &[u8], at: usize) -> u64 {
    let before = bytes.get(..at).unwrap_or(bytes);
    (before.iter().filter(|&&b| b == b'\n').count() as u64).saturating_add(1)
}

/// A cell as metadata: numbers as numbers, the rest as strings.
fn cell(s: &str) -> Value {
    if let Ok(i) = s.parse::<i64>() {
        return Value::from(i);
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && !s.trim().is_empty() => Value::from(f),
        _ => Value::String(s.to_string()),
    }
}

fn csv_docs(name: &str, bytes: &[u8], fields: &Fields) -> (Vec<Doc>, Vec<BadRecord>) {
    let bad = |line: u64, message: String| BadRecord {
        file: name.to_string(),
        line,
        message,
    };
    let mut rd = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let headers = match rd.headers() {
        Ok(h) => h.clone(),
        Err(e) => return (Vec::new(), vec![bad(1, format!("cannot read the header row: {e}"))]),
    };
    let Some(text_col) = headers.iter().position(|h| h == fields.text) else {
        let cols: Vec<&str> = headers.iter().collect();
        return (
            Vec::new(),
            vec![bad(
                1,
                format!(
                    "no column {:?} (columns: {}); choose the text column with --text-column (HTTP: text_column)",
                    fields.text,
                    cols.join(", ")
                ),
            )],
        );
    };
    let id_col = headers.iter().position(|h| h == fields.id);
    let (mut docs, mut errors) = (Vec::new(), Vec::new());
    for rec in rd.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(bad(line, format!("malformed CSV record: {e}")));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let text = rec.get(text_col).unwrap_or_default();
        if text.trim().is_empty() {
            errors.push(bad(line, format!("column {:?} is empty", fields.text)));
            continue;
        }
        let mut metadata = Map::new();
        for (i, (h, v)) in headers.iter().zip(rec.iter()).enumerate() {
            if i != text_col && Some(i) != id_col && !v.is_empty() {
                metadata.insert(h.to_string(), cell(v));
            }
        }
        let id = id_col
            .and_then(|i| rec.get(i))
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        docs.push(Doc {
            id,
            text: text.to_string(),
            metadata,
            source: Some(format!("{name}:{line}")),
        });
    }
    (docs, errors)
}

fn jsonl_docs(name: &str, bytes: &[u8], fields: &Fields) -> (Vec<Doc>, Vec<BadRecord>) {
    let (mut docs, mut errors) = (Vec::new(), Vec::new());
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = (i as u64).saturating_add(1);
        match json_doc(raw, fields) {
            Ok(Some(mut d)) => {
                d.source = Some(format!("{name}:{line}"));
                docs.push(d);
            }
            Ok(None) => {}
            Err(message) => errors.push(BadRecord {
                file: name.to_string(),
                line,
                message,
            }),
        }
    }
    (docs, errors)
}

/// One JSON line as a document (`None`: a blank line).
fn json_doc(raw: &[u8], fields: &Fields) -> Result<Option<Doc>, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "is not UTF-8 text".to_string())?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(s).map_err(|e| format!("malformed JSON: {e}"))?;
    let Value::Object(mut obj) = v else {
        return Err(format!("expected a JSON object, got {}", kind(&v)));
    };
    let text = match obj.remove(&fields.text) {
        Some(Value::String(t)) if !t.trim().is_empty() => t,
        Some(Value::String(_)) => return Err(format!("field {:?} is empty", fields.text)),
        Some(other) => {
            return Err(format!("field {:?} is {}, not a string", fields.text, kind(&other)));
        }
        None => {
            return Err(format!(
                "no field {:?}; choose the text field with --text-field (HTTP: text_field)",
                fields.text
            ));
        }
    };
    let id = match obj.remove(&fields.id) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(format!("field {:?} is {}, not a string", fields.id, kind(&other))),
    };
    Ok(Some(Doc {
        id,
        text,
        metadata: obj,
        source: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_documents_and_bad_rows_name_their_line() {
        let csv = "id,text,year,lang\nr1,First row,2021,en\nr2,\"Second, quoted\",2022.5,de\nr3,too,many,fields,here\n,Fourth row,,fr\n";
        let (docs, bad) = parse("t.csv", csv.as_bytes(), &Fields::default());
        assert_eq!(docs.len(), 3, "{bad:?}");
        assert_eq!(docs[0].id.as_deref(), Some("r1"));
        assert_eq!(docs[1].text, "Second, quoted");
        assert_eq!(docs[1].metadata["year"], 2022.5);
        assert_eq!(docs[0].metadata["year"], 2021);
        assert_eq!(docs[2].id, None);
        assert!(!docs[2].metadata.contains_key("year"));
        assert_eq!(docs[2].source.as_deref(), Some("t.csv:5"));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 4, "{}", bad[0]);
        let (_, bad) = parse("t.csv", b"a,b\n1,2\n", &Fields::default());
        assert!(bad[0].message.contains("no column \"text\" (columns: a, b)"), "{}", bad[0]);
    }

    #[test]
    fn jsonl_lines_become_documents_and_bad_lines_are_reported() {
        let jl = "{\"id\":\"a\",\"body\":\"Alpha\",\"tag\":1}\n\n{not json}\n[1]\n{\"body\":\"Beta\"}\n{\"body\":3}\n";
        let f = Fields {
            text: "body".into(),
            ..Fields::default()
        };
        let (docs, bad) = parse("x.jsonl", jl.as_bytes(), &f);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].id.as_deref(), Some("a"));
        assert_eq!(docs[0].metadata["tag"], 1);
        assert_eq!(docs[1].source.as_deref(), Some("x.jsonl:5"));
        let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 4, 6]);
        assert!(bad[0].message.starts_with("malformed JSON"));
    }

    #[test]
    fn text_html_and_refused_formats() {
        let (d, _) = parse("a.html", b"<html><head><title>T</title><script>var x=1;</script></head><body><h1>Hello</h1><p>World <b>wide</b></p></body></html>", &Fields::default());
        let t = &d[0].text;
        assert!(t.contains("Hello") && t.contains("World wide"), "{t}");
        assert!(!t.contains('<') && !t.contains("var x"), "{t}");
        let (d, _) = parse("n.md", "# Title\n\nbody".as_bytes(), &Fields::default());
        assert_eq!(d[0].metadata["source"], "n.md");
        let (_, bad) = parse("bad.txt", b"ok\n\xff", &Fields::default());
        assert_eq!((bad[0].line, bad[0].message.as_str()), (2, "is not UTF-8 text"));
        assert!(Format::of("a.pdf").unwrap_err().contains("PDF is not read"));
        assert!(Format::of("a.exe").unwrap_err().contains(ACCEPTED));
    }
}

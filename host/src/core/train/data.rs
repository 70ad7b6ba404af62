//! Labelled rows in: csv/tsv/jsonl/TREC files are read into [`RawRow`]s (collections give
//! rows too), then checked and typed into a [`Dataset`]. Every error names the origin and
//! line and says what is accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::recipe::{Bin, Format, Recipe};

/// Rows a dataset needs at least (two classes, each with one row to train and one to validate).
pub const MIN_ROWS: usize = 4;

/// One labelled row as read, before typing.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// 1-based line of the file (or position in a collection) the row starts on.
    pub line: usize,
    /// The text.
    pub text: String,
    /// The raw label: a number, string or bool.
    pub label: Value,
}

/// Rows ready for training.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The texts.
    pub texts: Vec<String>,
    /// Class index of each text (into `classes`).
    pub labels: Vec<usize>,
    /// Class names, sorted.
    pub classes: Vec<String>,
    /// Rows left out (a numeric label in no bin).
    pub dropped: usize,
}

/// Why labelled data cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{origin}: cannot read the data file: {message}")]
    Io {
        /// The file.
        origin: String,
        /// What failed.
        message: String,
    },
    /// A line is not in the format.
    #[error("{origin}:{line}: {message}")]
    Parse {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// A column or field named by the recipe does not exist.
    #[error("{origin}: no {role} column {column:?}; the columns are {available}")]
    UnknownColumn {
        /// The file.
        origin: String,
        /// `text` or `label`.
        role: &'static str,
        /// The name asked for.
        column: String,
        /// What exists.
        available: String,
    },
    /// A row's text is empty.
    #[error("{origin}:{line}: the text is empty; every row needs a non-empty text")]
    EmptyText {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
    },
    /// A label is not a number, string or bool.
    #[error("{origin}:{line}: the label is {found}; accepted: a string, a number or a bool")]
    BadLabel {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// What was found.
        found: String,
    },
    /// Numbers and strings in one label column.
    #[error(
        "{origin}: the label column mixes types: line {number_line} has a number ({number}), \
         line {text_line} has text ({text}); labels must be all numbers or all strings{hint}"
    )]
    MixedTypes {
        /// The file.
        origin: String,
        /// First line with a number.
        number_line: usize,
        /// That number.
        number: String,
        /// First line with a string or bool.
        text_line: usize,
        /// That text.
        text: String,
        /// A hint when the text line looks like a header.
        hint: String,
    },
    /// The bins cannot be used.
    #[error("{origin}: bad bins: {message}")]
    BadBins {
        /// The file.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A renaming that matches no label (a typo).
    #[error("{origin}: label_names renames {key:?} but no row has that label; the labels are {found}")]
    UnusedName {
        /// The file.
        origin: String,
        /// The key of `label_names`.
        key: String,
        /// The labels seen.
        found: String,
    },
    /// Fewer rows than training needs.
    #[error("{origin}: {rows} usable rows{dropped}; at least {MIN_ROWS} are needed (two per class)")]
    TooFewRows {
        /// The file.
        origin: String,
        /// Rows left.
        rows: usize,
        /// ", N dropped by the bins" or nothing.
        dropped: String,
    },
    /// Every row has the same class.
    #[error("{origin}: every row has the label {class:?}; a classifier needs at least two classes")]
    OneClass {
        /// The file.
        origin: String,
        /// The only class.
        class: String,
    },
    /// A class too small to split.
    #[error(
        "{origin}:{line}: class {class:?} has only {rows} row; every class needs at least 2 \
         (one to train on, one to validate)"
    )]
    SmallClass {
        /// The file.
        origin: String,
        /// Its (first) line.
        line: usize,
        /// The class.
        class: String,
        /// Its rows.
        rows: usize,
    },
}

/// Reads a data file as the recipe says (`format`, `header`, `text_column`, `label_column`).
pub fn read_file(path: &Path, origin: &str, recipe: &Recipe) -> Result<Vec<RawRow>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::Io {
        origin: origin.into(),
        message: e.to_string(),
    })?;
    read_bytes(&bytes, origin, recipe)
}

/// Reads data from bytes (a file's contents, a member of a wheel).
pub fn read_bytes(bytes: &[u8], origin: &str, recipe: &Recipe) -> Result<Vec<RawRow>, DataError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match recipe.format {
        Format::Csv => read_delimited(bytes, b',', true, origin, recipe),
        Format::Tsv => read_delimited(bytes, b'\t', false, origin, recipe),
        Format::Jsonl => read_lines(bytes, origin, |line, n| jsonl_row(line, n, origin, recipe)),
        Format::Trec => read_lines(bytes, origin, |line, n| trec_row(line, n, origin)),
    }
}

fn text_column(recipe: &Recipe) -> &str {
    recipe.text_column.as_deref().unwrap_or("text")
}

fn label_column(recipe: &Recipe) -> &str {
    recipe.label_column.as_deref().unwrap_or("label")
}

/// A field of a csv/tsv line as a label: a JSON number when it is one, else the text.
fn label_value(field: &str) -> Value {
    match serde_json::from_str::<Value>(field.trim()) {
        Ok(v @ Value::Number(_)) => v,
        _ => Value::String(field.to_string()),
    }
}

fn read_delimited(
    bytes: &[u8],
    delimiter: u8,
    quoting: bool,
    origin: &str,
    recipe: &Recipe,
) -> Result<Vec<RawRow>, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.records();
    let mut columns: Option<(usize, usize)> = None;
    let mut rows = Vec::new();
    while let Some(record) = records.next() {
        let record = record.map_err(|e| csv_error(&e, origin))?;
        let line = record.position().map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let (t, l) = match columns {
            Some(c) => c,
            None => {
                let c = resolve_columns(&record, origin, recipe)?;
                columns = Some(c);
                if recipe.header {
                    continue;
                }
                c
            }
        };
        let field = |i: usize, role: &str| {
            record.get(i).ok_or_else(|| DataError::Parse {
                origin: origin.into(),
                line,
                message: format!(
                    "the line has {} fields; the {role} is field {} (0-based {i})",
                    record.len(),
                    i.saturating_add(1)
                ),
            })
        };
        rows.push(RawRow {
            line,
            text: field(t, "text")?.to_string(),
            label: label_value(field(l, "label")?),
        });
    }
    Ok(rows)
}

fn csv_error(e: &csv::Error, origin: &str) -> DataError {
    let line = e
        .position()
        .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
    let message = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "the line is not valid UTF-8; data files must be UTF-8".to_string(),
        _ => format!("not a valid delimited line: {e}"),
    };
    DataError::Parse {
        origin: origin.into(),
        line,
        message,
    }
}

/// The text and label column indexes: header names, or 0-based indexes without a header.
fn resolve_columns(first: &csv::StringRecord, origin: &str, recipe: &Recipe) -> Result<(usize, usize), DataError> {
    let find = |role: &'static str, name: &str| -> Result<usize, DataError> {
        let found = if recipe.header {
            first.iter().position(|h| h.trim() == name)
        } else {
            name.trim().parse::<usize>().ok().filter(|i| *i < first.len())
        };
        found.ok_or_else(|| DataError::UnknownColumn {
            origin: origin.into(),
            role,
            column: name.into(),
            available: if recipe.header {
                format!("{:?} (from the header line)", first.iter().collect::<Vec<_>>())
            } else {
                format!(
                    "0 to {} (header = false: columns are 0-based indexes)",
                    first.len().saturating_sub(1)
                )
            },
        })
    };
    Ok((find("text", text_column(recipe))?, find("label", label_column(recipe))?))
}

/// Lines of a line-based format: CRLF and blank lines handled, `row` makes each row.
fn read_lines(
    bytes: &[u8],
    origin: &str,
    mut row: impl FnMut(&str, usize) -> Result<RawRow, DataError>,
) -> Result<Vec<RawRow>, DataError> {
    let mut rows = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let n = i.saturating_add(1);
        let line = std::str::from_utf8(raw).map_err(|_| DataError::Parse {
            origin: origin.into(),
            line: n,
            message: "the line is not valid UTF-8; data files must be UTF-8".into(),
        })?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        rows.push(row(line, n)?);
    }
    Ok(rows)
}

fn jsonl_row(line: &str, n: usize, origin: &str, recipe: &Recipe) -> Result<RawRow, DataError> {
    let parse = |message: String| DataError::Parse {
        origin: origin.into(),
        line: n,
        message,
    };
    let value: Value = serde_json::from_str(line)
        .map_err(|e| parse(format!("not a JSON object ({e}); jsonl needs one object per line")))?;
    let Value::Object(object) = value else {
        return Err(parse("not a JSON object; jsonl needs one object per line".into()));
    };
    let field = |role: &'static str, name: &str| {
        object.get(name).ok_or_else(|| DataError::UnknownColumn {
            origin: format!("{origin}:{n}"),
            role,
            column: name.into(),
            available: format!("{:?}", object.keys().collect::<Vec<_>>()),
        })
    };
    let text = match field("text", text_column(recipe))? {
        Value::String(s) => s.clone(),
        other => return Err(parse(format!("the text field is {}; it must be a string", kind(other)))),
    };
    Ok(RawRow {
        line: n,
        text,
        label: field("label", label_column(recipe))?.clone(),
    })
}

fn trec_row(line: &str, n: usize, origin: &str) -> Result<RawRow, DataError> {
    let (tag, text) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let coarse = tag.split_once(':').map(|(c, _)| c).filter(|c| !c.is_empty());
    let Some(coarse) = coarse else {
        return Err(DataError::Parse {
            origin: origin.into(),
            line: n,
            message: format!("{tag:?} is not a TREC label; accepted: COARSE:fine followed by the text"),
        });
    };
    Ok(RawRow {
        line: n,
        text: text.trim().to_string(),
        label: Value::String(coarse.to_string()),
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A typed label of one row.
enum Typed {
    Number(f64, String),
    Text(String),
}

fn typed(row: &RawRow, origin: &str) -> Result<Typed, DataError> {
    match &row.label {
        Value::Number(n) => Ok(Typed::Number(n.as_f64().unwrap_or(f64::NAN), n.to_string())),
        Value::String(s) if !s.trim().is_empty() => Ok(Typed::Text(s.trim().to_string())),
        Value::Bool(b) => Ok(Typed::Text(b.to_string())),
        other => Err(DataError::BadLabel {
            origin: origin.into(),
            line: row.line,
            found: if other.as_str().is_some() { "empty".into() } else { kind(other).into() },
        }),
    }
}

/// Checks and types rows: label kinds, bins, renaming, classes (sorted), class sizes.
pub fn dataset(rows: Vec<RawRow>, origin: &str, recipe: &Recipe) -> Result<Dataset, DataError> {
    check_bins(&recipe.bins, origin)?;
    let mut names: Vec<(usize, String, String)> = Vec::with_capacity(rows.len());
    let mut first_number: Option<(usize, String)> = None;
    let mut first_text: Option<(usize, String)> = None;
    let mut dropped = 0usize;
    for row in rows {
        if row.text.trim().is_empty() {
            return Err(DataError::EmptyText {
                origin: origin.into(),
                line: row.line,
            });
        }
        let name = match typed(&row, origin)? {
            Typed::Number(v, text) => {
                first_number.get_or_insert((row.line, text.clone()));
                if recipe.bins.is_empty() {
                    Some(text)
                } else {
                    bin_of(&recipe.bins, v)
                }
            }
            Typed::Text(t) => {
                first_text.get_or_insert((row.line, t.clone()));
                Some(t)
            }
        };
        match name {
            Some(name) => names.push((row.line, row.text, name)),
            None => dropped = dropped.saturating_add(1),
        }
    }
    if let (Some((number_line, number)), Some((text_line, text))) = (&first_number, &first_text) {
        let hint = if text_line < number_line && recipe.header {
            String::new()
        } else if text_line < number_line {
            format!(" (if line {text_line} names the columns, set header = true)")
        } else {
            String::new()
        };
        return Err(DataError::MixedTypes {
            origin: origin.into(),
            number_line: *number_line,
            number: number.clone(),
            text_line: *text_line,
            text: text.clone(),
            hint,
        });
    }
    if let (false, Some((line, text))) = (recipe.bins.is_empty(), &first_text) {
        return Err(DataError::BadBins {
            origin: origin.into(),
            message: format!("bins need numeric labels, but line {line} has the label {text:?}"),
        });
    }
    rename(&mut names, &recipe.label_names, origin)?;
    classes_of(names, dropped, origin)
}

fn check_bins(bins: &[Bin], origin: &str) -> Result<(), DataError> {
    for (i, b) in bins.iter().enumerate() {
        let bad = |message: String| DataError::BadBins {
            origin: origin.into(),
            message: format!("bin {i} ({:?}): {message}", b.label),
        };
        if b.label.trim().is_empty() {
            return Err(bad("the label is empty; every bin needs a class name".into()));
        }
        if b.above.is_some_and(|v| !v.is_finite()) || b.below.is_some_and(|v| !v.is_finite()) {
            return Err(bad("bounds must be finite numbers".into()));
        }
        if let (Some(a), Some(z)) = (b.above, b.below)
            && a >= z
        {
            return Err(bad(format!("above = {a} is not below below = {z}: no value fits")));
        }
    }
    Ok(())
}

fn bin_of(bins: &[Bin], v: f64) -> Option<String> {
    bins.iter()
        .find(|b| b.above.is_none_or(|a| v > a) && b.below.is_none_or(|z| v < z))
        .map(|b| b.label.clone())
}

fn rename(names: &mut [(usize, String, String)], map: &BTreeMap<String, String>, origin: &str) -> Result<(), DataError> {
    let seen: BTreeSet<String> = names.iter().map(|(_, _, n)| n.clone()).collect();
    if let Some(key) = map.keys().find(|k| !seen.contains(*k)) {
        return Err(DataError::UnusedName {
            origin: origin.into(),
            key: key.clone(),
            found: format!("{:?}", seen.iter().collect::<Vec<_>>()),
        });
    }
    for (_, _, name) in names.iter_mut() {
        if let Some(new) = map.get(name.as_str()) {
            *name = new.clone();
        }
    }
    Ok(())
}

fn classes_of(names: Vec<(usize, String, String)>, dropped: usize, origin: &str) -> Result<Dataset, DataError> {
    if names.len() < MIN_ROWS {
        return Err(DataError::TooFewRows {
            origin: origin.into(),
            rows: names.len(),
            dropped: if dropped > 0 { format!(" ({dropped} dropped: in no bin)") } else { String::new() },
        });
    }
    // Class → (rows, first line).
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (line, _, name) in &names {
        let e = counts.entry(name.as_str()).or_insert((0, *line));
        e.0 = e.0.saturating_add(1);
    }
    if let [(class, _)] = counts.iter().collect::<Vec<_>>().as_slice() {
        return Err(DataError::OneClass {
            origin: origin.into(),
            class: (*class).to_string(),
        });
    }
    if let Some((class, (rows, line))) = counts.iter().find(|(_, (n, _))| *n < 2) {
        return Err(DataError::SmallClass {
            origin: origin.into(),
            line: *line,
            class: (*class).to_string(),
            rows: *rows,
        });
    }
    let classes: Vec<String> = counts.keys().map(|c| (*c).to_string()).collect();
    let index: BTreeMap<&str, usize> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let mut ds = Dataset {
        texts: Vec::with_capacity(names.len()),
        labels: Vec::with_capacity(names.len()),
        classes: Vec::new(),
        dropped,
    };
    for (_, text, name) in names {
        ds.labels.push(index.get(name.as_str()).copied().unwrap_or(0));
        ds.texts.push(text);
    }
    ds.classes = classes;
    Ok(ds)
}

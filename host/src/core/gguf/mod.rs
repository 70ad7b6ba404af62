//! GGUF files (llama.cpp's model format): reading, dequantising, and importing a llama-architecture
//! model as an ONNX causal LM with its tokenizer (see `docs/generation.md`).
//!
//! The reader checks every count and length against the bytes left in the file before it
//! allocates, so a truncated or hostile file is an error that names what is wrong, never a
//! panic or a huge allocation. Tensor data is read on demand ([`GgufFile::tensor_bytes`]).

pub mod import;
pub mod quant;
pub mod vocab;
pub mod tokenizer;

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use quant::GgmlType;
pub use vocab::GgufVocab;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// More dimensions than any ggml tensor has.
const MAX_DIMS: u32 = 4;
/// Nesting of arrays in metadata (GGUF has no nested arrays in practice).
const MAX_ARRAY_DEPTH: u32 = 2;

/// What went wrong reading or importing a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Reading the file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a GGUF file or is damaged.
    #[error("{path} is not a valid GGUF file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file is valid but holds something the importer does not handle.
    #[error("cannot import {path}: {message}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is not handled and what is.
        message: String,
    },
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `UINT8`.
    U8(u8),
    /// `INT8`.
    I8(i8),
    /// `UINT16`.
    U16(u16),
    /// `INT16`.
    I16(i16),
    /// `UINT32`.
    U32(u32),
    /// `INT32`.
    I32(i32),
    /// `FLOAT32`.
    F32(f32),
    /// `BOOL`.
    Bool(bool),
    /// `STRING`.
    String(String),
    /// `ARRAY`.
    Array(Vec<Value>),
    /// `UINT64`.
    U64(u64),
    /// `INT64`.
    I64(i64),
    /// `FLOAT64`.
    F64(f64),
}

impl Value {
    /// An unsigned integer of any width (negative signed values are `None`).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    /// A float of either width.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => None,
        }
    }
    /// A string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One tensor's description.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml dimensions, innermost first (`[in_features, out_features]` for a weight).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of its data from the start of the file.
    pub offset: u64,
    /// Size of its data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |a, d| a.saturating_mul(*d))
    }
}

/// A GGUF file's header, metadata and tensor descriptions.
#[derive(Debug, Clone)]
pub struct GgufFile {
    /// The file.
    pub path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensors in file order.
    pub tensors: Vec<TensorInfo>,
    /// Where tensor data starts.
    pub data_offset: u64,
}

/// A reader that knows how many bytes are left, so no length is trusted beyond them.
struct Cur<R> {
    r: R,
    left: u64,
    path: PathBuf,
}

impl<R: Read> Cur<R> {
    fn bad(&self, message: String) -> GgufError {
        GgufError::Format {
            path: self.path.clone(),
            message,
        }
    }
    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let n = N as u64;
        if self.left < n {
            return Err(self.bad(format!(
                "truncated: {what} needs {n} bytes, {} left",
                self.left
            )));
        }
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|source| GgufError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.left = self.left.saturating_sub(n);
        Ok(b)
    }
    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        self.take::<4>(what).map(u32::from_le_bytes)
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        self.take::<8>(what).map(u64::from_le_bytes)
    }
    /// A count of items each at least `min_size` bytes, checked against what is left.
    fn count(&mut self, what: &str, min_size: u64) -> Result<usize, GgufError> {
        let n = self.u64(what)?;
        if n.saturating_mul(min_size) > self.left {
            return Err(self.bad(format!(
                "truncated or damaged: {what} is {n}, but only {} bytes are left in the file",
                self.left
            )));
        }
        usize::try_from(n).map_err(|_| self.bad(format!("{what} {n} is too large")))
    }
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.count(&format!("length of {what}"), 1)?;
        let mut b = vec![0u8; n];
        self.r.read_exact(&mut b).map_err(|source| GgufError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.left = self.left.saturating_sub(n as u64);
        String::from_utf8(b).map_err(|_| self.bad(format!("{what} is not UTF-8")))
    }

    fn value(&mut self, ty: u32, what: &str, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U8(self.take::<1>(what).map(u8::from_le_bytes)?),
            1 => Value::I8(self.take::<1>(what).map(i8::from_le_bytes)?),
            2 => Value::U16(self.take::<2>(what).map(u16::from_le_bytes)?),
            3 => Value::I16(self.take::<2>(what).map(i16::from_le_bytes)?),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(self.take::<4>(what).map(i32::from_le_bytes)?),
            6 => Value::F32(self.take::<4>(what).map(f32::from_le_bytes)?),
            7 => match self.take::<1>(what)? {
                [0] => Value::Bool(false),
                [1] => Value::Bool(true),
                [b] => return Err(self.bad(format!("{what}: bool byte {b}, expected 0 or 1"))),
            },
            8 => Value::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.bad(format!("{what}: arrays nested too deeply")));
                }
                let elem = self.u32(what)?;
                let n = self.count(&format!("element count of {what}"), min_size(elem))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, what, depth.saturating_add(1))?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(self.take::<8>(what).map(i64::from_le_bytes)?),
            12 => Value::F64(self.take::<8>(what).map(f64::from_le_bytes)?),
            other => {
                return Err(self.bad(format!(
                    "{what}: unknown value type {other} (0-12 are defined)"
                )));
            }
        })
    }
}

/// Smallest encoded size of a value of type `ty` (for bounding array counts).
fn min_size(ty: u32) -> u64 {
    match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8..=12 => 8,
        _ => 1,
    }
}

impl GgufFile {
    /// Reads the header, metadata and tensor descriptions of `path`.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Self::read(BufReader::with_capacity(1 << 16, file), len, path)
    }

    /// [`GgufFile::open`] on bytes already in memory (the fuzz target; `name` stands for the
    /// path in messages). Tensor data is not read, only checked to lie inside `bytes`.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self, GgufError> {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        Self::read(bytes, len, Path::new(name))
    }

    fn read<R: Read>(r: R, len: u64, path: &Path) -> Result<Self, GgufError> {
        let mut c = Cur {
            r,
            left: len,
            path: path.to_path_buf(),
        };
        if &c.take::<4>("the magic")? != MAGIC {
            return Err(c.bad("it does not start with the magic bytes \"GGUF\"".into()));
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(c.bad(format!(
                "version {version} is not supported (2 and 3 are)"
            )));
        }
        // A tensor description is at least 8 (name) + 4 + 8 + 4 + 8 bytes; a metadata entry 8 + 4 + 1.
        let n_tensors = c.count("the tensor count", 32)?;
        let n_kv = c.count("the metadata count", 13)?;
        let mut metadata = Vec::with_capacity(n_kv);
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key {i}"))?;
            let ty = c.u32(&key)?;
            let v = c.value(ty, &key, 0)?;
            metadata.push((key, v));
        }
        let mut tensors = Vec::with_capacity(n_tensors);
        for i in 0..n_tensors {
            tensors.push(read_tensor_info(&mut c, i)?);
        }
        let mut f = Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data_offset: 0,
        };
        f.place_data(&c, len)?;
        Ok(f)
    }

    /// Computes where data starts and checks every tensor lies inside the file.
    fn place_data<R: Read>(&mut self, c: &Cur<R>, len: u64) -> Result<(), GgufError> {
        let alignment = match self.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v
                .as_u64()
                .filter(|a| *a > 0 && a.is_power_of_two() && *a <= 1 << 20)
                .ok_or_else(|| {
                    c.bad(format!(
                        "general.alignment is {v:?}; it must be a power of two"
                    ))
                })?,
        };
        let pos = len.saturating_sub(c.left);
        self.data_offset = pos.div_ceil(alignment).saturating_mul(alignment);
        let data_len = len.saturating_sub(self.data_offset);
        for t in &mut self.tensors {
            if t.offset.checked_rem(alignment) != Some(0) {
                return Err(c.bad(format!(
                    "tensor {} has offset {}, not a multiple of the alignment {alignment}",
                    t.name, t.offset
                )));
            }
            let end = t.offset.checked_add(t.size).filter(|e| *e <= data_len);
            if end.is_none() {
                return Err(c.bad(format!(
                    "truncated: tensor {} needs bytes {}..{} of the data section, which has {data_len}",
                    t.name,
                    t.offset,
                    t.offset.saturating_add(t.size)
                )));
            }
            t.offset = t.offset.saturating_add(self.data_offset);
        }
        Ok(())
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A tensor's description.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's raw bytes, read from the file.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Result<Vec<u8>, GgufError> {
        let io = |source| GgufError::Io {
            path: self.path.clone(),
            source,
        };
        let mut f = File::open(&self.path).map_err(io)?;
        f.seek(SeekFrom::Start(t.offset)).map_err(io)?;
        let n = usize::try_from(t.size).map_err(|_| GgufError::Unsupported {
            path: self.path.clone(),
            message: format!("tensor {} is too large for this machine", t.name),
        })?;
        let mut b = vec![0u8; n];
        f.read_exact(&mut b).map_err(io)?;
        Ok(b)
    }

    /// A tensor dequantised to `f32`, in ggml order (innermost dimension contiguous).
    pub fn tensor_f32(&self, t: &TensorInfo) -> Result<Vec<f32>, GgufError> {
        let bytes = self.tensor_bytes(t)?;
        quant::dequantize(t.ty, &bytes).map_err(|message| GgufError::Format {
            path: self.path.clone(),
            message: format!("tensor {}: {message}", t.name),
        })
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, GgufError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.format(format!("{key} must be an array of strings"))),
            Some(_) => Err(self.format(format!("{key} must be an array of strings"))),
        }
    }

    fn format(&self, message: String) -> GgufError {
        GgufError::Format {
            path: self.path.clone(),
            message,
        }
    }

    fn opt_u32(&self, key: &str) -> Option<u32> {
        self.get(key)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
    }

    fn opt_bool(&self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// The tokenizer part of the metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).
    pub fn vocab(&self) -> Result<GgufVocab, GgufError> {
        let model = self
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .ok_or_else(|| self.format("it has no tokenizer.ggml.model string".into()))?
            .to_string();
        let tokens = self.strings("tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(self.format("it has no tokenizer.ggml.tokens".into()));
        }
        let token_types = match self.get("tokenizer.ggml.token_type") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::I32(i) => Some(*i),
                    other => other.as_u64().and_then(|u| i32::try_from(u).ok()),
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    self.format("tokenizer.ggml.token_type must be an array of integers".into())
                })?,
            Some(_) => {
                return Err(self.format("tokenizer.ggml.token_type must be an array".into()));
            }
        };
        Ok(GgufVocab {
            model,
            pre: self
                .get("tokenizer.ggml.pre")
                .and_then(Value::as_str)
                .map(str::to_string),
            tokens,
            token_types,
            merges: self.strings("tokenizer.ggml.merges")?,
            bos_token_id: self.opt_u32("tokenizer.ggml.bos_token_id"),
            eos_token_id: self.opt_u32("tokenizer.ggml.eos_token_id"),
            unknown_token_id: self.opt_u32("tokenizer.ggml.unknown_token_id"),
            padding_token_id: self.opt_u32("tokenizer.ggml.padding_token_id"),
            add_bos_token: self.opt_bool("tokenizer.ggml.add_bos_token"),
            add_space_prefix: self.opt_bool("tokenizer.ggml.add_space_prefix"),
            chat_template: self
                .get("tokenizer.chat_template")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

fn read_tensor_info<R: Read>(c: &mut Cur<R>, i: usize) -> Result<TensorInfo, GgufError> {
    let name = c.string(&format!("name of tensor {i}"))?;
    let n_dims = c.u32(&name)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(c.bad(format!(
            "tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS} are valid)"
        )));
    }
    let mut dims = Vec::with_capacity(4);
    for _ in 0..n_dims {
        dims.push(c.u64(&name)?);
    }
    let ty_id = c.u32(&name)?;
    let ty = GgmlType::from_id(ty_id).ok_or_else(|| {
        c.bad(format!(
            "tensor {name} has type {ty_id}, which llmos cannot read (it reads {})",
            GgmlType::ALL_NAMES
        ))
    })?;
    let offset = c.u64(&name)?;
    let elements = dims.iter().try_fold(1u64, |a, d| a.checked_mul(*d));
    let size = elements
        .and_then(|n| ty.bytes_for(n))
        .ok_or_else(|| {
            c.bad(format!(
                "tensor {name}: dimensions {dims:?} do not fit type {} (block of {} elements)",
                ty.name(),
                ty.block_size()
            ))
        })?;
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
        size,
    })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)] // why: a test-only GGUF writer of small counts
mod tests;

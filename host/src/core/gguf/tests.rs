use super::*;

/// Builds GGUF bytes by hand (the format of ggml's `gguf.md`).
#[derive(Default)]
pub(crate) struct Writer {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

fn s(out: &mut Vec<u8>, v: &str) {
    out.extend((v.len() as u64).to_le_bytes());
    out.extend(v.as_bytes());
}

impl Writer {
    pub(crate) fn kv(&mut self, key: &str, ty: u32, value: &[u8]) -> &mut Self {
        s(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        self.kv.extend(value);
        self.n_kv += 1;
        self
    }
    pub(crate) fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        let mut b = Vec::new();
        s(&mut b, v);
        self.kv(key, 8, &b)
    }
    pub(crate) fn kv_strs(&mut self, key: &str, vs: &[&str]) -> &mut Self {
        let mut b = 8u32.to_le_bytes().to_vec();
        b.extend((vs.len() as u64).to_le_bytes());
        for v in vs {
            s(&mut b, v);
        }
        self.kv(key, 9, &b)
    }
    pub(crate) fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, data: &[u8]) -> &mut Self {
        while !self.data.len().is_multiple_of(32) {
            self.data.push(0);
        }
        s(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(data);
        self.n_tensors += 1;
        self
    }
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(self.n_tensors.to_le_bytes());
        b.extend(self.n_kv.to_le_bytes());
        b.extend(&self.kv);
        b.extend(&self.infos);
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        b.extend(&self.data);
        b
    }
}

fn sample() -> Vec<u8> {
    let mut w = Writer::default();
    w.kv("u8", 0, &[7])
        .kv("i8", 1, &[0xFF])
        .kv("u16", 2, &500u16.to_le_bytes())
        .kv("i16", 3, &(-2i16).to_le_bytes())
        .kv("u32", 4, &70000u32.to_le_bytes())
        .kv("i32", 5, &(-3i32).to_le_bytes())
        .kv("f32", 6, &1.5f32.to_le_bytes())
        .kv("bool", 7, &[1])
        .kv("u64", 10, &(1u64 << 40).to_le_bytes())
        .kv("i64", 11, &(-4i64).to_le_bytes())
        .kv("f64", 12, &2.25f64.to_le_bytes())
        .kv_str("tokenizer.ggml.model", "gpt2")
        .kv_strs("tokenizer.ggml.tokens", &["a", "b", "ab"])
        .kv_strs("tokenizer.ggml.merges", &["a b"])
        .kv("tokenizer.ggml.bos_token_id", 4, &1u32.to_le_bytes())
        .kv("tokenizer.ggml.add_bos_token", 7, &[0])
        .kv_str("tokenizer.chat_template", "{{ x }}");
    let mut tt = 5u32.to_le_bytes().to_vec();
    tt.extend(3u64.to_le_bytes());
    for t in [1i32, 1, 3] {
        tt.extend(t.to_le_bytes());
    }
    w.kv("tokenizer.ggml.token_type", 9, &tt);
    let f: Vec<u8> = [1f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    w.tensor("w", &[2, 2], 0, &f).tensor("v", &[3], 0, &f[..12]);
    w.bytes()
}

fn write(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, bytes).unwrap();
    (dir, p)
}

#[test]
fn reads_every_value_type_tensors_and_vocab() {
    let (_d, p) = write(&sample());
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.get("u8"), Some(&Value::U8(7)));
    assert_eq!(f.get("i8"), Some(&Value::I8(-1)));
    assert_eq!(f.get("u16"), Some(&Value::U16(500)));
    assert_eq!(f.get("i16"), Some(&Value::I16(-2)));
    assert_eq!(f.get("u32"), Some(&Value::U32(70000)));
    assert_eq!(f.get("i32"), Some(&Value::I32(-3)));
    assert_eq!(f.get("f32"), Some(&Value::F32(1.5)));
    assert_eq!(f.get("bool"), Some(&Value::Bool(true)));
    assert_eq!(f.get("u64"), Some(&Value::U64(1 << 40)));
    assert_eq!(f.get("i64"), Some(&Value::I64(-4)));
    assert_eq!(f.get("f64"), Some(&Value::F64(2.25)));
    assert_eq!(f.data_offset % 32, 0);
    let w = f.tensor("w").unwrap();
    assert_eq!((w.dims.clone(), w.ty, w.size), (vec![2, 2], GgmlType::F32, 16));
    assert_eq!(f.tensor_f32(w).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    let v = f.tensor("v").unwrap();
    assert_eq!(v.offset - w.offset, 32, "second tensor aligned");
    assert_eq!(f.tensor_f32(v).unwrap(), vec![1.0, 2.0, 3.0]);
    let vocab = f.vocab().unwrap();
    assert_eq!(vocab.model, "gpt2");
    assert_eq!(vocab.tokens, ["a", "b", "ab"]);
    assert_eq!(vocab.token_types, [1, 1, 3]);
    assert_eq!(vocab.merges, ["a b"]);
    assert_eq!(vocab.bos_token_id, Some(1));
    assert_eq!(vocab.add_bos_token, Some(false));
    assert_eq!(vocab.chat_template.as_deref(), Some("{{ x }}"));
}

/// Every truncation of a valid file is an error (never a panic), naming the cut.
#[test]
fn bytes_in_memory_parse_like_the_file() {
    let full = sample();
    let (_d, p) = write(&full);
    let from_file = GgufFile::open(&p).unwrap();
    let from_bytes = GgufFile::parse(&full, "sample.gguf").unwrap();
    assert_eq!(from_bytes.metadata, from_file.metadata);
    assert_eq!(from_bytes.tensors, from_file.tensors);
    assert_eq!(from_bytes.data_offset, from_file.data_offset);
    for len in [0, 4, 8, full.len() / 2, full.len() - 1] {
        let e = GgufFile::parse(&full[..len], "cut.gguf").unwrap_err().to_string();
        assert!(e.contains("cut.gguf is not a valid GGUF file"), "cut at {len}: {e}");
    }
}

#[test]
fn every_truncation_is_a_clear_error() {
    let full = sample();
    let (_d, p) = write(&full);
    for len in 0..full.len() {
        std::fs::write(&p, &full[..len]).unwrap();
        let e = GgufFile::open(&p).unwrap_err().to_string();
        assert!(
            e.contains("not a valid GGUF file") && (e.contains("truncated") || e.contains("left")),
            "cut at {len}: {e}"
        );
    }
}

#[test]
fn hostile_counts_and_types_are_refused_without_allocating() {
    let mut b = sample();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
    let (_d, p) = write(&b);
    let e = GgufFile::open(&p).unwrap_err().to_string();
    assert!(e.contains("tensor count is 18446744073709551615"), "{e}");

    let mut w = Writer::default();
    let mut arr = 4u32.to_le_bytes().to_vec();
    arr.extend((1u64 << 60).to_le_bytes());
    w.kv("big", 9, &arr);
    let (_d, p) = write(&w.bytes());
    let e = GgufFile::open(&p).unwrap_err().to_string();
    assert!(e.contains("element count of big"), "{e}");

    let mut w = Writer::default();
    w.kv("odd", 13, &[0]);
    let (_d, p) = write(&w.bytes());
    let e = GgufFile::open(&p).unwrap_err().to_string();
    assert!(e.contains("unknown value type 13"), "{e}");

    let mut w = Writer::default();
    w.tensor("q", &[33], 2, &[0; 18]);
    let (_d, p) = write(&w.bytes());
    let e = GgufFile::open(&p).unwrap_err().to_string();
    assert!(e.contains("do not fit type Q4_0"), "{e}");

    let (_d, p) = write(b"GGML\x03\0\0\0");
    let e = GgufFile::open(&p).unwrap_err().to_string();
    assert!(e.contains("magic"), "{e}");
}

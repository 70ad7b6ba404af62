use super::*;

const FIXTURE: &str = include_str!("../../../../../tests/fixtures/gguf/quant_blocks.json");

fn fixture(name: &str) -> (Vec<u8>, Vec<f32>) {
    let v: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let e = &v[name];
    let bytes = hex::decode(e["hex"].as_str().unwrap()).unwrap();
    let vals = e["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    (bytes, vals)
}

/// Every type matches gguf-py's `dequantize` on the committed blocks (real blocks of the
/// SmolLM2 file for Q4_1/Q8_0). A wrong nibble order, scale unpacking or offset shows here.
#[test]
fn dequantisation_matches_gguf_py() {
    for ty in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        let (bytes, want) = fixture(ty.name());
        let got = dequantize(ty, &bytes).unwrap();
        assert_eq!(got.len(), want.len(), "{}", ty.name());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{} element {i}: {g} vs gguf-py {w}",
                ty.name()
            );
        }
    }
}

#[test]
fn partial_blocks_are_an_error() {
    let e = dequantize(GgmlType::Q4_1, &[0u8; 21]).unwrap_err();
    assert!(e.contains("21 bytes") && e.contains("Q4_1"), "{e}");
}

/// The MatMulNBits form of Q4_0/Q4_1/Q8_0 blocks dequantises (as ORT does) to ggml's values.
#[test]
fn nbits_mapping_is_exact() {
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_0] {
        let (bytes, want) = fixture(ty.name());
        let nb = to_nbits(ty, &bytes, 1, 64).unwrap();
        assert_eq!(nb.bits, if ty == GgmlType::Q8_0 { 8 } else { 4 });
        assert_eq!(nb.scales.len(), 2);
        let got = nb.dequantize();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-6, "{} element {i}: {g} vs {w}", ty.name());
        }
    }
    assert!(to_nbits(GgmlType::Q4_K, &[0; 144], 1, 256).is_none());
    assert!(to_nbits(GgmlType::Q4_1, &[0; 20], 1, 33).is_none());
}

#[test]
fn q4_1_block_with_zero_scale_keeps_its_min() {
    let mut b = vec![0u8; 20];
    b[2..4].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
    b[4] = 0x3C;
    let nb = to_nbits(GgmlType::Q4_1, &b, 1, 32).unwrap();
    assert!(nb.dequantize().iter().all(|v| *v == 0.5));
}

#[test]
fn requantisation_is_close() {
    let w: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
    let q4 = requantize_q4(&w, 4, 64).unwrap().dequantize();
    let q8 = requantize_q8(&w, 4, 64).unwrap().dequantize();
    let max = |q: &[f32]| w.iter().zip(q).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    // Half a step of a block's range /15 (4-bit) or amax/127 (8-bit).
    assert!(max(&q4) <= 2.5 / 15.0 / 2.0 + 1e-5, "{}", max(&q4));
    assert!(max(&q8) <= 1.25 / 127.0 / 2.0 + 1e-5, "{}", max(&q8));
}

"""Re-quantises tensors of a GGUF to the K-quants Q4_K and Q6_K (llama.cpp's block formats).

gguf-py (gguf==0.19.0) dequantises K-quants but cannot quantise them, so the packing is done
here in NumPy and checked: every packed tensor is dequantised again with
`gguf.quants.dequantize` and must equal, bit for bit, the values this tool meant to store.

K-quant super-blocks hold 256 values, so only tensors whose rows are a multiple of 256 can be
K-quantised (llama.cpp falls back to other types for the rest too). By default every such
2-D weight is re-quantised, alternating Q4_K (even layers) and Q6_K (odd layers); other
tensors are copied unchanged, as is all metadata.

Usage: python requantize_kquant.py IN.gguf OUT.gguf [--types Q4_K,Q6_K]
Prints a JSON summary: tensors per type, and the RMS / max error each type added.
"""
import argparse
import json
import re
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

QK = 256


def f16(x):
    """Rounds to float16 as stored, back in float32."""
    return x.astype(np.float16).astype(np.float32)


def pack_q4_k(x):
    """[n, 256] float32 → ([n, 144] uint8 blocks, the values they hold)."""
    n = x.shape[0]
    sub = x.reshape(n, 8, 32)
    lo = np.minimum(sub.min(-1), 0.0)  # the stored min is subtracted: keep it ≤ 0
    hi = sub.max(-1)
    scale = (hi - lo) / 15.0
    d = f16(scale.max(-1) / 63.0)
    dmin = f16(-lo.min(-1) / 63.0)
    safe = lambda v: np.where(v > 0, v, 1.0)
    sc = np.clip(np.rint(scale / safe(d)[:, None]), 0, 63).astype(np.uint8)
    mn = np.clip(np.rint(-lo / safe(dmin)[:, None]), 0, 63).astype(np.uint8)
    step = d[:, None] * sc  # [n, 8]
    off = dmin[:, None] * mn
    q = np.rint((sub + off[..., None]) / safe(step)[..., None])
    q = np.clip(np.where(step[..., None] > 0, q, 0), 0, 15).astype(np.uint8)  # [n, 8, 32]
    want = (step[..., None] * q - off[..., None]).reshape(n, QK)

    scales = np.zeros((n, 12), np.uint8)
    scales[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((mn[:, 4:8] & 0x0F) << 4)
    # bytes 32i..32i+32: sub-block 2i in the low nibbles, 2i+1 in the high ones
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(n, 128)
    blocks = np.concatenate([
        d.astype(np.float16).view(np.uint8).reshape(n, 2),
        dmin.astype(np.float16).view(np.uint8).reshape(n, 2),
        scales, qs], axis=1)
    return blocks, want


def pack_q6_k(x):
    """[n, 256] float32 → ([n, 210] uint8 blocks, the values they hold)."""
    n = x.shape[0]
    sub = x.reshape(n, 16, 16)
    amax = np.abs(sub).max(-1)
    scale = amax / 31.0
    d = f16(scale.max(-1) / 127.0)
    safe = lambda v: np.where(v > 0, v, 1.0)
    sc = np.clip(np.rint(scale / safe(d)[:, None]), -128, 127).astype(np.int8)
    step = d[:, None] * sc.astype(np.float32)
    q = np.rint(sub / safe(step)[..., None])
    q = (np.clip(np.where(step[..., None] > 0, q, 0), -32, 31) + 32).astype(np.uint8)
    want = (step[..., None] * (q.astype(np.float32) - 32)).reshape(n, QK)

    q = q.reshape(n, 2, 128)  # two halves of 128 values
    low = (q & 0x0F).reshape(n, 2, 2, 64)
    ql = (low[:, :, 0, :] | (low[:, :, 1, :] << 4)).reshape(n, 128)
    high = (q >> 4).reshape(n, 2, 4, 32)
    qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6))
    blocks = np.concatenate([
        ql, qh.reshape(n, 64), sc.view(np.uint8),
        d.astype(np.float16).view(np.uint8).reshape(n, 2)], axis=1)
    return blocks, want


PACK = {"Q4_K": (T.Q4_K, pack_q4_k), "Q6_K": (T.Q6_K, pack_q6_k)}


def requantize(values, kind):
    """values [rows, cols] float32 → (uint8 data [rows, cols/256*size], stored values)."""
    rows, cols = values.shape
    qtype, pack = PACK[kind]
    blocks, want = pack(values.reshape(-1, QK).astype(np.float32))
    data = blocks.reshape(rows, -1)
    got = dequantize(data, qtype).reshape(rows, cols)
    if not np.array_equal(got, want.reshape(rows, cols)):
        bad = np.abs(got - want.reshape(rows, cols)).max()
        sys.exit(f"{kind} packing does not round-trip through gguf.quants.dequantize (max {bad})")
    return data, got


def layer(name):
    m = re.match(r"blk\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--types", default="Q4_K,Q6_K", help="alternated by layer (even, odd)")
    a = ap.parse_args()
    kinds = a.types.split(",")
    for k in kinds:
        if k not in PACK:
            sys.exit(f"--types: {k} is not accepted; accepted: {', '.join(PACK)}")
    r = gguf.GGUFReader(a.src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(a.dst, arch)
    for f in r.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue
        vt = f.types[0]
        sub = f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(f.name, f.contents(), vt, sub_type=sub)

    out = []
    summary = {"tensors": {}, "error": {}}
    for t in r.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))  # numpy order
        i = layer(t.name)
        if len(shape) == 2 and shape[1] % QK == 0 and i is not None and t.name.endswith(".weight"):
            kind = kinds[i % len(kinds)]
            src = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
            data, got = requantize(src, kind)
            e = summary["error"].setdefault(kind, {"sq": 0.0, "n": 0, "max": 0.0, "ref_sq": 0.0})
            e["sq"] += float(((got - src) ** 2).sum())
            e["ref_sq"] += float((src ** 2).sum())
            e["n"] += src.size
            e["max"] = max(e["max"], float(np.abs(got - src).max()))
            out.append((t.name, data, PACK[kind][0], shape))
        else:
            kind = t.tensor_type.name
            out.append((t.name, t.data, t.tensor_type, shape))
        summary["tensors"][kind] = summary["tensors"].get(kind, 0) + 1
    for name, data, qtype, shape in out:
        w.add_tensor_info(name, data.shape, data.dtype, data.nbytes, qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _, data, _, _ in out:
        w.write_tensor_data(np.ascontiguousarray(data))
    w.close()
    for k, e in summary["error"].items():
        summary["error"][k] = {"rms": (e["sq"] / e["n"]) ** 0.5, "max": e["max"],
                               "relative_rms": (e["sq"] / e["ref_sq"]) ** 0.5}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""NumPy reference forward pass of a llama-architecture GGUF (no KV cache, float64).

Reads the weights with gguf-py (gguf==0.19.0), dequantises them exactly as llama.cpp defines
the block formats, undoes llama.cpp's Q/K row permutation (the Hugging Face rotate-half
layout) and runs the plain llama forward pass for one sequence of token ids. Writes the
logits of every position as little-endian float32 [len(ids), vocab] to --out.

Usage: python reference_llama.py MODEL.gguf --ids 1,2,3 --out logits.f32
"""
import argparse

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(r, key, default=None):
    f = r.fields.get(key)
    return default if f is None else f.contents()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    ids = [int(x) for x in a.ids.split(",")]
    r = GGUFReader(a.gguf)
    assert field(r, "general.architecture") == "llama"
    n_layer = field(r, "llama.block_count")
    n_head = field(r, "llama.attention.head_count")
    n_kv = field(r, "llama.attention.head_count_kv", n_head)
    eps = field(r, "llama.attention.layer_norm_rms_epsilon", 1e-5)
    base = field(r, "llama.rope.freq_base", 10000.0)
    tensors = {t.name: t for t in r.tensors}

    def w(name):  # numpy order: [out, in] for weights, [n] for norms
        t = tensors[name]
        return dequantize(t.data, t.tensor_type).astype(np.float64).reshape(
            tuple(int(d) for d in reversed(t.shape)))

    def unpermute(m, heads):  # GGUF row 2i+j of a head is original row j*D/2+i
        d = m.shape[0] // heads
        return m.reshape(heads, d // 2, 2, -1).swapaxes(1, 2).reshape(m.shape)

    emb = w("token_embd.weight")
    hidden = emb.shape[1]
    hd = hidden // n_head
    x = emb[ids]
    s = len(ids)
    inv = 1.0 / (base ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    ang = np.arange(s, dtype=np.float64)[:, None] * inv[None, :]
    ang = np.concatenate([ang, ang], axis=-1)
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(t):  # [heads, s, hd]
        half = hd // 2
        rot = np.concatenate([-t[..., half:], t[..., :half]], axis=-1)
        return t * cos + rot * sin

    def rms(t, g):
        return t / np.sqrt((t * t).mean(-1, keepdims=True) + eps) * g

    mask = np.triu(np.full((s, s), -np.inf), 1)
    for i in range(n_layer):
        p = f"blk.{i}."
        h = rms(x, w(p + "attn_norm.weight"))
        q = h @ unpermute(w(p + "attn_q.weight"), n_head).T
        k = h @ unpermute(w(p + "attn_k.weight"), n_kv).T
        v = h @ w(p + "attn_v.weight").T
        q = rope(q.reshape(s, n_head, hd).transpose(1, 0, 2))
        k = rope(k.reshape(s, n_kv, hd).transpose(1, 0, 2))
        v = v.reshape(s, n_kv, hd).transpose(1, 0, 2)
        rep = n_head // n_kv
        k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
        sc = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc /= sc.sum(-1, keepdims=True)
        o = (sc @ v).transpose(1, 0, 2).reshape(s, hidden)
        x = x + o @ w(p + "attn_output.weight").T
        h = rms(x, w(p + "ffn_norm.weight"))
        g = h @ w(p + "ffn_gate.weight").T
        u = h @ w(p + "ffn_up.weight").T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w(p + "ffn_down.weight").T
    x = rms(x, w("output_norm.weight"))
    head = w("output.weight") if "output.weight" in tensors else emb
    logits = x @ head.T
    logits.astype("<f4").tofile(a.out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What `llmos models import --int8-activations` gives (docs/generation.md §10; BENCHMARKS.md
"Text generation: decode speed"): the exact import against the int8 one, and the two halves
of the change apart.

Usage: int8_import.py EXACT_DIR INT8_DIR [--tokens 128] [--rounds 3] [--threads 2]
                      [--exact-head8]

EXACT_DIR holds the default import (e.g. the pulled smollm2), INT8_DIR the same GGUF imported
with `llmos models import FILE.gguf --name X --out INT8_DIR --int8-activations`. Needs numpy,
onnx, onnxruntime and tokenizers (pip). Compares, with the user loop of bench.py (2 threads, greedy,
the counting prompt; alternated ROUNDS times):
  exact             the exact import (fp32 activations, the tied head folded to f32 at load)
  int8_f32_head     a copy of the exact file with accuracy_level = 4 on its MatMulNBits nodes
                    (int8 activations, f32 head: what accuracy_level.py measured)
  int8_import       the --int8-activations import (int8 activations, 8-bit MatMulNBits head)
  exact_head8       (--exact-head8) a copy of the exact file whose head is an 8-bit MatMulNBits
                    with fp32 activations: exact, but ONNX Runtime dequantises the table on every
                    call (shown to say why the exact import keeps the folded head)
and prints one JSON object: logits against the exact import (chat and counting prompts, every
position: max |Δ|, RMS, argmax agreement), the first greedy token that differs (None: the
same TOKENS tokens), decode tokens/s per round, weights read per decoded token, load.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the user loop)
from accuracy_level import prefill_logits, with_accuracy_level  # noqa: E402

CHAT_TEXT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
# "1, 2, …, 12, " in SmolLM2's vocabulary (digits are single tokens, '0' = 32; ',' 28; ' ' 216).
COUNTING = [i for k in range(1, 13) for i in [32 + int(d) for d in str(k)] + [28, 216]]


def with_head8(src, dst):
    """The exact file with its tied head (the MatMul feeding `logits`) replaced by an 8-bit
    MatMulNBits over the embedding's blocks, fp32 activations."""
    m = onnx.load(src)
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    ident = next(n for n in g.node if n.op_type == "Identity" and n.output[0] == "logits")
    mm = producer[ident.input[0]]
    q = next(i for i in g.initializer if i.name == "token_embd.weight.q")
    n, blocks, _ = q.dims
    new = helper.make_node("MatMulNBits", [mm.input[0], "token_embd.weight.q", "token_embd.weight.scales"],
                           list(mm.output), domain="com.microsoft", K=blocks * 32, N=n, bits=8, block_size=32)
    idx = list(g.node).index(mm)
    del g.node[idx]
    g.node.insert(idx, new)
    # Drop what only fed the old head (the dequantising nodes), so nothing folds the table.
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    onnx.save(m, dst)


def weights_read_per_token(path):
    """Bytes of initializers a decode step reads: all of them, but the embedding's blocks
    one row per token when they feed only the Gather; plus the f32 table when the head is
    folded from them at load."""
    m = onnx.load(path)
    size = {i.name: len(i.raw_data) or 4 * int(np.prod(i.dims)) for i in m.graph.initializer}
    total = sum(size.values())
    folded = any(n.op_type == "Cast" and n.input[0] == "token_embd.weight.q" for n in m.graph.node)
    if folded:
        q = next(i for i in m.graph.initializer if i.name == "token_embd.weight.q")
        n = q.dims[0]
        k = q.dims[1] * 32
        total += 4 * n * k - size["token_embd.weight.q"] - size["token_embd.weight.scales"]
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("exact_dir")
    p.add_argument("int8_dir")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--exact-head8", action="store_true")
    a = p.parse_args()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(a.exact_dir, "tokenizer.json"))
    chat = tok.encode(CHAT_TEXT, add_special_tokens=False).ids
    exact = os.path.join(a.exact_dir, "model.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        files = {"exact": exact}
        files["int8_f32_head"] = os.path.join(tmp, "int8_f32_head.onnx")
        with_accuracy_level(exact, files["int8_f32_head"], 4)
        files["int8_import"] = os.path.join(a.int8_dir, "model.onnx")
        if a.exact_head8:
            files["exact_head8"] = os.path.join(tmp, "exact_head8.onnx")
            with_head8(exact, files["exact_head8"])
        sess = {k: bench.session(f, a.threads) for k, f in files.items()}
        specs = bench.cache_specs(sess["exact"])
        base = {name: prefill_logits(sess["exact"], specs, ids) for name, ids in (("chat", chat), ("counting", COUNTING))}
        logits, greedy = {}, {}
        base_greedy = {name: bench.user_loop(sess["exact"], specs, ids, 1, a.tokens)[2][0]
                       for name, ids in (("chat", chat), ("counting", COUNTING))}
        for k, s in sess.items():
            if k == "exact":
                continue
            logits[k], greedy[k] = {}, {}
            for name, ids in (("chat", chat), ("counting", COUNTING)):
                l = prefill_logits(s, specs, ids)
                d = l - base[name]
                logits[k][name] = {
                    "max_abs": float(np.abs(d).max()),
                    "rms": float(np.sqrt((d * d).mean())),
                    "argmax_equal": float((l.argmax(-1) == base[name].argmax(-1)).mean()),
                }
                g = bench.user_loop(s, specs, ids, 1, a.tokens)[2][0]
                first = np.nonzero(g != base_greedy[name])[0]
                greedy[k][name] = None if first.size == 0 else int(first[0])
        speed = {k: [] for k in sess}
        loads = []
        for _ in range(a.rounds):
            for k, s in sess.items():
                _, dec, _ = bench.user_loop(s, specs, COUNTING, 1, a.tokens)
                speed[k].append(round((a.tokens - 1) / dec, 1))
                loads.append(round(os.getloadavg()[0], 1))
        print(json.dumps({
            "logits_vs_exact": logits,
            "greedy_first_difference": greedy,
            "decode_tps": speed,
            "weights_read_per_token_mb": {k: round(weights_read_per_token(f) / 1e6, 1) for k, f in files.items()},
            "load": loads,
        }, indent=1))


if __name__ == "__main__":
    main()

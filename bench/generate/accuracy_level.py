#!/usr/bin/env python3
"""What `MatMulNBits accuracy_level = 4` (int8 activations) would give the imported model
(issue 8's 1-stream lead; BENCHMARKS.md "Text generation: decode speed").

Usage: accuracy_level.py MODEL_DIR [--tokens 128] [--rounds 3] [--threads 2]

Needs numpy, onnx, onnxruntime and tokenizers (pip). MODEL_DIR holds an imported model (model.onnx, tokenizer.json; e.g. `llmos models pull
smollm2` into a home). Writes a copy of model.onnx with accuracy_level = 4 on every
MatMulNBits node (the importer writes none, i.e. 0 = fp32 activations) into a temporary
folder, then prints one JSON object:
  - logits of both graphs on two prompts (every position): max |Δ|, RMS Δ, argmax agreement,
    and whether greedy decoding of TOKENS tokens gives the same ids;
  - decode tokens/s of the user loop of bench.py on each graph, alternated ROUNDS times.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the same user loop as the benchmark)


def with_accuracy_level(src, dst, level):
    m = onnx.load(src)
    n = 0
    for node in m.graph.node:
        if node.op_type == "MatMulNBits":
            for a in list(node.attribute):
                if a.name == "accuracy_level":
                    node.attribute.remove(a)
            node.attribute.append(onnx.helper.make_attribute("accuracy_level", level))
            n += 1
    onnx.save(m, dst)
    return n


def prefill_logits(sess, specs, ids):
    n = len(ids)
    feed = {
        "input_ids": np.array([ids], dtype=np.int64),
        "attention_mask": np.ones((1, n), dtype=np.int64),
        "position_ids": np.arange(n, dtype=np.int64)[None, :],
    }
    for past, _, shape in specs:
        feed[past] = np.zeros((1, shape[1], 0, shape[3]), dtype=np.float32)
    return sess.run(["logits"], feed)[0][0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(a.model_dir, "tokenizer.json"))
    prompts = [
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, ",
    ]
    ids = [tok.encode(t, add_special_tokens=False).ids for t in prompts]
    base = os.path.join(a.model_dir, "model.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        acc = os.path.join(tmp, "model.onnx")
        nodes = with_accuracy_level(base, acc, 4)
        s0, s4 = bench.session(base, a.threads), bench.session(acc, a.threads)
        specs = bench.cache_specs(s0)
        diffs = []
        for x in ids:
            l0, l4 = prefill_logits(s0, specs, x), prefill_logits(s4, specs, x)
            d = l4 - l0
            diffs.append({
                "positions": len(x),
                "max_abs": float(np.abs(d).max()),
                "rms": float(np.sqrt((d * d).mean())),
                "logit_range": [float(l0.min()), float(l0.max())],
                "argmax_equal": float((l0.argmax(-1) == l4.argmax(-1)).mean()),
            })
        same = []
        for x in ids:
            g0 = bench.user_loop(s0, specs, x, 1, a.tokens)[2]
            g4 = bench.user_loop(s4, specs, x, 1, a.tokens)[2]
            first = np.nonzero(g0[0] != g4[0])[0]
            same.append(None if first.size == 0 else int(first[0]))
        speed = {"fp32_activations": [], "accuracy_level_4": []}
        for _ in range(a.rounds):
            for name, s in (("fp32_activations", s0), ("accuracy_level_4", s4)):
                _, dec, _ = bench.user_loop(s, specs, ids[1], 1, a.tokens)
                speed[name].append((a.tokens - 1) / dec)
        print(json.dumps({
            "matmulnbits_nodes": nodes,
            "logits": diffs,
            "greedy_first_difference": same,
            "decode_tps": speed,
            "load": os.getloadavg()[0],
        }, indent=1))


if __name__ == "__main__":
    main()

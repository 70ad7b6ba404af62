#!/usr/bin/env python3
"""Python baseline for the llmos embedding benchmark.

Per batch size: loop over consecutive batches of the sentence list (wrapping
around) doing tokenize -> numpy arrays -> session.run -> mean pool + L2
normalise, for at least --seconds and a whole number of passes over the list
(so every implementation sees the same sentence mix), after one warm-up batch. Prints one JSON
line per batch size:

  {"impl":"python-onnxruntime","batch":B,"threads":N,"sentences_per_s":...,"batches":...}

Usage:
  python3 bench/python_baseline.py --model model.onnx --tokenizer tokenizer.json \
      [--sentences bench/sentences.txt] [--threads 2] [--batch-sizes 1,8,32] [--seconds 5]

Needs: pip install onnxruntime numpy tokenizers
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_LEN = 256


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--sentences", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "sentences.txt"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.strip() for line in f if line.strip()]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    input_names = {i.name for i in session.get_inputs()}
    output_name = session.get_outputs()[0].name

    tok = Tokenizer.from_file(args.tokenizer)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # longest in batch
    tok.enable_truncation(MAX_LEN)

    def embed(batch):
        encs = tok.encode_batch(batch)
        feeds = {
            "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
        }
        feeds = {k: v for k, v in feeds.items() if k in input_names}
        (hidden,) = session.run([output_name], feeds)
        m = feeds["attention_mask"].astype(np.float32)[:, :, None]
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    n = len(sentences)
    for bs in batch_sizes:
        pos = 0

        def next_batch():
            nonlocal pos
            batch = [sentences[(pos + i) % n] for i in range(bs)]
            pos = (pos + bs) % n
            return batch

        embed(next_batch())  # warm-up
        pos = 0
        batches = 0
        done = 0
        start = time.perf_counter()
        deadline = start + args.seconds
        while True:
            out = embed(next_batch())
            batches += 1
            done += out.shape[0]
            now = time.perf_counter()
            # Stop on a whole pass over the list, so every implementation sees the same mix.
            if now >= deadline and pos == 0:
                break
        elapsed = now - start
        print(json.dumps({
            "impl": "python-onnxruntime",
            "batch": bs,
            "threads": args.threads,
            "sentences_per_s": round(done / elapsed, 2),
            "batches": batches,
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

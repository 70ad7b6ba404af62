#!/usr/bin/env python3
"""Reference sentence embeddings for an all-MiniLM-L6-v2 style ONNX model.

Computes embeddings the sentence-transformers way:
  tokenize the batch (longest padding, pad id 0, truncation at 256)
  -> ONNX Runtime (CPU) with input_ids / attention_mask / token_type_ids
  -> mean-pool last_hidden_state over attention_mask -> L2-normalise.

Usage:
  python3 models/tools/reference_embeddings.py \
      --model /path/model.onnx --tokenizer /path/tokenizer.json \
      [--out tests/fixtures/minilm_reference.json]

Needs: pip install onnxruntime numpy tokenizers
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

SENTENCES = [
    "The cat sits on the mat.",
    "A cat is sitting on a mat.",
    "Stock markets fell sharply on Tuesday.",
    "How do I reset my password?",
    "I forgot my password and need to change it.",
    "Quantum chromodynamics describes the strong interaction.",
]
COSINE_PAIRS = [(0, 1), (0, 2), (3, 4)]
MAX_LEN = 256


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sig7(x):
    return float(f"{float(x):.7g}")


def load_tokenizer(path):
    tok = Tokenizer.from_file(path)
    # The shipped tokenizer.json may pad/truncate to a fixed 128: override.
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # longest in batch
    tok.enable_truncation(MAX_LEN)
    return tok


def embed(session, tok, sentences):
    encs = tok.encode_batch(sentences)
    ids = np.array([e.ids for e in encs], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
    tt = np.array([e.type_ids for e in encs], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}
    input_names = {i.name for i in session.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in input_names}
    (hidden,) = session.run(["last_hidden_state"], feeds)  # [b, s, h]
    m = mask.astype(np.float32)[:, :, None]
    pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    norm = np.linalg.norm(pooled, axis=1, keepdims=True)
    emb = pooled / np.clip(norm, 1e-12, None)
    token_ids = [e.ids[: int(sum(e.attention_mask))] for e in encs]
    return emb, token_ids


def to_json(obj):
    """Pretty JSON with one line per row of the nested lists (stable, diff-friendly)."""
    parts = []
    for key, value in obj.items():
        if isinstance(value, list):
            rows = ",\n    ".join(json.dumps(r) for r in value)
            parts.append(f"  {json.dumps(key)}: [\n    {rows}\n  ]")
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
        "minilm_reference.json"))
    args = ap.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    tok = load_tokenizer(args.tokenizer)

    emb, token_ids = embed(session, tok, SENTENCES)

    max_diff = 0.0
    for i, s in enumerate(SENTENCES):
        single, single_ids = embed(session, tok, [s])
        assert single_ids[0] == token_ids[i]
        max_diff = max(max_diff, float(np.abs(single[0] - emb[i]).max()))
    print(f"max abs diff, batched vs one-at-a-time: {max_diff:.3e}")

    cosine = {f"{a}-{b}": sig7(np.dot(emb[a], emb[b])) for a, b in COSINE_PAIRS}
    for k, v in cosine.items():
        print(f"cosine {k}: {v}")

    result = {
        "model_sha256": sha256_file(args.model),
        "tokenizer_sha256": sha256_file(args.tokenizer),
        "onnxruntime": ort.__version__,
        "sentences": SENTENCES,
        "token_ids": token_ids,
        "embeddings": [[sig7(x) for x in row] for row in emb],
        "cosine": cosine,
    }
    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write(to_json(result))
    print(f"wrote {out} (dim {emb.shape[1]}, {len(SENTENCES)} sentences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

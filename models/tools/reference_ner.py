#!/usr/bin/env python3
"""Reference token-classification (NER / PII) output for a BERT-style ONNX model.

For one sentence: tokenize (no padding), run ONNX Runtime (CPU), argmax per
token, softmax score per token, then merge BIO tags into entity spans:

  * word-pieces of one word (same encoding.word_ids value) take the label of
    the word's first piece;
  * B-X starts an entity; I-X continues the immediately preceding entity if it
    has type X, otherwise it starts a new one; O (and special tokens) end it;
  * start/end are character offsets into the original text (from the
    tokenizer's encoding.offsets), text = original[start:end];
  * score = mean of the per-token softmax scores (each token's max
    probability) of all tokens, word-pieces included, inside the entity.

Usage:
  python3 models/tools/reference_ner.py \
      --model .../onnx/model_q4.onnx --tokenizer .../tokenizer.json \
      --config .../config.json [--text "..."] [--out tests/fixtures/ner_reference.json]

--config defaults to config.json next to the tokenizer (needs id2label).
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

DEFAULT_TEXT = ("My name is John Smith, call me at (415) 555-0132 or email "
                "john.smith@example.com. I live at 1600 Pennsylvania Avenue, "
                "Washington, DC 20500.")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sig7(x):
    return float(f"{float(x):.7g}")


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def split_bio(label):
    if label == "O":
        return "O", None
    prefix, _, kind = label.partition("-")
    return prefix, kind


def merge_entities(text, tokens):
    """tokens: dicts with offsets, label, score, word (None for special tokens)."""
    # 1. word-level labels: every piece of a word takes its first piece's label
    word_label = {}
    for t in tokens:
        if t["word"] is not None and t["word"] not in word_label:
            word_label[t["word"]] = t["label"]

    entities = []
    current = None  # {"label", "start", "end", "scores", "last_word"}

    def close():
        nonlocal current
        if current is not None:
            entities.append({
                "label": current["label"],
                "start": current["start"],
                "end": current["end"],
                "text": text[current["start"]:current["end"]],
                "score": sig7(np.mean(current["scores"])),
            })
        current = None

    for t in tokens:
        w = t["word"]
        if w is None:  # special token
            close()
            continue
        start, end = t["offsets"]
        if current is not None and current["last_word"] == w:
            # continuation piece of a word already inside the current entity
            current["end"] = end
            current["scores"].append(t["score"])
            continue
        prefix, kind = split_bio(word_label[w])
        if prefix == "O":
            close()
            continue
        if prefix == "I" and current is not None and current["label"] == kind:
            current["end"] = end
            current["scores"].append(t["score"])
            current["last_word"] = w
            continue
        # B-X, or I-X without a preceding same-type entity: start a new one
        close()
        current = {"label": kind, "start": start, "end": end,
                   "scores": [t["score"]], "last_word": w}
    close()
    return entities


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--config", default=None,
                    help="config.json with id2label (default: next to the tokenizer)")
    ap.add_argument("--text", default=DEFAULT_TEXT)
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
        "ner_reference.json"))
    args = ap.parse_args()

    config = args.config or os.path.join(os.path.dirname(args.tokenizer), "config.json")
    with open(config, encoding="utf-8") as f:
        id2label = {int(k): v for k, v in json.load(f)["id2label"].items()}

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])

    tok = Tokenizer.from_file(args.tokenizer)
    tok.no_padding()
    enc = tok.encode(args.text)
    feeds = {
        "input_ids": np.array([enc.ids], dtype=np.int64),
        "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
        "token_type_ids": np.array([enc.type_ids], dtype=np.int64),
    }
    input_names = {i.name for i in session.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in input_names}
    (logits,) = session.run(["logits"], feeds)
    probs = softmax(logits[0].astype(np.float64))
    pred = probs.argmax(axis=-1)

    special = enc.special_tokens_mask
    tokens = []
    for i, (tid, piece, offs, word) in enumerate(zip(enc.ids, enc.tokens, enc.offsets, enc.word_ids)):
        tokens.append({
            "index": i,
            "id": tid,
            "token": piece,
            "offsets": [offs[0], offs[1]],
            "word": None if special[i] else word,
            "label": id2label[int(pred[i])],
            "score": sig7(probs[i, pred[i]]),
        })
    entities = merge_entities(args.text, tokens)

    for t in tokens:
        print(f"{t['index']:3d} {t['token']:>16s} {str(t['offsets']):>10s} {t['label']:<20s} {t['score']:.4f}")
    print("entities:")
    for e in entities:
        print(f"  {e['label']:<16s} [{e['start']:3d},{e['end']:3d}) {e['score']:.4f} {e['text']!r}")

    result = {
        "model_sha256": sha256_file(args.model),
        "tokenizer_sha256": sha256_file(args.tokenizer),
        "onnxruntime": ort.__version__,
        "text": args.text,
        "tokens": tokens,
        "entities": entities,
    }
    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write("{\n")
        items = list(result.items())
        for n, (key, value) in enumerate(items):
            sep = "," if n + 1 < len(items) else ""
            if isinstance(value, list):
                rows = ",\n    ".join(json.dumps(r, ensure_ascii=False) for r in value)
                f.write(f"  {json.dumps(key)}: [\n    {rows}\n  ]{sep}\n")
            else:
                f.write(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{sep}\n")
        f.write("}\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes the tokenizer metadata of a GGUF file as JSON in the shape of llmos' `GgufVocab`
(host/src/core/gguf/vocab.rs), read with the `gguf` package (gguf==0.19.0), independently of
llmos' own GGUF reader. Used by the tokenizer tests.

usage: dump_vocab.py FILE.gguf OUT.json
"""
import json
import sys

from gguf import GGUFReader

SCALARS = {
    "model": "tokenizer.ggml.model",
    "pre": "tokenizer.ggml.pre",
    "bos_token_id": "tokenizer.ggml.bos_token_id",
    "eos_token_id": "tokenizer.ggml.eos_token_id",
    "unknown_token_id": "tokenizer.ggml.unknown_token_id",
    "padding_token_id": "tokenizer.ggml.padding_token_id",
    "add_bos_token": "tokenizer.ggml.add_bos_token",
    "add_space_prefix": "tokenizer.ggml.add_space_prefix",
    "chat_template": "tokenizer.chat_template",
}
ARRAYS = {
    "tokens": "tokenizer.ggml.tokens",
    "token_types": "tokenizer.ggml.token_type",
    "merges": "tokenizer.ggml.merges",
}


def plain(value):
    """numpy scalars → Python ones, so json can write them."""
    return value.item() if hasattr(value, "item") else value


def vocab(path):
    fields = GGUFReader(path).fields
    out = {}
    for name, key in SCALARS.items():
        out[name] = plain(fields[key].contents()) if key in fields else None
    for name, key in ARRAYS.items():
        out[name] = [plain(v) for v in fields[key].contents()] if key in fields else []
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(vocab(sys.argv[1]), f, ensure_ascii=False)


if __name__ == "__main__":
    main()

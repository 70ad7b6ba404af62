#!/usr/bin/env python3
"""Reference token ids for llmos' GGUF tokenizer test: an independent, plain-Python
re-implementation of llama.cpp's byte-level BPE tokenizer (llm_tokenizer_bpe in
llama-vocab.cpp), reading the vocabulary straight from the GGUF file with `gguf==0.19.0`.
Nothing of the `tokenizers` library is used (transformers' GGUF conversion needs torch,
which is not installed in the test environment).

Algorithm, as llama.cpp: the text is cut at special tokens (control and user-defined, longest
first); every other piece is split by the pre-tokenizer's regexes in order (matches and the
text between them are both pieces), mapped to GPT-2's byte symbols, and merged pair by pair,
lowest merge rank first (leftmost on ties).

usage: reference_tokenizer.py FILE.gguf OUT.json
writes {"pre": ..., "cases": [{"text": ..., "ids": [...]}, ...]}
"""
import json
import sys

import regex
from gguf import GGUFReader

TEXTS = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "Crème brûlée, naïve café, Ærøskøbing, Straße, São Paulo, Łódź.",
    "日本語のテキストです。中文文本，한국어 텍스트.",
    "Emoji: 🦀🚀 👩‍👩‍👧 ✨ and flags 🇫🇷.",
    "def f(x):\n\tif x  >   1:\n\t\treturn x ** 2    # four spaces\n\n",
    "Digits 1234567 and 3.14159, 2026-12-01, 007.",
    "line one\n\nline three\r\n   trailing spaces   ",
    "don't I'LL we've they'RE",
    " leading space and\ttab\t",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>a<|im_end|><|im_start|>",
    "مرحبا بالعالم — नमस्ते दुनिया — Привет, мир!",
    "a\u00a0b e\u0301 x\u200by \U0001F600\U0001F3FD fi",
    "x=1_000_000; y=0.5e-10; if (a&&b||!c) { return [1,2,3]; }",
    "   \n\n\t  \n",
]

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
          r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
PRE = {  # llama.cpp's regexes per tokenizer.ggml.pre, and its ignore_merges
    "default": ([r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"], False),
    "gpt2": ([GPT2], False),
    "smollm": ([r"\p{N}", GPT2], False),
    "llama-bpe": ([LLAMA3], True),
    "qwen2": ([QWEN2], False),
}
CONTROL, USER_DEFINED = 3, 4


def byte_symbols():
    """GPT-2's bytes_to_unicode table."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def split(pieces, pattern):
    out = []
    for piece in pieces:
        pos = 0
        for m in regex.finditer(pattern, piece):
            if m.start() > pos:
                out.append(piece[pos:m.start()])
            if m.end() > m.start():
                out.append(m.group())
            pos = m.end()
        if pos < len(piece):
            out.append(piece[pos:])
    return out


class Bpe:
    def __init__(self, path):
        f = GGUFReader(path).fields
        self.tokens = list(f["tokenizer.ggml.tokens"].contents())
        types = list(f["tokenizer.ggml.token_type"].contents())
        merges = list(f["tokenizer.ggml.merges"].contents())
        self.pre = f["tokenizer.ggml.pre"].contents() if "tokenizer.ggml.pre" in f else "default"
        self.regexes, self.ignore_merges = PRE[self.pre]
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(merges)}
        self.specials = sorted(
            (t for t, k in zip(self.tokens, types) if k in (CONTROL, USER_DEFINED)),
            key=len, reverse=True)
        self.bytes = byte_symbols()

    def encode(self, text):
        ids = []
        for piece, special in self.partition(text):
            if special:
                ids.append(self.ids[piece])
                continue
            for word in self.words(piece):
                ids.extend(self.ids[s] for s in self.merge(word))
        return ids

    def words(self, text):
        pieces = [text]
        for pattern in self.regexes:
            pieces = split(pieces, pattern)
        return ["".join(self.bytes[b] for b in p.encode("utf-8")) for p in pieces]

    def partition(self, text):
        """(piece, is_special) in order, special tokens matched longest first."""
        out, pos, plain = [], 0, 0
        while pos < len(text):
            hit = next((s for s in self.specials if text.startswith(s, pos)), None)
            if hit is None:
                pos += 1
                continue
            if pos > plain:
                out.append((text[plain:pos], False))
            out.append((hit, True))
            pos += len(hit)
            plain = pos
        if plain < len(text):
            out.append((text[plain:], False))
        return out

    def merge(self, word):
        if self.ignore_merges and word in self.ids:
            return [word]
        symbols = list(word)
        while len(symbols) > 1:
            pairs = [(self.ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
            ranked = [(r, i) for r, i in pairs if r is not None]
            if not ranked:
                break
            _, i = min(ranked)
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        return symbols


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    bpe = Bpe(sys.argv[1])
    cases = [{"text": t, "ids": bpe.encode(t)} for t in TEXTS]
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump({"pre": bpe.pre, "cases": cases}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()

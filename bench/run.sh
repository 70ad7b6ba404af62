#!/usr/bin/env bash
# Embedding benchmark: llmos end-to-end vs raw ONNX Runtime vs Python onnxruntime+tokenizers.
# Sets up a Python venv with the same ONNX Runtime version (cached in .bench/), makes sure
# the runtime and minilm are present, then runs `cargo bench --bench embed`.
# Usage: bench/run.sh [--threads N] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.bench/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnxruntime, tokenizers, numpy' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q onnxruntime==1.31.1 tokenizers numpy
fi
cargo build --release -q --bin llmos
target/release/llmos runtime install
target/release/llmos models pull minilm
cargo bench -q --bench embed -- --python "$PWD/$venv/bin/python" "$@"

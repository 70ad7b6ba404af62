#!/usr/bin/env bash
# Installs whatever is missing and runs every test of llmos.
# Idempotent and cached: the Rust target is added once, cargo rebuilds only what changed,
# and the tests fetch ONNX Runtime and the default models through `llmos runtime install`
# and `llmos models pull`, which download nothing when a verified copy is cached
# (~/.cache/llmos for downloads, target/tmp/models for the test models).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo is required: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2   # plugins are WebAssembly components
fi

# Real client libraries for the compatibility tests (OpenAI's and Triton's), in a venv
# cached outside the checkout; created once, reused afterwards.
pyenv="${LLMOS_CACHE:-$HOME/.cache/llmos}/test-pyenv"
if ! "$pyenv/bin/python" -c 'import openai, tritonclient.http, numpy, schemathesis, onnx, gguf, regex' 2>/dev/null; then
  python3 -m venv "$pyenv"
  "$pyenv/bin/pip" install -q --disable-pip-version-check \
    'openai==3.57.0' 'tritonclient[http]==2.73.0' 'numpy==2.4.6' 'schemathesis==4.32.5' \
    'onnx==1.19.1' 'gguf==0.19.0' 'regex==2026.11.19'
fi
export LLMOS_TEST_PYTHON="$pyenv/bin/python"

# Formatting and lints first (the request-path set in host/src/lib.rs among them: no unwrap,
# indexing or unchecked arithmetic; docs/design.md, "Request-path hygiene").
cargo fmt --all --check
cargo clippy -p llmos --all-targets --locked -- -D warnings

# The Rust guest SDK's own unit tests (typed config), on the host target.
(cd plugins && cargo test -p llmos-plugin --all-features --locked --quiet)

cargo test --workspace --locked "$@"

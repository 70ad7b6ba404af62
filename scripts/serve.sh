#!/usr/bin/env bash
# Installs whatever is missing and starts `llmos serve` with the default models and plugins.
# Idempotent and cached: a second run downloads nothing and rebuilds nothing.
# Data lives in $LLMOS_HOME (default ~/.local/share/llmos); downloads in ~/.cache/llmos.
# Extra arguments go to `llmos serve` (e.g. --listen 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo is required: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2   # plugins are WebAssembly components
fi

cargo build --release --locked --bin llmos
bin=target/release/llmos
"$bin" runtime install            # onnxruntime==1.31.1 from PyPI, sha256-verified
"$bin" models pull --all          # minilm, pii-ner, smollm2 (imported from its GGUF), and the
                                  # classifiers sentiment, spam, question-type (trained here), sha256-verified

# The shipped plugins, built once (cargo is incremental) and installed once per data
# location. They run only where `[pipelines]` in llmos.toml names them (README, Plugins).
(cd plugins && cargo build --quiet --locked --release --target wasm32-wasip2 \
  -p normalize -p pii-redact -p content-policy -p webhook)
wasm=plugins/target/wasm32-wasip2/release
install_plugin() { # name, then extra install flags
  local name=$1; shift
  if ! "$bin" plugin info "$name" >/dev/null 2>&1; then
    "$bin" plugin install "$wasm/${name//-/_}.wasm" --manifest "plugins/$name/manifest.toml" "$@"
  fi
}
install_plugin normalize
install_plugin pii-redact --grant inference:pii-ner --approve-limits   # timeout_ms 200
install_plugin content-policy

exec "$bin" serve "$@"

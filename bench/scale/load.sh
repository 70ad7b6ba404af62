#!/usr/bin/env bash
# Start-up load time and resident memory of a collection of CHUNKS chunks (default 100,000,
# 384-dim seeded random vectors): the embedded sled store against PostgreSQL
# (BENCHMARKS.md, "Shared store"). The collection is written by the `shared_store` bench
# (`fill`: Collections::write, the path ingest stores by, without the model); then a fresh
# `llmos serve` (tiny `add` model only) is timed until /health says its collections are loaded,
# and its resident memory is read from /proc. An empty sled store gives the baseline.
#
# Usage: bench/scale/load.sh postgres://user@host:port/EMPTY_DATABASE [CHUNKS]
# Needs the test models (target/tmp/models: run the test suite once). PROFILE=release to
# build optimised (default: dev, as the other shared-store figures).
set -euo pipefail
cd "$(dirname "$0")/../.."
url=$1
chunks=${2:-100000}
profile=${PROFILE:-dev}
dir=debug; [ "$profile" = release ] && dir=release
bin=$PWD/target/$dir/llmos
LLMOS_MASTER_KEY=$(printf '42%.0s' $(seq 32)); export LLMOS_MASTER_KEY
work=$(mktemp -d /tmp/llmos-load.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
# Builds llmos and the bench (dev profile: target/debug); BENCH_BIN skips the build.
if [ -z "${BENCH_BIN:-}" ]; then
  BENCH_BIN=$(cargo build -q --profile "$profile" --bin llmos --bench shared_store --message-format=json |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "shared_store" and m.get("executable"):
        print(m["executable"])')
fi

home() { # NAME [STORE_URL]
  local h=$work/$1
  mkdir -p "$h"
  printf '[models]\ndir = "%s"\nmanifest_dirs = ["%s", "%s"]\n' \
    "$PWD/target/tmp/models" "$PWD/tests/fixtures/manifests" "$PWD/target/tmp/manifests" >"$h/llmos.toml"
  [ -n "${2:-}" ] && printf '\n[store]\nurl = "%s"\n' "$2" >>"$h/llmos.toml"
  echo "$h"
}

fill() { # HOME_OR_URL_ARGS...
  "$BENCH_BIN" fill --chunks "$chunks" "$@"
}

measure() { # NAME HOME
  local h=$2 t0 t1 t2 u rss hwm
  t0=$(date +%s%N)
  LLMOS_HOME=$h LLMOS_LOG=info "$bin" serve --listen 127.0.0.1:0 --models add >"$h/out" 2>"$h/err" &
  pid=$!
  until grep -q "llmos listening on" "$h/out" 2>/dev/null; do sleep 0.02; done
  t1=$(date +%s%N)
  u=$(sed -n 's/^llmos listening on //p' "$h/out" | head -1)
  until curl -s "$u/health" | python3 -c 'import json,sys; c=json.load(sys.stdin)["collections"]; sys.exit(0 if c["ready"] else 1)' 2>/dev/null; do
    sleep 0.05
  done
  t2=$(date +%s%N)
  rss=$(awk '/^VmRSS/{print $2}' /proc/$pid/status)
  hwm=$(awk '/^VmHWM/{print $2}' /proc/$pid/status)
  loaded=$(curl -s "$u/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["collections"]["loaded"])')
  kill $pid; wait $pid 2>/dev/null || true; pid=
  grep -ho 'start: [0-9]* collections loaded in [0-9]* ms' "$h/err" | sed "s/^/$1: server log: /" || true
  printf '%-11s listening after %5d ms, collections loaded (%s) after %6d ms more; RSS %6d MiB (peak %6d MiB)\n' \
    "$1" $(((t1 - t0) / 1000000)) "$loaded" $(((t2 - t1) / 1000000)) $((rss / 1024)) $((hwm / 1024))
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $chunks chunks; profile $profile"
empty=$(home empty)
sled=$(home sled)
pg=$(home pg "$url")
fill --home "$sled"
fill --url "$url"
measure "empty sled" "$empty"
measure sled "$sled"
measure PostgreSQL "$pg"
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg)"

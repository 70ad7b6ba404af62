#!/usr/bin/env bash
# A replica following another's small ingest into a large collection (BENCHMARKS.md, "Third
# round"): a fresh `llmos serve` (tiny `add` model only) on the PostgreSQL store at URL, which
# must hold the collection `bench` written by `shared_store fill` (bench/scale/load.sh writes
# one); once it has loaded it, `shared_store append` writes CHUNKS new chunks into it as
# another replica would, and the time until this replica holds them is measured from its
# `GET /v1/collections/bench` (`memory`: chunks held, whole loads), with its load count
# before and after; then the same for a document (10 chunks) deleted elsewhere.
#
# DOC_BASE (default 100): round r deletes doc-(DOC_BASE+r) (fill writes doc-0 … doc-(CHUNKS/10-1)).
# Usage: BENCH_BIN=target/debug/deps/shared_store-… bench/scale/follow.sh postgres://… [CHUNKS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
url=$1
chunks=${2:-10}
rounds=${3:-5}
bin=$PWD/target/debug/llmos
: "${BENCH_BIN:?BENCH_BIN names the shared_store bench binary (cargo build --bench shared_store)}"
LLMOS_MASTER_KEY=$(printf '42%.0s' $(seq 32)); export LLMOS_MASTER_KEY
h=$(mktemp -d /tmp/llmos-follow.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$h"' EXIT
printf '[models]\ndir = "%s"\nmanifest_dirs = ["%s", "%s"]\n\n[store]\nurl = "%s"\n' \
  "$PWD/target/tmp/models" "$PWD/tests/fixtures/manifests" "$PWD/target/tmp/manifests" "$url" >"$h/llmos.toml"
LLMOS_HOME=$h "$bin" serve --listen 127.0.0.1:0 --models add >"$h/out" 2>"$h/err" &
pid=$!
until grep -q "llmos listening on" "$h/out" 2>/dev/null; do sleep 0.02; done
u=$(sed -n 's/^llmos listening on //p' "$h/out" | head -1)
# "chunks loads changes_followed" of this replica's `memory` (grep, not python: a poll must be cheap).
mem() {
  local j
  j=$(curl -s "$u/v1/collections/bench")
  f() { grep -o "\"$1\":[0-9]*" <<<"$j" | tail -1 | cut -d: -f2; }
  echo "$(f chunks) $(f loads) $(f changes_followed)"
}
t0=$(date +%s%N)
until [ "$(mem | cut -d' ' -f2)" -ge 1 ] 2>/dev/null; do sleep 0.1; done
rss() { echo "$(( $(awk '/^VmRSS/{print $2}' /proc/$pid/status) / 1024 )) MiB"; }
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); initial load: $(( ($(date +%s%N) - t0) / 1000000 )) ms, held (chunks loads followed): $(mem); RSS $(rss)"
for r in $(seq "$rounds"); do
  read -r before _ _ < <(mem)
  "$BENCH_BIN" append --url "$url" --chunks "$chunks" >/dev/null
  t1=$(date +%s%N)
  until [ "$(mem | cut -d' ' -f1)" -ge $((before + chunks)) ]; do sleep 0.01; done
  echo "round $r: $chunks chunks appended elsewhere held here after $(( ($(date +%s%N) - t1) / 1000000 )) ms; now (chunks loads followed): $(mem)"
  read -r before _ _ < <(mem)
  "$BENCH_BIN" delete --url "$url" --doc "doc-$((${DOC_BASE:-100} + r))" >/dev/null
  t1=$(date +%s%N)
  until [ "$(mem | cut -d' ' -f1)" -le $((before - 10)) ]; do sleep 0.01; done
  echo "round $r: a document (10 chunks) deleted elsewhere gone here after $(( ($(date +%s%N) - t1) / 1000000 )) ms; now (chunks loads followed): $(mem); RSS $(rss)"
done

#!/usr/bin/env bash
# Throughput of 1 vs 3 llmos replicas on one PostgreSQL (BENCHMARKS.md, "Shared store"):
# wrk against every replica at once (connections split evenly), for a store-only request
# (authenticated GET /v1/collections: key lookup + collection list) and an embeddings request
# (minilm, one short sentence). Sums the replicas' requests per second.
#
# Usage: bench/scale/replicas.sh postgres://user@host:port/DATABASE [SECONDS] [CONNECTIONS]
# Needs target/debug/llmos (cargo build --bin llmos), wrk, and the test models
# (target/tmp/models: run the test suite once).
set -euo pipefail
cd "$(dirname "$0")/../.."
url=$1
secs=${2:-20}
conns=${3:-32}
bin=${LLMOS_BIN:-$PWD/target/debug/llmos}
LLMOS_MASTER_KEY=$(printf '42%.0s' $(seq 32)); export LLMOS_MASTER_KEY
work=$(mktemp -d /tmp/llmos-replicas.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null; done; rm -rf "$work"' EXIT
printf 'wrk.method = "POST"\nwrk.body = [[{"model":"minilm","input":"The heron waits in the reeds."}]]\nwrk.headers["Content-Type"] = "application/json"\n' >"$work/embed.lua"

home() {
  local h=$work/$1
  mkdir -p "$h"
  printf '[models]\ndir = "%s"\nmanifest_dirs = ["%s", "%s"]\n\n[store]\nurl = "%s"\n' \
    "$PWD/target/tmp/models" "$PWD/tests/fixtures/manifests" "$PWD/target/tmp/manifests" "$url" >"$h/llmos.toml"
  echo "$h"
}

start() { # HOME -> sets $u to its URL
  LLMOS_HOME=$1 "$bin" serve --listen 127.0.0.1:0 --models minilm >"$1/out" 2>"$1/err" &
  pids+=($!)
  until grep -q "llmos listening on" "$1/out" 2>/dev/null; do sleep 0.05; done
  u=$(sed -n 's/^llmos listening on //p' "$1/out" | head -1)
}

run() { # NAME PATH [LUA] URLS...
  local name=$1 path=$2 lua=$3; shift 3
  local n=$# c=$((conns / $#)) i=0 total=0 w=()
  for target in "$@"; do
    wrk -t1 -c"$c" -d"${secs}s" ${lua:+-s "$lua"} -H "Authorization: Bearer $key" "$target$path" >"$work/wrk$i" &
    w+=($!)
    i=$((i + 1))
  done
  wait "${w[@]}"
  for f in "$work"/wrk*; do
    total=$(python3 -c "import sys,re; t=open('$f').read(); print($total + float(re.search(r'Requests/sec:\s+([0-9.]+)', t).group(1)))")
    grep -q Non-2xx "$f" && { echo "non-2xx answers:"; cat "$f"; }
  done
  rm -f "$work"/wrk*
  printf '%-28s %d replica(s), %d connections: %8.1f req/s (load %s)\n' "$name" "$n" "$conns" "$total" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

h1=$(home r1); h2=$(home r2); h3=$(home r3)
key=$(LLMOS_HOME=$h1 "$bin" keys create --scope 'models:*' --scope 'data:*' | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().split("\nStore the secret")[0])["secret"])')
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $secs s per run"
start "$h1"; u1=$u
run "GET /v1/collections" /v1/collections "" "$u1"
run "POST /v1/embeddings" /v1/embeddings "$work/embed.lua" "$u1"
start "$h2"; u2=$u
start "$h3"; u3=$u
run "GET /v1/collections" /v1/collections "" "$u1" "$u2" "$u3"
run "POST /v1/embeddings" /v1/embeddings "$work/embed.lua" "$u1" "$u2" "$u3"

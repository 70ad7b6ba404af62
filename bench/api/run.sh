#!/usr/bin/env bash
# HTTP API benchmark (issue 4): 64 concurrent wrk connections, each request
#   POST /v1/embeddings {"model":"minilm","input":"<one sentence of bench/sentences.txt>"}
# against (1) `llmos serve` with its default settings (plus any variants asked for) and
# (2) a plain per-request FastAPI + uvicorn (1 worker) + onnxruntime server on the same
# model files, then compares with the in-process figure of the foundation benchmark
# (bench/run.sh). Everything listens on 127.0.0.1 only, on free ports chosen at runtime.
#
# Usage: bench/api/run.sh [--seconds 20] [--warmup 5] [--connections 64] [--threads 2]
#                         [--inprocess-seconds 5 | --no-inprocess]
#                         [--fastapi-modes "sync async"] [--variants]
#   --variants  also measures llmos with `--intra-threads 2`, with max_wait_ms = 2 and with
#               workers = 2 + intra_threads = 1 (each in [models.overrides.minilm])
#   --no-build  use the existing target/release/llmos (e.g. while another build holds cargo's lock)
#   --nice N    runs the servers, wrk and the in-process benchmark under `nice -n N`
#               (negative N needs root): on a machine busy with other work this keeps the
#               measured processes from competing for the cores on equal terms
# Needs: wrk (Debian: apt-get install -y wrk), python3 with venv, cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

seconds=20 warmup=5 conns=64 wthreads=2 inproc_s=5 fastapi_modes="sync async" variants=0 nice=0 build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --threads) wthreads=$2; shift 2 ;;
    --inprocess-seconds) inproc_s=$2; shift 2 ;;
    --no-inprocess) inproc_s=0; shift ;;
    --fastapi-modes) fastapi_modes=$2; shift 2 ;;
    --variants) variants=1; shift ;;
    --nice) nice=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }

venv=.bench/venv
if [ ! -x "$venv/bin/python" ] ||
   ! "$venv/bin/python" -c 'import onnxruntime, tokenizers, numpy, fastapi, uvicorn' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q onnxruntime==1.31.1 tokenizers numpy fastapi uvicorn
fi
[ "$build" = 0 ] || cargo build --release -q --bin llmos
llmos=target/release/llmos
$llmos runtime install >/dev/null
$llmos models pull minilm >/dev/null
model_dir=$($venv/bin/python -c 'import os; print(os.path.expanduser("~/.local/share/llmos/models/minilm"))')
[ -z "${LLMOS_HOME:-}" ] || model_dir=$LLMOS_HOME/models/minilm
[ -f "$model_dir/model.onnx" ] || { echo "no $model_dir/model.onnx" >&2; exit 1; }

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() { # url method
  for _ in $(seq 1 300); do
    if [ "$2" = POST ]; then
      code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -d '{"model":"minilm","input":"ready?"}' "$1" || true)
    else
      code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
    fi
    [ "$code" = 200 ] && return 0
    kill -0 "$server_pid" 2>/dev/null || { echo "server exited; log:" >&2; cat "$work/server.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "server not ready at $1" >&2; cat "$work/server.log" >&2; exit 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

rows=()
# measure NAME CONFIG URL: warm-up, then the measured run; appends a table row
measure() {
  local name=$1 config=$2 url=$3 load out
  nice -n "$nice" wrk -t "$wthreads" -c "$conns" -d "${warmup}s" --timeout 10s -s bench/api/embeddings.lua "$url" >/dev/null
  load=$(cut -d' ' -f1 /proc/loadavg)
  out=$(nice -n "$nice" wrk -t "$wthreads" -c "$conns" -d "${seconds}s" --timeout 10s --latency -s bench/api/embeddings.lua "$url")
  echo "$out" >&2
  local r; r=$(grep '^RESULT ' <<<"$out")
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$r"; }
  rows+=("| $name | $config | $(get rps) | $(get p50_ms) | $(get p99_ms) | $(get requests) | $(get non2xx) ($(get n429) × 429) | $(get socket_errors) | $load |")
  eval "rps_${4}=$(get rps)"
}

run_llmos() { # key name config-description extra-args...
  local key=$1 name=$2 desc=$3; shift 3
  local port; port=$(free_port)
  nice -n "$nice" "$llmos" "$@" serve --listen "127.0.0.1:$port" --models minilm >"$work/server.log" 2>&1 &
  server_pid=$!
  wait_ready "http://127.0.0.1:$port/health" GET
  wait_ready "http://127.0.0.1:$port/v1/embeddings" POST
  echo "== $name ($desc) on 127.0.0.1:$port" >&2
  measure "$name" "$desc" "http://127.0.0.1:$port" "$key"
  stop_server
}

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
echo "load before: $(cat /proc/loadavg); nice $nice" >&2

run_llmos llmos_default llmos "defaults (max_batch 32, max_wait_ms 0, intra_threads = ORT's choice)"
if [ "$variants" = 1 ]; then
  run_llmos llmos_t2 llmos "--intra-threads 2" --intra-threads 2
  cat >"$work/wait2.toml" <<'TOML'
[models.overrides.minilm]
max_wait_ms = 2
TOML
  run_llmos llmos_wait2 llmos "max_wait_ms = 2" --config "$work/wait2.toml"
  cat >"$work/w2.toml" <<'TOML'
[models.overrides.minilm]
workers = 2
intra_threads = 1
TOML
  run_llmos llmos_w2 llmos "workers = 2, intra_threads = 1" --config "$work/w2.toml"
fi

best_fastapi=0
for mode in $fastapi_modes; do
  port=$(free_port)
  MODEL_DIR=$model_dir INTRA_THREADS=2 MODE=$mode nice -n "$nice" "$venv/bin/python" -m uvicorn --app-dir bench/api \
    fastapi_server:app --host 127.0.0.1 --port "$port" --workers 1 --log-level warning \
    --no-access-log >"$work/server.log" 2>&1 &
  server_pid=$!
  wait_ready "http://127.0.0.1:$port/v1/embeddings" POST
  echo "== FastAPI ($mode handler) on 127.0.0.1:$port" >&2
  measure "FastAPI + uvicorn + onnxruntime" "1 worker, intra 2, \`$mode\` handler" "http://127.0.0.1:$port" "fastapi_$mode"
  stop_server
  v=$(eval echo "\${rps_fastapi_$mode}")
  best_fastapi=$(awk -v a="$best_fastapi" -v b="$v" 'BEGIN{print (b>a)?b:a}')
done

inproc=
if [ "$inproc_s" != 0 ]; then
  echo "== in-process: bench/run.sh --seconds $inproc_s" >&2
  if [ "$build" = 1 ]; then
    out=$(nice -n "$nice" bench/run.sh --seconds "$inproc_s")
  else # the newest already-built bench binary, run the way `cargo bench` runs it
    bin=$(ls -t target/release/deps/embed-* | grep -v '\.d$' | head -1)
    out=$(nice -n "$nice" "$bin" --bench --python "$root/$venv/bin/python" --seconds "$inproc_s")
  fi
  echo "$out" >&2
  inproc=$(awk -F'|' '/^\| *[0-9]+ *\|/{gsub(/ /,"",$3); if ($3+0>m) m=$3+0} END{print m}' <<<"$out")
fi

echo
echo "64 clients = $conns wrk connections, $wthreads wrk threads, ${seconds}s measured after ${warmup}s warm-up; wrk and the server share the machine's $(nproc) cores; nice $nice"
echo
echo "| server | configuration | requests/s (= sentences/s) | p50 ms | p99 ms | requests | non-2xx | socket errors | load avg (1 min) before |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
if [ -n "$inproc" ]; then
  echo "in-process best llmos (bench/run.sh --seconds $inproc_s): $inproc sentences/s"
  awk -v h="$rps_llmos_default" -v i="$inproc" 'BEGIN{printf "llmos HTTP (defaults) / in-process best = %.3f (target >= 0.80)\n", h/i}'
fi
awk -v h="$rps_llmos_default" -v f="$best_fastapi" 'BEGIN{if (f>0) printf "llmos HTTP (defaults) / best FastAPI = %.2f (target >= 2)\n", h/f}'

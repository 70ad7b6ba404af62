#!/usr/bin/env bash
# What the plugin path costs over HTTP (issue 10, "The plugin path must stay cheap"):
# CONNECTIONS wrk clients, one sentence of bench/sentences.txt per request, against a release
# `llmos serve --models minilm,pii-ner` in a temporary LLMOS_HOME, restarted for each
# configuration (only the pipeline differs):
#
#   minilm      POST /v1/embeddings minilm, no plugins                       → a
#   light       the same with normalize (preprocessor) + content-policy (request policy)
#   redact      the same with normalize + pii-redact (granted inference:pii-ner: it calls
#               the pii-ner model on every text) + content-policy
#   pii-ner     POST /v1/entities pii-ner, no plugins                        → b
#
# The "models' own bound" for redact is what the two models reach back to back:
# 1 / (1/a + 1/b). Targets: light costs ≤ 3 % of minilm's throughput; redact reaches ≥ 90 %
# of the bound. Each configuration runs ROUNDS times, interleaved (minilm, light, redact,
# pii-ner, minilm, ...), and the table gives each run and the mean.
#
# Usage: bench/plugins/run.sh [--seconds 20] [--warmup 5] [--connections 64] [--threads 2]
#                             [--rounds 2] [--nice N] [--no-build] [--llmos PATH]
#                             [--redact-timeout-ms N] [--plugin-threads N]
#   --plugin-threads N  `[plugins] threads` in every configuration (default: the host's,
#               half the cores, 1 to 8); each runs several calls at once
#               ([plugins] calls_per_thread), so that pii-redact's pii-ner calls batch
#   --redact-timeout-ms N  operator override of pii-redact's time budget per call (its
#               manifest asks 200 ms; its inference calls wait for pii-ner inside that budget)
#   --no-build  use the existing target/release/llmos and plugins/target/... (no cargo)
#   --nice N    run the server and wrk under `nice -n N` (negative N needs root)
# Needs: wrk (Debian: apt-get install -y wrk), curl, python3, cargo (unless --no-build).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=20 warmup=5 conns=64 wthreads=2 rounds=2 nice=0 build=1 llmos=target/release/llmos redact_ms= pthreads=
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --threads) wthreads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --nice) nice=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --llmos) llmos=$2; shift 2 ;;
    --redact-timeout-ms) redact_ms=$2; shift 2 ;;
    --plugin-threads) pthreads=$2; shift 2 ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
for tool in wrk curl python3; do
  command -v $tool >/dev/null || { echo "$tool not found (wrk: apt-get install -y wrk)" >&2; exit 1; }
done
if [ "$build" = 1 ]; then
  cargo build --release -q --bin llmos
  (cd plugins && cargo build -q --target wasm32-wasip2 --release)
fi
wasm=plugins/target/wasm32-wasip2/release
for f in "$llmos" $wasm/normalize.wasm $wasm/content_policy.wasm $wasm/pii_redact.wasm; do
  [ -e "$f" ] || { echo "missing $f (run without --no-build)" >&2; exit 1; }
done
llmos=$(realpath "$llmos")

work=$(mktemp -d)
export LLMOS_HOME=$work/home
unset LLMOS_CONFIG LLMOS_MODELS_DIR LLMOS_LISTEN
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

setup() { # each step checked: `set -e` does not apply in a function called before ||
  mkdir -p "$LLMOS_HOME" || return 1
  "$llmos" runtime install || return 1
  "$llmos" models pull minilm pii-ner || return 1
  "$llmos" plugin install $wasm/normalize.wasm --manifest plugins/normalize/manifest.toml || return 1
  "$llmos" plugin install $wasm/content_policy.wasm --manifest plugins/content-policy/manifest.toml \
    --set denied_terms='llmos-bench-denied;never-in-the-sentences' || return 1
  "$llmos" plugin install $wasm/pii_redact.wasm --manifest plugins/pii-redact/manifest.toml \
    --grant inference:pii-ner --approve-limits || return 1  # its manifest asks timeout_ms 200
  [ -z "$redact_ms" ] || "$llmos" plugin limits pii-redact --timeout-ms "$redact_ms" || return 1
}
setup >"$work/setup.log" 2>&1 || { echo "setting up $LLMOS_HOME failed:" >&2; cat "$work/setup.log" >&2; exit 1; }

: >"$work/none.toml"
[ -z "$pthreads" ] || printf '[plugins]\nthreads = %d\n\n' "$pthreads" >"$work/none.toml"
cp "$work/none.toml" "$work/light.toml"
cp "$work/none.toml" "$work/redact.toml"
cat >>"$work/light.toml" <<'TOML'
[pipelines.minilm]
preprocessors = ["normalize"]
request_policies = ["content-policy"]
TOML
cat >>"$work/redact.toml" <<'TOML'
[pipelines.minilm]
preprocessors = ["normalize", "pii-redact"]
request_policies = ["content-policy"]
TOML

# name | config | ROUTE | MODEL
configs=(
  "minilm|none|/v1/embeddings|minilm"
  "light|light|/v1/embeddings|minilm"
  "redact|redact|/v1/embeddings|minilm"
  "pii-ner|none|/v1/entities|pii-ner"
)

# measure NAME CONFIG ROUTE MODEL ROUND: a fresh server, warm-up, the measured run
measure() {
  local name=$1 config=$2 route=$3 model=$4 round=$5 port url code
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  url=http://127.0.0.1:$port
  nice -n "$nice" "$llmos" --config "$work/$config.toml" serve --listen "127.0.0.1:$port" \
    --models minilm,pii-ner >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
      -d "{\"model\":\"$model\",\"input\":\"ready?\"}" "$url$route" || true)
    [ "$code" = 200 ] && break
    kill -0 "$server_pid" 2>/dev/null || { echo "server exited; log:" >&2; cat "$work/server.log" >&2; exit 1; }
    sleep 0.2
  done
  [ "$code" = 200 ] || { echo "server not ready at $url$route" >&2; tail -50 "$work/server.log" >&2; exit 1; }
  ROUTE=$route MODEL=$model nice -n "$nice" wrk -t "$wthreads" -c "$conns" -d "${warmup}s" \
    --timeout 30s -s bench/route.lua "$url" >/dev/null
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local out; out=$(ROUTE=$route MODEL=$model nice -n "$nice" wrk -t "$wthreads" -c "$conns" \
    -d "${seconds}s" --timeout 30s --latency -s bench/route.lua "$url")
  # model runs per model over the whole server life (proves pii-redact called pii-ner)
  local runs; runs=$(curl -s "$url/metrics" |
    awk '/^llmos_batch_size_count\{/ { match($0,/model="[^"]*"/); printf "%s=%s ", substr($0,RSTART+7,RLENGTH-8), $2 }')
  kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=
  local r; r=$(grep '^RESULT ' <<<"$out") || { echo "no RESULT from wrk:" >&2; echo "$out" >&2; exit 1; }
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$r"; }
  local bad=$(( $(get errors) + $(get n429) + $(get socket_errors) ))
  local ok; ok=$(get expected)
  # throughput counts the 200s only: a failed request is not a served one
  local okps; okps=$(awk -v n="$ok" -v s="$(get seconds)" 'BEGIN{printf "%.1f", n/s}')
  [ "$bad" = 0 ] || { failures+=("$name round $round: $bad of $(get requests) requests failed ($(get n429) × 429): $(grep '^FIRST_ERROR' <<<"$out" || true)"); echo "${failures[-1]}" >&2; }
  echo "== $name round $round: $okps req/s answered 200, p50 $(get p50_ms) ms, p99 $(get p99_ms) ms, load $load; model runs: $runs" >&2
  rows+=("| $name | $round | $okps | $(get p50_ms) | $(get p99_ms) | $(get requests) | $bad | $load | $runs |")
  eval "rps_${name//-/_}+=\" $okps\""
}

machine="$(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "machine: $machine; load before: $(cat /proc/loadavg); nice $nice" >&2
rows=() failures=() rps_minilm= rps_light= rps_redact= rps_pii_ner=
for round in $(seq 1 "$rounds"); do
  for c in "${configs[@]}"; do
    IFS='|' read -r name config route model <<<"$c"
    measure "$name" "$config" "$route" "$model" "$round"
  done
done

mean() { awk '{ s=0; for (i=1;i<=NF;i++) s+=$i; printf "%.1f", s/NF }' <<<"$1"; }
a=$(mean "$rps_minilm") light=$(mean "$rps_light") redact=$(mean "$rps_redact") b=$(mean "$rps_pii_ner")
echo
echo "$conns wrk connections, $wthreads wrk threads; pii-redact timeout_ms: ${redact_ms:-manifest (200)}; [plugins] threads: ${pthreads:-host default (half of $(nproc) cores, 1 to 8)}, ${seconds}s measured after ${warmup}s warm-up, $rounds round(s) interleaved; one sentence per request; nice $nice"
echo "machine: $machine (wrk and the server share the cores)"
echo
echo "| configuration | round | requests/s answered 200 | p50 ms | p99 ms | requests | failed | load avg (1 min) before | model runs (batches, server life) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
echo
echo "| configuration | mean requests/s |"
echo "|---|---:|"
echo "| minilm alone (a) | $a |"
echo "| normalize + content-policy | $light |"
echo "| normalize + pii-redact + content-policy | $redact |"
echo "| pii-ner alone (b) | $b |"
echo
awk -v a="$a" -v l="$light" -v r="$redact" -v b="$b" 'BEGIN {
  if (a <= 0 || b <= 0 || l <= 0) { print "no figures: a configuration served nothing"; exit 1 }
  cost = 100 * (1 - l / a); bound = 1 / (1 / a + 1 / b)
  printf "two light plugins cost %.1f %% of throughput (%.1f → %.1f req/s): target ≤ 3 %%: %s\n", cost, a, l, (cost <= 3) ? "met" : "NOT met"
  printf "models own bound 1/(1/a+1/b) = 1/(1/%.1f + 1/%.1f) = %.1f req/s; with pii-redact %.1f req/s = %.1f %% of it: target ≥ 90 %%: %s\n", a, b, bound, r, 100 * r / bound, (r / bound >= 0.9) ? "met" : "NOT met"
}'
if [ ${#failures[@]} -gt 0 ]; then
  echo
  printf 'FAILED REQUESTS: %s\n' "${failures[@]}"
  exit 1
fi

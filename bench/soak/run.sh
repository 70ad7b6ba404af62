#!/usr/bin/env bash
# Soak test (issue 10): one release `llmos serve` on 127.0.0.1 with minilm, pii-ner and two
# more names for the minilm files (for a plugin chain and a hostile plugin on routes of
# their own), in a temporary LLMOS_HOME, under a mixed load for a fixed time:
#
#   main mix, CONNECTIONS clients split evenly over four routes (one wrk per route, in parallel):
#     POST /v1/embeddings        minilm          no plugins
#     POST /v1/entities          pii-ner         no plugins
#     POST /v2/models/minilm/infer               KServe JSON, one BYTES text tensor
#     POST /v1/embeddings        minilm-guarded  chain: normalize → content-policy
#   hostile load, HOSTILE clients at the same time:
#     POST /v1/embeddings        minilm-hostile  preprocessor test-amplify, granted
#          inference:minilm, asked to call `embed` on minilm 1000 × 32 texts of 1000 bytes:
#          it must be stopped by its limits (502) every time, while hammering the model that
#          the main mix uses.
#
# One sentence of bench/sentences.txt per request. Latency percentiles and requests/s come
# from wrk (one wrk per route, so p50/p99 are exact per route, client-side, including the
# queueing of a closed loop); the server's own counts by route/model/status come from
# /metrics before/after. RSS (VmRSS of /proc/PID/status) is read after start, after the
# warm-up and after the soak. The warm-up runs the whole load (hostile included) so that
# what grows to a plateau under it (ONNX Runtime's memory arenas reach the largest batches
# the load makes: the hostile plugin's are 32 texts of ~200 tokens) is in place before the
# RSS the bound is checked against.
#
# Exit status: 0 when the main mix had no answer other than 2xx and the designed 429s and no
# socket error, every hostile answer was the plugin's limit (502) or a 429, the server still
# answers afterwards, and RSS grew by at most --max-rss-growth-mib over the measured run;
# 1 otherwise. Everything listens on 127.0.0.1 (free ports chosen at runtime) and stops by
# itself; the temporary home is removed.
#
# Usage: bench/soak/run.sh [--seconds 60] [--connections 64] [--hostile 2] [--warmup 30]
#                          [--max-rss-growth-mib 64] [--nice N] [--no-build] [--llmos PATH]
#   --no-build  use the existing target/release/llmos and plugins/target/... (no cargo)
#   --llmos     the llmos binary to run (default target/release/llmos)
#   --nice N    run the server and wrk under `nice -n N` (negative N needs root)
# Needs: wrk (Debian: apt-get install -y wrk), curl, python3, cargo (unless --no-build).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

seconds=60 conns=64 hostile=2 warmup=30 max_growth_mib=64 nice=0 build=1 llmos=target/release/llmos
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --hostile) hostile=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --max-rss-growth-mib) max_growth_mib=$2; shift 2 ;;
    --nice) nice=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --llmos) llmos=$2; shift 2 ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ "$conns" -ge 4 ] || { echo "--connections must be at least 4 (one per route)" >&2; exit 2; }
[ "$hostile" -ge 0 ] || { echo "--hostile must be 0 (no hostile load) or more" >&2; exit 2; }

for tool in wrk curl python3; do
  command -v $tool >/dev/null || { echo "$tool not found (wrk: apt-get install -y wrk)" >&2; exit 1; }
done

if [ "$build" = 1 ]; then
  cargo build --release -q --bin llmos
  (cd plugins && cargo build -q --target wasm32-wasip2 --release)
fi
wasm=plugins/target/wasm32-wasip2/release
for f in "$llmos" $wasm/normalize.wasm $wasm/content_policy.wasm $wasm/test_amplify.wasm; do
  [ -e "$f" ] || { echo "missing $f (run without --no-build)" >&2; exit 1; }
done
llmos=$(realpath "$llmos")

work=$(mktemp -d)
export LLMOS_HOME=$work/home
unset LLMOS_CONFIG LLMOS_MODELS_DIR LLMOS_LISTEN
server_pid=
wrk_pids=()
cleanup() {
  for p in "${wrk_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- home: runtime, models (from the shared cache ~/.cache/llmos), plugins, config
setup() { # each step checked: `set -e` does not apply in a function called before ||
  mkdir -p "$LLMOS_HOME/manifests" || return 1
  "$llmos" runtime install || return 1
  for name in minilm-guarded minilm-hostile; do
    sed "s/^name = \"minilm\"/name = \"$name\"/" models/minilm.toml >"$LLMOS_HOME/manifests/$name.toml" || return 1
  done
  "$llmos" models pull minilm pii-ner minilm-guarded minilm-hostile || return 1
  "$llmos" plugin install $wasm/normalize.wasm --manifest plugins/normalize/manifest.toml || return 1
  "$llmos" plugin install $wasm/content_policy.wasm --manifest plugins/content-policy/manifest.toml \
    --set denied_terms='llmos-soak-denied;never-in-the-sentences' || return 1
  "$llmos" plugin install $wasm/test_amplify.wasm --manifest plugins/testing/amplify/manifest.toml \
    --grant inference:minilm --set model=minilm || return 1
}
setup >"$work/setup.log" 2>&1 || { echo "setting up $LLMOS_HOME failed:" >&2; cat "$work/setup.log" >&2; exit 1; }
cat >"$LLMOS_HOME/llmos.toml" <<'TOML'
[pipelines.minilm-guarded]
preprocessors = ["normalize"]
request_policies = ["content-policy"]

[pipelines.minilm-hostile]
preprocessors = ["test-amplify"]

[models.overrides.minilm-hostile]
workers = 1
TOML

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
nice -n "$nice" "$llmos" serve --listen "127.0.0.1:$port" \
  --models minilm,pii-ner,minilm-guarded,minilm-hostile >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"model":"minilm","input":"ready?"}' "$url/v1/embeddings" || true)
  [ "$code" = 200 ] && break
  kill -0 "$server_pid" 2>/dev/null || { echo "server exited; log:" >&2; cat "$work/server.log" >&2; exit 1; }
  sleep 0.2
done
[ "$code" = 200 ] || { echo "server not ready at $url" >&2; tail -50 "$work/server.log" >&2; exit 1; }

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$server_pid/status"; }
hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$server_pid/status"; }
metrics() { curl -s "$url/metrics" | grep '^llmos_http_requests_total{' || true; }

# the routes: name | ROUTE | MODEL | INPUT | EXPECT | connections
per=$((conns / 4)) extra=$((conns % 4))
routes=(
  "embeddings|/v1/embeddings|minilm||200|$((per + (extra > 0)))"
  "entities|/v1/entities|pii-ner||200|$((per + (extra > 1)))"
  "kserve|/v2/models/minilm/infer|minilm||200|$((per + (extra > 2)))"
  "chain|/v1/embeddings|minilm-guarded||200|$per"
)
[ "$hostile" = 0 ] || routes+=("hostile|/v1/embeddings|minilm-hostile|1000 32 1000|502|$hostile")

# run_all SECONDS TAG: one wrk per route, in parallel; waits for all
run_all() {
  local secs=$1 tag=$2 r name route model input expect c
  wrk_pids=()
  for r in "${routes[@]}"; do
    IFS='|' read -r name route model input expect c <<<"$r"
    ROUTE=$route MODEL=$model INPUT=$input EXPECT=$expect nice -n "$nice" \
      wrk -t 1 -c "$c" -d "${secs}s" --timeout 30s --latency -s bench/route.lua "$url" \
      >"$work/$tag.$name.out" 2>&1 &
    wrk_pids+=($!)
  done
  local failed=0
  for p in "${wrk_pids[@]}"; do wait "$p" || failed=1; done
  wrk_pids=()
  [ "$failed" = 0 ] || { echo "a wrk run failed:" >&2; cat "$work/$tag".*.out >&2; exit 1; }
}

machine="$(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "machine: $machine" >&2
echo "server $url (pid $server_pid); load before: $(cat /proc/loadavg); nice $nice" >&2
rss_start=$(rss_kib)
# RSS every 5 s from the warm-up on, for the record
( while kill -0 "$server_pid" 2>/dev/null; do echo "$(date +%s) $(rss_kib)"; sleep 5; done ) >"$work/rss.log" 2>/dev/null &
sampler=$!
echo "== warm-up ${warmup}s" >&2
run_all "$warmup" warm
rss_before=$(rss_kib)
metrics >"$work/metrics.before"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== soak ${seconds}s: $conns clients on the main mix, $hostile on the hostile route" >&2
run_all "$seconds" soak
kill "$sampler" 2>/dev/null || true
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
rss_after=$(rss_kib)
hwm=$(hwm_kib)
metrics >"$work/metrics.after"
health=$(curl -s -o /dev/null -w '%{http_code}' "$url/health" || true)
probe=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"model":"minilm","input":"still there?"}' "$url/v1/embeddings" || true)

# --- report
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
fail=()
total_rps=0 main_errors=0 main_429=0
echo
echo "soak: ${seconds}s after ${warmup}s warm-up; $conns clients on the main mix (one wrk per route), $hostile on the hostile route; nice $nice"
echo "machine: $machine; load average (1/5/15 min) before $load_before, after $load_after"
echo
echo "| route | model | plugins | clients | requests | requests/s | p50 ms | p99 ms | max ms | designed answers | 429 | other answers | socket errors |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${routes[@]}"; do
  IFS='|' read -r name route model input expect c <<<"$r"
  out=$(cat "$work/soak.$name.out")
  res=$(grep '^RESULT ' <<<"$out" || true)
  [ -n "$res" ] || { echo "no RESULT from wrk for $name:" >&2; echo "$out" >&2; exit 1; }
  case $name in
    chain) plugins="normalize → content-policy" ;;
    hostile) plugins="test-amplify (hostile)" ;;
    *) plugins="none" ;;
  esac
  echo "| $route | $model | $plugins | $c | $(get requests "$res") | $(get rps "$res") | $(get p50_ms "$res") | $(get p99_ms "$res") | $(get max_ms "$res") | $(get expected "$res") × $expect | $(get n429 "$res") | $(get errors "$res") | $(get socket_errors "$res") |"
  bad=$(( $(get errors "$res") + $(get socket_errors "$res") ))
  if [ "$name" = hostile ]; then
    [ "$bad" = 0 ] || fail+=("hostile route: $bad answers other than 502/429 or socket errors ($(grep '^FIRST_ERROR' <<<"$out" || true))")
    [ "$(get expected "$res")" -gt 0 ] || fail+=("hostile route: the plugin was never stopped by its limits (no 502)")
  else
    total_rps=$(awk -v a="$total_rps" -v b="$(get rps "$res")" 'BEGIN{print a+b}')
    main_errors=$((main_errors + bad))
    main_429=$((main_429 + $(get n429 "$res")))
    [ "$bad" = 0 ] || fail+=("$name: $bad errors ($(grep '^FIRST_ERROR' <<<"$out" || true))")
  fi
done
echo
echo "main mix: $total_rps requests/s in all, $main_errors errors other than 429, $main_429 × 429"
echo
echo "server-side counts over the soak (llmos_http_requests_total after − before, warm-up excluded):"
echo
echo "| route | model | status | requests |"
echo "|---|---|---|---:|"
awk 'NR==FNR { before[$1]=$2; next } { d=$2-before[$1]; if (d>0) {
       match($1,/route="[^"]*"/); r=substr($1,RSTART+7,RLENGTH-8)
       match($1,/model="[^"]*"/); m=substr($1,RSTART+7,RLENGTH-8)
       match($1,/status="[^"]*"/); s=substr($1,RSTART+8,RLENGTH-9)
       printf "| %s | %s | %s | %d |\n", r, m, s, d } }' \
  "$work/metrics.before" "$work/metrics.after"
growth=$((rss_after - rss_before))
echo
printf 'RSS: %d MiB after start, %d MiB after the warm-up, %d MiB after the soak (growth %+d MiB over the soak; bound %d MiB); peak (VmHWM) %d MiB\n' \
  $((rss_start / 1024)) $((rss_before / 1024)) $((rss_after / 1024)) $((growth / 1024)) "$max_growth_mib" $((hwm / 1024))
echo "RSS every 5 s from the start of the warm-up (MiB; the soak starts at sample $((warmup / 5 + 1))): $(awk '{printf "%d ", $2/1024}' "$work/rss.log")"
[ "$hostile" = 0 ] || echo "hostile route, first answer: $(grep '^FIRST_DESIGNED' "$work/soak.hostile.out" | cut -d' ' -f2- || true)"
echo "after the soak: GET /health → $health, POST /v1/embeddings → $probe"
[ "$growth" -le $((max_growth_mib * 1024)) ] || fail+=("RSS grew by $((growth / 1024)) MiB, more than the bound of $max_growth_mib MiB")
[ "$health" = 200 ] && [ "$probe" = 200 ] || fail+=("the server does not answer after the soak (health $health, embeddings $probe)")
kill -0 "$server_pid" 2>/dev/null || fail+=("the server exited")

if [ ${#fail[@]} -gt 0 ]; then
  echo
  printf 'FAILED: %s\n' "${fail[@]}"
  echo "server log (last 30 lines):" >&2; tail -30 "$work/server.log" >&2
  exit 1
fi
echo
echo "PASSED"

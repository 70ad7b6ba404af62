#!/usr/bin/env bash
# Text generation speed (issue 8, "Done means"; docs/generation.md §6c): time to first token
# and decode tokens/s at 1, 4 and 16 concurrent streams against a release `llmos serve`
# (smollm2, pulled into a temporary LLMOS_HOME), and the same model.onnx run by the loop a
# Python user writes with onnxruntime (bench/generate/bench.py `ort`: every `present.*` fed
# back as `past_key_values.*`, the mask grown with np.concatenate, greedy argmax).
#
# Every stream is the same fixed prompt as token ids ("1, 2, 3, …, 12, ": SmolLM2 counts on
# without ever ending), greedy, max_tokens TOKENS, so every stream generates exactly TOKENS
# tokens (checked: usage.completion_tokens and finish_reason "length").
#
# The Python baseline at S streams:
#   sequential  the single-stream loop serving S requests one after the other (what a user's
#               loop without batching does with S callers): aggregate = S·TOKENS / wall
#   batched     S copies of the prompt in one [S, n] batch, the same loop (a naive batch of
#               equal-length prompts: no padding, all start together) — shown for reference
# Targets (issue 8): llmos ≥ 1.2× the loop's decode tokens/s at 1 stream, and ≥ 3× the
# sequential loop's aggregate tokens/s at 16 streams.
# Also: the single-stream decode rate as a fraction of the memory-bandwidth limit (NumPy copy
# bandwidth ÷ bytes of weights read per token) and the no-cache recompute (every token
# recomputes the whole sequence) as a sanity bound.
#
# ONNX Runtime threads: llmos runs a generation model on one session with intra-op threads =
# the cores ([runtime] intra_threads = 0); the Python sessions get the same number.
#
# --count K makes the prompt "1, 2, …, K, " (default 12: 39 tokens; 250: 1,142 tokens, a long
# context where every step reads a cache of ~1,200 positions). Odd rounds run llmos first, even
# rounds the Python loop first.
#
# Usage: bench/generate/run.sh [--tokens 128] [--streams "1 4 16"] [--rounds 2] [--count 12]
#                              [--no-build] [--llmos PATH] [--python PATH]
# Needs: python3 with onnxruntime==1.31.1, numpy, onnx (the test venv of scripts/test.sh,
# onnxruntime added to it when missing), curl, cargo (unless --no-build).
set -euo pipefail
cd "$(dirname "$0")/../.."

tokens=128 streams="1 4 16" rounds=2 count=12 build=1 llmos=target/release/llmos
python="${LLMOS_CACHE:-$HOME/.cache/llmos}/test-pyenv/bin/python"
while [ $# -gt 0 ]; do
  case "$1" in
    --tokens) tokens=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --llmos) llmos=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
. bench/generate/prepare.sh

work=$(mktemp -d)
export LLMOS_HOME=$work/home
unset LLMOS_CONFIG LLMOS_MODELS_DIR LLMOS_LISTEN
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
{ mkdir -p "$LLMOS_HOME" && "$llmos" runtime install && "$llmos" models pull smollm2; } >"$work/setup.log" 2>&1 ||
  { echo "setting up $LLMOS_HOME failed:" >&2; cat "$work/setup.log" >&2; exit 1; }
model=$LLMOS_HOME/models/smollm2/model.onnx
threads=$(nproc)

# "1, 2, 3, …, K, " as SmolLM2 token ids: digits are single tokens ('0' = 32), ',' = 28, ' ' = 216
prompt=$("$python" -c '
import sys
ids = []
for k in range(1, int(sys.argv[1]) + 1):
    ids += [32 + int(d) for d in str(k)] + [28, 216]
print(",".join(map(str, ids)))' "$count")
n_prompt=$(tr ',' '\n' <<<"$prompt" | wc -l)

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
"$llmos" serve --listen "127.0.0.1:$port" --models smollm2 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
  curl -sf -o /dev/null "$url/v1/models" && break
  kill -0 "$server_pid" 2>/dev/null || { echo "server exited; log:" >&2; cat "$work/server.log" >&2; exit 1; }
  sleep 0.2
done
$drv llmos "$url" --streams 1 --tokens 8 --prompt "$prompt" >/dev/null  # warm-up

machine="$(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "machine: $machine; load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
get() { "$python" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d[sys.argv[2]] if not isinstance(d[sys.argv[2]], float) else "%.1f" % d[sys.argv[2]])' "$1" "$2"; }
rows=()
declare -A llmos_dec llmos_agg py_dec py_agg
run_llmos() {
  local load r
  load=$(cut -d' ' -f1 /proc/loadavg)
  r=$($drv llmos "$url" --streams "$s" --tokens "$tokens" --prompt "$prompt") ||
    { echo "llmos at $s streams failed: $r" >&2; exit 1; }
  [ "$(get "$r" tokens_each)" = "[$tokens]" ] && [ "$(get "$r" finish)" = "['length']" ] ||
    { echo "not every stream generated $tokens tokens: $r" >&2; exit 1; }
  echo "== round $round llmos $s streams: $r (load $load)" >&2
  rows+=("| $round | llmos serve | $s concurrent streams | $(get "$r" ttft_ms_mean) (max $(get "$r" ttft_ms_max)) | $(get "$r" decode_tps_per_stream_mean) | $(get "$r" aggregate_tps) | $load |")
  llmos_dec[$s]+=" $(get "$r" decode_tps_per_stream_mean)"; llmos_agg[$s]+=" $(get "$r" aggregate_tps)"
}
run_python() {
  local load r
  load=$(cut -d' ' -f1 /proc/loadavg)
  r=$($drv ort "$model" --batch 1 --repeat "$s" --tokens "$tokens" --prompt "$prompt" --threads "$threads")
  echo "== round $round python sequential $s: $r (load $load)" >&2
  rows+=("| $round | Python loop, sequential | $s requests in turn | $(get "$r" ttft_ms_mean) | $(get "$r" decode_tps_per_stream_mean) | $(get "$r" aggregate_tps) | $load |")
  py_dec[$s]+=" $(get "$r" decode_tps_per_stream_mean)"; py_agg[$s]+=" $(get "$r" aggregate_tps)"
}
for round in $(seq 1 "$rounds"); do
  for s in $streams; do
    # Neither side always gets the quieter (or warmer) half of a round.
    if [ $((round % 2)) = 1 ]; then run_llmos; run_python; else run_python; run_llmos; fi
    if [ "$s" -gt 1 ]; then
      load=$(cut -d' ' -f1 /proc/loadavg)
      r=$($drv ort "$model" --batch "$s" --tokens "$tokens" --prompt "$prompt" --threads "$threads")
      echo "== round $round python batched $s: $r (load $load)" >&2
      rows+=("| $round | Python loop, one naive batch | batch $s | $(get "$r" ttft_ms_mean) | $(get "$r" decode_tps_per_stream_mean) | $(get "$r" aggregate_tps) | $load |")
    fi
  done
done
kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=

bw=$($drv bandwidth)
wt=$($drv weights "$model")
rc=$($drv recompute "$model" --tokens 32 --prompt "$prompt" --threads "$threads")
mean() { awk '{ s=0; for (i=1;i<=NF;i++) s+=$i; printf "%.1f", s/NF }' <<<"$1"; }

echo
echo "smollm2 (SmolLM2-135M-Instruct Q4_1 import), prompt $n_prompt tokens, $tokens generated per stream, greedy; ONNX Runtime 1.31.1 CPU, $threads intra-op threads everywhere; $rounds round(s)"
echo "machine: $machine (the server, the clients and the Python loop share the cores)"
echo
echo "| round | what | streams | TTFT ms (mean) | decode tokens/s per stream | aggregate tokens/s | load avg (1 min) |"
echo "|---:|---|---|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
l1=$(mean "${llmos_dec[1]:-0}") p1=$(mean "${py_dec[1]:-0}")
last=${streams##* }
la=$(mean "${llmos_agg[$last]:-0}") pa=$(mean "${py_agg[$last]:-0}")
"$python" - "$l1" "$p1" "$la" "$pa" "$last" "$bw" "$wt" "$rc" <<'PY'
import json, sys
l1, p1, la, pa = map(float, sys.argv[1:5]); last = sys.argv[5]
if min(l1, p1, la, pa) <= 0:
    sys.exit("no ratios: --streams must include 1 and every run must produce tokens")
bw, wt, rc = (json.loads(x) for x in sys.argv[6:9])
print(f"1 stream: llmos {l1:.1f} tokens/s vs the Python loop {p1:.1f}: {l1 / p1:.2f}× (target ≥ 1.2×: {'met' if l1 >= 1.2 * p1 else 'NOT met'})")
print(f"{last} streams aggregate: llmos {la:.1f} tokens/s vs the sequential Python loop {pa:.1f}: {la / pa:.2f}× (target ≥ 3×: {'met' if la >= 3 * pa else 'NOT met'})")
gb = bw["copy_gb_s"]
print(f"copy bandwidth (NumPy copyto of 1 GiB, best of 5): {gb:.1f} GB/s")
for what, b in (("weights in model.onnx (initializers)", wt["bytes"]),
                ("weights read per token as run (8-bit embedding rows not read, tied head folded to f32)", wt["as_run_bytes"])):
    print(f"{what}: {b / 1e6:.1f} MB → bound {gb * 1e9 / b:.1f} tokens/s; llmos 1 stream = {100 * l1 * b / (gb * 1e9):.0f} % of it")
print(f"no-cache recompute (Python, prompt + 32 tokens, each token re-runs the whole sequence): {rc['tps']:.1f} tokens/s; cached decode is {l1 / rc['tps']:.1f}× that")
PY

#!/usr/bin/env bash
# Prompt-lookup speculative decoding (docs/generation.md, "Speculative decoding"): single-stream
# decode tokens/s of a release `llmos serve --models smollm2` with `[generation] speculative =
# "off"` and with the default ("prompt-lookup"), against the Python onnxruntime loop of
# bench/generate/bench.py on the same model.onnx, on two prompts:
#   counting  "1, 2, 3, …, 12, " as token ids (the prompt of bench/generate/run.sh: repeats)
#   story     a ChatML chat turn asking for a story (prose: few repeats)
# Each round runs every (prompt, what) pair once, alternating, so drift in the machine's speed
# hits all of them alike. Greedy, max_tokens TOKENS; every run must generate TOKENS tokens.
# Also reports the drafts tried and kept (/metrics) of the speculative server.
#
# Usage: bench/generate/speculative.sh [--tokens 128] [--rounds 4] [--draft-tokens K]
#                                      [--no-build] [--llmos PATH] [--python PATH]
# --draft-tokens sets `[generation] draft_tokens` of the speculative server (default: the
# server's default).
set -euo pipefail
cd "$(dirname "$0")/../.."

tokens=128 rounds=4 build=1 llmos=target/release/llmos draft=
python="${LLMOS_CACHE:-$HOME/.cache/llmos}/test-pyenv/bin/python"
while [ $# -gt 0 ]; do
  case "$1" in
    --tokens) tokens=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --draft-tokens) draft=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --llmos) llmos=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
. bench/generate/prepare.sh

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export LLMOS_HOME=$work/home
unset LLMOS_CONFIG LLMOS_MODELS_DIR LLMOS_LISTEN
{ mkdir -p "$LLMOS_HOME" && "$llmos" runtime install && "$llmos" models pull smollm2; } >"$work/setup.log" 2>&1 ||
  { echo "setting up $LLMOS_HOME failed:" >&2; cat "$work/setup.log" >&2; exit 1; }
model=$LLMOS_HOME/models/smollm2/model.onnx
threads=$(nproc)

# Two servers on the same models: homes that share the pulled models directory.
declare -A url
for what in off prompt-lookup; do
  home=$work/home-$what
  mkdir -p "$home"
  printf '[models]\ndir = "%s"\n\n[generation]\nspeculative = "%s"\n' "$LLMOS_HOME/models" "$what" >"$home/llmos.toml"
  if [ -n "$draft" ] && [ "$what" = prompt-lookup ]; then echo "draft_tokens = $draft" >>"$home/llmos.toml"; fi
  port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  LLMOS_HOME=$home "$llmos" serve --listen "127.0.0.1:$port" --models smollm2 >"$work/server-$what.log" 2>&1 &
  pids+=($!)
  url[$what]=http://127.0.0.1:$port
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "${url[$what]}/v1/models" && break
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "server ($what) exited; log:" >&2; cat "$work/server-$what.log" >&2; exit 1; }
    sleep 0.2
  done
done

declare -A prompt
prompt[counting]=$("$python" -c '
ids = []
for k in range(1, 13):
    ids += [32 + int(d) for d in str(k)] + [28, 216]
print(",".join(map(str, ids)))')
story='<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
<|im_start|>user
Write a short story about a dragon who learns to bake bread.<|im_end|>
<|im_start|>assistant
'
prompt[story]=$(curl -sf "${url[off]}/v1/tokenize" -H 'content-type: application/json' \
  -d "$("$python" -c 'import json,sys; print(json.dumps({"model": "smollm2", "input": [sys.argv[1]], "add_special_tokens": False}))' "$story")" |
  "$python" -c 'import json,sys; d=json.load(sys.stdin); print(",".join(map(str, d["data"][0]["ids"] if "data" in d else d["ids"][0])))')

for what in off prompt-lookup; do $drv llmos "${url[$what]}" --streams 1 --tokens 8 --prompt "${prompt[counting]}" >/dev/null; done  # warm-up
metric() { curl -sf "${url[prompt-lookup]}/metrics" | awk -v m="$1{model=\"smollm2\"}" '$1 == m {print $2}'; }

get() { "$python" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d[sys.argv[2]] if not isinstance(d[sys.argv[2]], float) else "%.1f" % d[sys.argv[2]])' "$1" "$2"; }
machine="$(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "machine: $machine; load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
declare -A dec drafted kept
for round in $(seq 1 "$rounds"); do
  for p in counting story; do
    for what in python off prompt-lookup; do
      if [ "$what" = python ]; then
        r=$($drv ort "$model" --batch 1 --tokens "$tokens" --prompt "${prompt[$p]}" --threads "$threads")
      else
        d0=$(metric llmos_generate_draft_tokens_total) k0=$(metric llmos_generate_draft_accepted_total)
        r=$($drv llmos "${url[$what]}" --streams 1 --tokens "$tokens" --prompt "${prompt[$p]}") ||
          { echo "llmos ($what) failed: $r" >&2; exit 1; }
        [ "$(get "$r" tokens_each)" = "[$tokens]" ] ||
          { echo "llmos ($what) did not generate $tokens tokens on $p: $r" >&2; exit 1; }
        if [ "$what" = prompt-lookup ]; then
          drafted[$p]=$(( ${drafted[$p]:-0} + $(metric llmos_generate_draft_tokens_total) - d0 ))
          kept[$p]=$(( ${kept[$p]:-0} + $(metric llmos_generate_draft_accepted_total) - k0 ))
        fi
      fi
      echo "== round $round $p $what: $(get "$r" decode_tps_per_stream_mean) tokens/s" >&2
      dec[$p,$what]+=" $(get "$r" decode_tps_per_stream_mean)"
    done
  done
done

mean() { awk '{ s=0; for (i=1;i<=NF;i++) s+=$i; printf "%.1f", s/NF }' <<<"$1"; }
echo
echo "smollm2, 1 stream, greedy, $tokens tokens; draft_tokens ${draft:-default}; ONNX Runtime 1.31.1 CPU, $threads intra-op threads; $rounds rounds alternated"
echo "machine: $machine"
echo
echo "| prompt | Python loop | llmos, speculative off | llmos, prompt-lookup | prompt-lookup ÷ off | prompt-lookup ÷ Python | drafted tokens kept |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for p in counting story; do
  py=$(mean "${dec[$p,python]}") off=$(mean "${dec[$p,off]}") on=$(mean "${dec[$p,prompt-lookup]}")
  "$python" - "$p" "$py" "$off" "$on" "${drafted[$p]}" "${kept[$p]}" "${dec[$p,python]}" "${dec[$p,off]}" "${dec[$p,prompt-lookup]}" <<'PY'
import sys
p, py, off, on, d, k = sys.argv[1], *map(float, sys.argv[2:7])
rate = f"{int(k)} of {int(d)} ({k / d:.0%})" if d else "none drafted"
print(f"| {p} | {py:.1f} ({sys.argv[7].strip()}) | {off:.1f} ({sys.argv[8].strip()}) | {on:.1f} ({sys.argv[9].strip()}) | {on / off:.2f}× | {on / py:.2f}× | {rate} |")
PY
done

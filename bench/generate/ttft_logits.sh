#!/usr/bin/env bash
# Time to first token of two release builds side by side, alternated (BENCHMARKS.md, "The
# prefill's head on the last position only"): OLD (a build before logits_to_keep, whose
# smollm2 import returns every position's logits) and NEW; prompts "1, …, 12, " (39 tokens) and
# "1, …, 250, " (1,142 tokens), 4 rounds each, 8 tokens per request; peak RSS of both servers.
# Usage: bench/generate/ttft_logits.sh OLD_LLMOS [NEW_LLMOS (default target/release/llmos)]
# Homes are kept in /tmp/ttft-old and /tmp/ttft-new (each pulls smollm2 with its own binary).
set -euo pipefail
cd "$(dirname "$0")/../.."
P=${LLMOS_CACHE:-$HOME/.cache/llmos}/test-pyenv/bin/python
drv="$P bench/generate/bench.py"
old=$(realpath "${1:?usage: $0 OLD_LLMOS [NEW_LLMOS]}") new=$(realpath "${2:-target/release/llmos}")
for who in old new; do
  h=/tmp/ttft-$who; bin=${!who}
  [ -d $h/models/smollm2 ] || { mkdir -p $h; LLMOS_HOME=$h $bin runtime install >/dev/null 2>&1; LLMOS_HOME=$h $bin models pull smollm2 >/dev/null 2>&1; }
done
LLMOS_HOME=/tmp/ttft-old $old serve --listen 127.0.0.1:18081 --models smollm2 >/tmp/ttft-old.log 2>&1 & p1=$!
LLMOS_HOME=/tmp/ttft-new $new serve --listen 127.0.0.1:18082 --models smollm2 >/tmp/ttft-new.log 2>&1 & p2=$!
trap 'kill $p1 $p2 2>/dev/null' EXIT
for port in 18081 18082; do for _ in $(seq 1 300); do curl -sf -o /dev/null http://127.0.0.1:$port/v1/models && break; sleep 0.2; done; done
prompt() { $P -c 'import sys
ids=[]
for k in range(1,int(sys.argv[1])+1): ids += [32+int(d) for d in str(k)] + [28,216]
print(",".join(map(str,ids)))' $1; }
for count in 12 250; do
  pr=$(prompt $count)
  for port in 18081 18082; do $drv llmos http://127.0.0.1:$port --streams 1 --tokens 4 --prompt "$pr" >/dev/null; done
  for round in 1 2 3 4; do
    if [ $((round % 2)) = 1 ]; then order="18081 18082"; else order="18082 18081"; fi
    for port in $order; do
      r=$($drv llmos http://127.0.0.1:$port --streams 1 --tokens 8 --prompt "$pr")
      echo "count $count round $round $([ $port = 18081 ] && echo old || echo new) $(echo "$r" | $P -c 'import json,sys; d=json.load(sys.stdin); print("ttft_ms %.0f" % d["ttft_ms_mean"])') load $(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
echo "peak RSS (kB): old $(grep VmHWM /proc/$p1/status | awk '{print $2}') new $(grep VmHWM /proc/$p2/status | awk '{print $2}')"

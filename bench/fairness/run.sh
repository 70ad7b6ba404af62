#!/usr/bin/env bash
# Fair scheduling across tenants (docs/tools.md §6, docs/generation.md "Scheduling"): the
# light tenant's single stream (TTFT, decode tokens/s) on an idle release `llmos serve
# --models smollm2`, then while a heavy tenant keeps 16 concurrent streams busy, under
# `[generation] scheduler = "fair"` and `"fifo"`; prints a table. bench/fairness/fairness.py
# is the client (one key per tenant: `llmos keys create --tenant light|heavy`).
#
# Usage: bench/fairness/run.sh [--max-batch "4 32"] [--schedulers "fair+cap fair fifo"]
#                              [--budget 1.8] [--tokens 32] [--heavy-tokens 64] [--streams 16]
#                              [--runs 3] [--no-build] [--llmos PATH] [--models-dir DIR]
#                              [--python PATH]
# `fair+cap` is `fair` with the cost-aware cap `[generation] fair_step_budget = BUDGET`.
# --models-dir: a folder that already holds smollm2 (else it is pulled into a temporary home).
set -euo pipefail
cd "$(dirname "$0")/../.."

batches="4 32" schedulers="fair+cap fair fifo" budget=1.8 tokens=32 heavy=64 streams=16 runs=3 build=1
llmos=target/release/llmos models_dir= python=python3
while [ $# -gt 0 ]; do
  case "$1" in
    --max-batch) batches=$2; shift 2 ;;
    --schedulers) schedulers=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --heavy-tokens) heavy=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --llmos) llmos=$2; shift 2 ;;
    --models-dir) models_dir=$(realpath "$2"); shift 2 ;;
    --python) python=$2; shift 2 ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ "$build" = 0 ] || cargo build --release -q --bin llmos
[ -x "$llmos" ] || { echo "missing $llmos (run without --no-build)" >&2; exit 1; }
llmos=$(realpath "$llmos")
drv="$python bench/fairness/fairness.py"
work=$(mktemp -d)
export LLMOS_HOME=$work/home
unset LLMOS_CONFIG LLMOS_MODELS_DIR LLMOS_LISTEN
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$LLMOS_HOME"
[ -z "$models_dir" ] || printf '[models]\ndir = "%s"\n' "$models_dir" >"$LLMOS_HOME/base.toml"
touch "$LLMOS_HOME/base.toml"
cp "$LLMOS_HOME/base.toml" "$LLMOS_HOME/llmos.toml"
{ "$llmos" runtime install && "$llmos" models pull smollm2; } >"$work/setup.log" 2>&1 ||
  { echo "setting up $LLMOS_HOME failed:" >&2; cat "$work/setup.log" >&2; exit 1; }
light=$("$llmos" keys create --scope 'models:*' --tenant light | "$python" -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
heavy_key=$("$llmos" keys create --scope 'models:*' --tenant heavy | "$python" -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
machine="$(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
rows=()
for mb in $batches; do
  for sched in $schedulers; do
    case "$sched" in
      fair+cap) gen=$(printf 'scheduler = "fair"\nfair_step_budget = %s' "$budget") ;;
      *) gen=$(printf 'scheduler = "%s"' "$sched") ;;
    esac
    { cat "$LLMOS_HOME/base.toml"; printf '\n[models.overrides.smollm2]\nmax_batch = %s\n\n[generation]\n%s\n' "$mb" "$gen"; } >"$LLMOS_HOME/llmos.toml"
    "$llmos" serve --listen "127.0.0.1:$port" --models smollm2 >"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 600); do
      curl -sf -o /dev/null -H "Authorization: Bearer $light" "$url/v1/models" && break
      kill -0 "$server_pid" 2>/dev/null || { echo "server exited; log:" >&2; cat "$work/server.log" >&2; exit 1; }
      sleep 0.2
    done
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    r=$($drv "$url" --light-key "$light" --heavy-key "$heavy_key" --streams "$streams" --tokens "$tokens" --heavy-tokens "$heavy" --runs "$runs")
    load_after=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "== max_batch $mb $sched: $r (load $load → $load_after)" >&2
    rows+=("$("$python" - "$r" "$mb" "$sched" "$load → $load_after" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); mb, sched, load = sys.argv[2:5]
i, l = r["idle"], r["loaded"]
print(f"| {mb} | {sched} | {i['ttft_ms']:.0f} | {i['tps']:.1f} | {l['ttft_ms']:.0f} (max {max(x['ttft_ms'] for x in l['runs']):.0f}) | {l['tps']:.1f} | "
      f"{l['ttft_ms'] / i['ttft_ms']:.2f}× / {i['tps'] / l['tps']:.2f}× | {r['heavy_completed_tps_during_light']:.1f} | {load} |")
PY
)")
    kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=
  done
done
echo
echo "smollm2, light: 1 stream × $runs runs of $tokens tokens; heavy: $streams concurrent streams of $heavy tokens each, back to back; greedy; machine: $machine"
echo
echo "| max_batch | scheduler | idle TTFT ms | idle tokens/s | loaded TTFT ms (mean, max) | loaded tokens/s | TTFT / tokens/s vs idle | heavy tokens/s (completed) | load avg 1/5/15 min |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"

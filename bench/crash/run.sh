#!/usr/bin/env bash
# Crash test of ingest (issue 7): `kill -9` during a large `llmos data ingest` at random
# points, CYCLES times (default 25). After each kill the store must open, every document the
# CLI acknowledged (written to --ack-log once its batch was stored and flushed) must be
# there, and the collection's count must equal its listed documents. The next cycle resumes
# the same ingest (stored documents are skipped); when one runs to the end, the collection
# is removed and the next cycle starts over.
#
#   bench/crash/run.sh [CYCLES]        LLMOS_BIN=path/to/llmos (default target/debug/llmos)
#
# Needs the `minilm` model pulled in the models folder it is given (MODELS_DIR, default
# target/tmp/models, where the tests pull it) and python3 for the checks.
set -euo pipefail
cd "$(dirname "$0")/../.."
CYCLES=${1:-25}
BIN=${LLMOS_BIN:-target/debug/llmos}
MODELS=${MODELS_DIR:-$PWD/target/tmp/models}
DOCS=${CRASH_DOCS:-1000}
[ -x "$BIN" ] || { echo "no llmos binary at $BIN (cargo build -p llmos)" >&2; exit 1; }
[ -d "$MODELS/minilm" ] || { echo "minilm is not pulled in $MODELS (LLMOS_HOME=… llmos models pull minilm)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export LLMOS_HOME=$WORK/home LLMOS_LOG=error
mkdir -p "$LLMOS_HOME"
printf '[models]\ndir = "%s"\n' "$MODELS" > "$LLMOS_HOME/llmos.toml"

# The corpus: DOCS JSON lines, each a few sentences with an id and metadata.
python3 - "$WORK/corpus.jsonl" "$DOCS" <<'PY'
import json, random, sys
random.seed(7)
words = "river stone cloud engine garden harbour signal forest copper lantern market winter orbit canyon meadow violin".split()
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        text = " ".join(
            f"Record {i} sentence {j}: the {random.choice(words)} near the {random.choice(words)} "
            f"measured {random.randint(1, 999)} units on day {random.randint(1, 365)}."
            for j in range(random.randint(1, 6)))
        f.write(json.dumps({"id": f"doc-{i}", "text": text, "n": i}) + "\n")
PY

check() { # $1: ack log → prints "acked present missing count_ok"
  "$BIN" data ls > "$WORK/all.json" 2> "$WORK/ls.err" || { echo "OPEN-FAILED"; cat "$WORK/ls.err" >&2; return; }
  if grep -q '"name": "crash"' "$WORK/all.json"; then
    "$BIN" data ls crash > "$WORK/ls.json" 2> "$WORK/ls.err" || { echo "OPEN-FAILED"; cat "$WORK/ls.err" >&2; return; }
  else # killed before the ingest created the collection
    echo '{"collection": {"documents": 0}, "documents": []}' > "$WORK/ls.json"
  fi
  python3 - "$WORK/ls.json" "$1" <<'PY'
import json, sys
ls = json.load(open(sys.argv[1]))
stored = {d["id"] for d in ls["documents"]}
acked = {l.strip() for l in open(sys.argv[2]) if l.strip()}
missing = acked - stored
print(len(acked), len(stored), len(missing), int(ls["collection"]["documents"] == len(stored)))
PY
}

kills=0 completed=0 failures=0 open_failures=0 max_acked=0
: > "$WORK/acks.log"
for cycle in $(seq 1 "$CYCLES"); do
  "$BIN" data ingest "$WORK/corpus.jsonl" --collection crash --quiet --ack-log "$WORK/acks.log" \
      > "$WORK/ingest.out" 2> "$WORK/ingest.err" &
  pid=$!
  # A random point: 1 to 15 s into the run (model load, chunking, then batches).
  sleep "$(python3 -c 'import random; print(round(random.uniform(1.0, 15.0), 2))')"
  if kill -9 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
    kills=$((kills + 1)); what=killed
  else
    wait "$pid" || { echo "cycle $cycle: ingest failed:"; cat "$WORK/ingest.err"; failures=$((failures + 1)); }
    completed=$((completed + 1)); what=completed
  fi
  r=$(check "$WORK/acks.log")
  if [ "$r" = OPEN-FAILED ]; then
    open_failures=$((open_failures + 1)); echo "cycle $cycle ($what): the store did not open"; continue
  fi
  read -r acked stored missing count_ok <<< "$r"
  [ "$acked" -gt "$max_acked" ] && max_acked=$acked
  status=ok
  if [ "$missing" != 0 ] || [ "$count_ok" != 1 ]; then status=FAIL; failures=$((failures + 1)); fi
  echo "cycle $cycle: $what; acknowledged $acked, stored $stored, missing $missing, count consistent $count_ok: $status"
  if [ "$what" = completed ]; then
    "$BIN" data rm crash > /dev/null
    : > "$WORK/acks.log"
  fi
done
echo "summary: $CYCLES cycles, $kills killed mid-ingest, $completed ran to the end, $open_failures store-open failures, $failures failed checks (most acknowledged at once: $max_acked of $DOCS)"
[ "$failures" = 0 ] && [ "$open_failures" = 0 ]

# Sourced by bench/generate/run.sh and speculative.sh after their options: checks curl and
# the Python (onnxruntime, numpy, onnx installed when missing), builds the release llmos unless
# --no-build, and sets `llmos` (absolute) and `drv` (the bench.py driver).
command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }
[ -x "$python" ] || { echo "no Python at $python: run scripts/test.sh once, or give --python" >&2; exit 1; }
if ! "$python" -c 'import onnxruntime, numpy, onnx' 2>/dev/null; then
  "$python" -m pip install -q --disable-pip-version-check 'onnxruntime==1.31.1' 'numpy==2.4.6' 'onnx==1.19.1'
fi
[ "$build" = 0 ] || cargo build --release -q --bin llmos
[ -x "$llmos" ] || { echo "missing $llmos (run without --no-build)" >&2; exit 1; }
llmos=$(realpath "$llmos")
drv="$python bench/generate/bench.py"

#!/usr/bin/env bash
# The GPU check (docs/gpu.md, "The GPU check"): one prepared script, at most 8 minutes, nothing downloaded.
#
#   bash benchmarks/gpu_check.sh [FIGURES.json]      # default: $OUT/gpu_check.json if $OUT is set, else ./gpu_check.json
#
# On CUDA it runs three parts, each under its own time limit, and writes all their figures to FIGURES.json:
#   agreement  benchmarks/gpu_check.py --big: the tiny checkpoint and Qwen2.5-VL-3B's architecture (random weights),
#              bf16 and fp32: batched vs one at a time, cached vs uncached, against the study's path (answers equal,
#              largest |difference| of a summed log p), with each path's seconds and work counts        (150 s)
#   bench      benchmarks/bench_gpu_lvlm.py: prompts/s and peak memory at shots 1-4, the study's path vs the kit's (210 s)
#   tests      the Qwen tests on CUDA (ICL_KIT_TEST_DEVICE=cuda): tests/lvlm/test_prefix_cache.py and
#              tests/lvlm/test_vision_cache.py, fp32: passed / failed / skipped                          (90 s)
# A part that fails or runs out of time is recorded as such (its exit status) and the others still run.
# Without CUDA it writes {"skipped": "<why>"} and exits 0. GPU_CHECK_CPU=1 runs the agreement and bench parts on
# the CPU with the tiny model in seconds instead (the CPU-side check `make test` runs: tests/lvlm/test_gpu_check.py).
#
# Python: $PYTHON, else .venv/bin/python, else python3. The kit is used from this checkout (PYTHONPATH). Packages
# beyond torch and transformers that do not import are installed from the wheels in $ICL_KIT_WHEELS (default:
# ./wheels; `pip download` them elsewhere and carry the folder), with --no-index: nothing is fetched.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
FIGURES="${1:-${OUT:+$OUT/gpu_check.json}}"
FIGURES="${FIGURES:-gpu_check.json}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- packages (from wheels only)
NEEDED="qwen_vl_utils scipy yaml PIL tqdm numpy pandas statsmodels"
missing=""
for m in $NEEDED; do "$PY" -c "import $m" 2>/dev/null || missing="$missing $m"; done
if [ -n "$missing" ]; then
  WHEELS="${ICL_KIT_WHEELS:-$ROOT/wheels}"
  echo "gpu_check: missing Python packages:$missing; installing from $WHEELS (no index)"
  pkgs=$(echo "$missing" | sed -e 's/qwen_vl_utils/qwen-vl-utils/; s/yaml/pyyaml/; s/PIL/pillow/')
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" $pkgs || echo "gpu_check: wheel install failed"
fi

# ---------------------------------------------------------------- CUDA, or the CPU-side check
if [ "${GPU_CHECK_CPU:-0}" = "1" ]; then
  DEVICE=cpu
else
  why=$("$PY" -c "import torch; from icl_kit.core.devices import cuda_problem; print(cuda_problem())" 2>&1 | tail -1)
  if [ -n "$why" ]; then
    "$PY" -c 'import json, sys; json.dump({"skipped": sys.argv[1]}, open(sys.argv[2], "w"))' \
      "no usable CUDA device: $why" "$FIGURES"
    echo "gpu_check: skipped, no usable CUDA device ($why); wrote $FIGURES"
    exit 0
  fi
  DEVICE=cuda
fi

# ---------------------------------------------------------------- the parts
status=()
part() {  # name, seconds, command...: run it under `timeout`, record its exit status and seconds
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "gpu_check: $name (at most ${limit} s)"
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
  local rc=$?
  status+=("$name=$rc:$((SECONDS - t0))")
  tail -n 12 "$WORK/$name.log"
}
if [ "$DEVICE" = cuda ]; then
  part agreement 150 "$PY" benchmarks/gpu_check.py --device cuda --big --json "$WORK/agreement.json"
  part bench 210 "$PY" benchmarks/bench_gpu_lvlm.py --json "$WORK/bench.json"
  ICL_KIT_TEST_DEVICE=cuda part tests 90 "$PY" -m pytest -q -p no:cacheprovider --junitxml "$WORK/tests.xml" \
    tests/lvlm/test_prefix_cache.py tests/lvlm/test_vision_cache.py
else
  part agreement 60 "$PY" benchmarks/gpu_check.py --device cpu --questions 1 --dtypes float32 \
    --json "$WORK/agreement.json"
  part bench 60 "$PY" benchmarks/bench_gpu_lvlm.py --device cpu --config tests/fixtures/tiny-qwen2.5-vl/config.json \
    --questions 1 --max-batch 16 --dtype float32 --image-size 112x84 --json "$WORK/bench.json"
fi

# ---------------------------------------------------------------- one file
"$PY" - "$WORK" "$FIGURES" "$DEVICE" "${status[@]}" <<'EOF'
import json, platform, sys, xml.etree.ElementTree as ET
from pathlib import Path

work, figures, device, *status = sys.argv[1:]
out = {"device": device, "python": platform.python_version()}
try:
    import torch, transformers
    out |= {"torch": torch.__version__, "transformers": transformers.__version__,
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}
except Exception as exc:  # noqa: BLE001 - recorded, not fatal
    out["versions_error"] = repr(exc)
out["parts"] = {}
for item in status:
    name, rest = item.split("=", 1)
    rc, seconds = rest.split(":")
    out["parts"][name] = {"exit_status": int(rc), "seconds": int(seconds), "timed_out": rc in ("124", "137")}
    path = Path(work) / f"{name}.json"
    if path.is_file():
        out[name] = json.loads(path.read_text())
    log = Path(work) / f"{name}.log"
    if log.is_file():
        out["parts"][name]["log_tail"] = log.read_text(errors="replace")[-3000:]
junit = Path(work) / "tests.xml"
if junit.is_file():
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    out["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
Path(figures).write_text(json.dumps(out, indent=1))
print(f"gpu_check: wrote {figures}: " + ", ".join(f"{k} exit {v['exit_status']} in {v['seconds']} s"
                                               for k, v in out["parts"].items()))
EOF

#!/usr/bin/env bash
# The GPU run, as one command on a bare GPU machine with no package registry (see docs/performance.md's GPU
# section). bench/device/prepare.sh, run beforehand where pip works, put the wheels it needs in
# bench/device/wheels/. Here they are installed into a virtual environment that also sees the
# machine's own packages (torch with CUDA among them), then bench/device/run.py runs its steps.
#
#   OUT=DIR bash bench/device/run.sh          # a GPU machine: DIR/RESULTS.md, results.json, logs.txt
#   OUT=DIR bash bench/device/run.sh --cpu    # here, with this project's Python: the CPU rehearsal
# Other arguments go to run.py after the install (--only STEP,..., --budget SECONDS, --cpu).
# HIGGS_DEVICE_PYTHON (the machine's Python), HIGGS_DEVICE_VENV and HIGGS_DEVICE_WHEELS override
# where things are.
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT to the folder for RESULTS.md}"
mkdir -p "$OUT"

if [ "${1:-}" = "--cpu" ]; then
  exec "${PYTHON:-python3}" bench/device/run.py --cpu --out "$OUT"
fi

# the machine's Python: the one that holds torch with CUDA
BASE=${HIGGS_DEVICE_PYTHON:-/opt/torch/.venv/bin/python3}
[ -x "$BASE" ] || BASE=$(command -v python3)
VENV=${HIGGS_DEVICE_VENV:-/tmp/higgs-device-venv}
WHEELS=${HIGGS_DEVICE_WHEELS:-bench/device/wheels}
ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run bench/device/prepare.sh first" >&2; exit 2; }

{
  echo "base: $BASE"; "$BASE" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'
  # --system-site-packages shows the base interpreter's packages; when the machine's Python is
  # itself a virtualenv, its packages are not the base's, so a .pth file names them too
  "$BASE" -m venv --system-site-packages --without-pip "$VENV"
  SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$BASE" -c 'import site, sysconfig; print("\n".join(dict.fromkeys(site.getsitepackages() + [sysconfig.get_paths()["purelib"]])))' > "$SITE/device-image.pth"
  # the carried wheels, the project's included, go first: they shadow the image's other versions
  "$BASE" -m pip --python "$VENV/bin/python" install --no-index --no-deps --ignore-installed --no-compile --no-cache-dir -q "$WHEELS"/*.whl \
    || "$BASE" -m pip install --no-index --no-deps --no-compile --no-cache-dir -q --target "$SITE" "$WHEELS"/*.whl
  "$VENV/bin/python" -c 'import torch, transformers, soundfile, soxr, boson_multimodal; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())'
  "$BASE" -m pip --python "$VENV/bin/python" check || true
  "$BASE" -m pip --python "$VENV/bin/python" list 2>/dev/null
} > "$OUT/install.log" 2>&1
status=$?
tail -n 5 "$OUT/install.log"
[ $status -eq 0 ] || { echo "install failed: see $OUT/install.log" >&2; exit 3; }

exec "$VENV/bin/python" bench/device/run.py --out "$OUT" "$@"

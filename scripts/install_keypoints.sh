#!/usr/bin/env bash
# Installs the optional keypoint back-ends into .venv (idempotent; run after scripts/setup.sh).
#   bash scripts/install_keypoints.sh [mediapipe] [hrnet]     (no argument: both)
# mediapipe: mediapipe==0.10.14 (bundles its Holistic models; fully offline), installed without
#   its pins: it asks for protobuf<5 and opencv-contrib-python, but Ray's dependencies need
#   protobuf>=6.33.5 and opencv-python-headless already provides cv2. It runs on protobuf 6.x with
#   the small shim in pipelines/keypoints/mediapipe_holistic.py (protobuf 7 removed an API it uses).
# hrnet: mmpose 1.3.2 + mmdet 3.3.0 + mmengine 0.10.7 + mmcv 2.1.0 with compiled ops. mmcv 2.1.0
#   has no wheel for this torch/Python, so it is built from the sdist once (about 20-25 min on
#   2 cores, MAX_JOBS=2) in a side build venv and the wheel is cached under
#   ${SIGNBRIDGE_CACHE:-$HOME/.cache/signbridge}/wheels/<torch version>/; later runs install the
#   cached wheel in seconds. xtcocotools is rebuilt from source for numpy 2 and cached the same way.
#   torchvision is NOT installed: pipelines/keypoints/hrnet.py keeps it out of mmpose's import path.
# Env: PYTHON (default .venv/bin/python), SIGNBRIDGE_CACHE, MAX_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CACHE=${SIGNBRIDGE_CACHE:-$HOME/.cache/signbridge}
export MAX_JOBS=${MAX_JOBS:-2}
pip=("$PY" -m pip --disable-pip-version-check -q)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(mediapipe hrnet)

log() { echo "[install_keypoints] $*" >&2; }
has() { "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null; }
# extra NAME -> the requirement list of pyproject.toml's optional extra (one source of truth)
extra() { "$PY" -c "import tomllib, sys; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies'][sys.argv[1]]))" "$1"; }

install_mediapipe() {
  if has mediapipe 0.10.14 && "$PY" -c 'import google.protobuf as p, sys; sys.exit(int(p.__version__.split(".")[0]) != 6)'; then
    log "mediapipe 0.10.14 already installed"; return
  fi
  log "installing mediapipe 0.10.14 (no pinned deps) ..."
  mapfile -t reqs < <(extra mediapipe)
  "${pip[@]}" install "${reqs[@]}"
  "${pip[@]}" install --no-deps mediapipe==0.10.14
}

# A side venv for compiling: its own setuptools<81 (mmcv's setup.py needs pkg_resources) and
# cython, with .venv's site-packages (torch, numpy) appended through a .pth file, so .venv's own
# build tools stay untouched.
build_venv() {
  local bv=$CACHE/build-venv
  local site
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [[ ! -x $bv/bin/python ]]; then
    "$("$PY" -c 'import sys; print(sys._base_executable)')" -m venv "$bv"
    "$bv/bin/python" -m pip --disable-pip-version-check -q install "setuptools<81" wheel ninja "cython<3.2" >&2
  fi
  "$bv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' | {
    read -r bsite; echo "$site" > "$bsite/_signbridge_main_venv.pth"; }
  echo "$bv"
}

# cached_wheel NAME VERSION DIR -> prints the cached wheel path, or nothing
cached_wheel() { ls "$3"/"$1"-"$2"-*.whl 2>/dev/null | head -n1 || true; }

install_hrnet() {
  local torch_v numpy_major wdir bv whl t0
  torch_v=$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')
  numpy_major=$("$PY" -c 'import numpy; print(numpy.__version__.split(".")[0])')
  wdir=$CACHE/wheels/torch-$torch_v
  mkdir -p "$wdir"
  if ! has mmcv 2.1.0; then
    whl=$(cached_wheel mmcv 2.1.0 "$wdir")
    if [[ -z $whl ]]; then
      bv=$(build_venv)
      log "building mmcv 2.1.0 with ops against torch $torch_v (once; about 20-25 min with MAX_JOBS=$MAX_JOBS) ..."
      t0=$(date +%s)
      MMCV_WITH_OPS=1 FORCE_CUDA=0 nice -n 19 "$bv/bin/python" -m pip --disable-pip-version-check -q \
        wheel --no-build-isolation --no-deps --no-binary mmcv mmcv==2.1.0 -w "$wdir.tmp"
      mv "$wdir.tmp"/mmcv-2.1.0-*.whl "$wdir"/ && rmdir "$wdir.tmp"
      log "mmcv wheel built in $(( $(date +%s) - t0 )) s, cached in $wdir"
      whl=$(cached_wheel mmcv 2.1.0 "$wdir")
    fi
    log "installing $whl"
    "${pip[@]}" install --no-deps "$whl"
  fi
  if ! has xtcocotools 1.14.3; then
    local xdir=$CACHE/wheels/numpy-$numpy_major
    mkdir -p "$xdir"
    whl=$(cached_wheel xtcocotools 1.14.3 "$xdir")
    if [[ -z $whl ]]; then
      bv=$(build_venv)
      log "building xtcocotools 1.14.3 against numpy $numpy_major ..."
      nice -n 19 "$bv/bin/python" -m pip --disable-pip-version-check -q \
        wheel --no-build-isolation --no-deps --no-binary xtcocotools xtcocotools==1.14.3 -w "$xdir"
      whl=$(cached_wheel xtcocotools 1.14.3 "$xdir")
    fi
    "${pip[@]}" install --no-deps "$whl"
  fi
  if ! has mmpose 1.3.2 || ! has mmdet 3.3.0 || ! has mmengine 0.10.7; then
    log "installing mmengine 0.10.7, mmdet 3.3.0, mmpose 1.3.2 (no pinned deps) ..."
    # Their declared deps would pull opencv-python (clashing with -headless) and chumpy (does not
    # build, never imported); the `hrnet` extra lists the ones actually imported.
    mapfile -t reqs < <(extra hrnet)
    "${pip[@]}" install "${reqs[@]}"
    "${pip[@]}" install --no-deps mmengine==0.10.7 mmdet==3.3.0 mmpose==1.3.2
  fi
}

for t in "${targets[@]}"; do
  case $t in
    mediapipe) install_mediapipe ;;
    hrnet) install_hrnet ;;
    *) echo "unknown back-end '$t' (expected mediapipe or hrnet)" >&2; exit 2 ;;
  esac
done
"$PY" - "${targets[@]}" <<'EOF'
import sys
for t in sys.argv[1:]:
    if t == "mediapipe":
        from pipelines.keypoints.mediapipe_holistic import import_mediapipe
        mp = import_mediapipe()
        mp.solutions.holistic
        print(f"[install_keypoints] mediapipe {mp.__version__} ok", file=sys.stderr)
    else:
        from pipelines.keypoints.hrnet import _import_mm
        _import_mm()
        import mmcv, mmdet, mmpose
        print(f"[install_keypoints] mmpose {mmpose.__version__} mmdet {mmdet.__version__} mmcv {mmcv.__version__} (ops) ok", file=sys.stderr)
EOF

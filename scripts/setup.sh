#!/usr/bin/env bash
# Creates .venv with the pinned PyTorch and signbridge (editable) plus test tools. Idempotent:
# re-running is a no-op unless pyproject.toml or this script changed.
#   TORCH_SPEC   torch requirement (default torch==2.13.0; a CUDA user may keep it and set
#   TORCH_INDEX  e.g. https://download.pytorch.org/whl/cu128 to get the CUDA build of the release)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), f"signbridge needs Python >= 3.11, found {sys.version}"'

stamp_value=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-$TORCH_SPEC
stamp=.venv/.signbridge-setup
if [[ -f $stamp && $(cat $stamp) == "$stamp_value" ]]; then
  exit 0
fi
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
echo "[setup] installing $TORCH_SPEC ..." >&2
if [[ -n ${TORCH_INDEX:-} ]]; then
  "${pip[@]}" install "$TORCH_SPEC" --index-url "$TORCH_INDEX"
else
  "${pip[@]}" install "$TORCH_SPEC"
fi
echo "[setup] installing signbridge and its dependencies (Ray, transformers, ...) ..." >&2
"${pip[@]}" install -e ".[dev]"
echo "$stamp_value" > $stamp
echo "[setup] done: $(.venv/bin/python -c 'import torch, ray; print("torch", torch.__version__, "ray", ray.__version__)')" >&2

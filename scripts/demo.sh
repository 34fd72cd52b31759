#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the embedded default: the synthetic signing corpus demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-outputs/demo}
.venv/bin/python jobs/synthesize.py --config configs/synthesize/demo.yaml out_dir="$OUT/corpus" "$@"

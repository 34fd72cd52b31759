#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the embedded default, the synthetic signing corpus demo:
# generate the two-language corpus, then preprocess it with Ray Data into Parquet shards.
# Every stage skips work that is already done, so re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-outputs/demo}
PY=.venv/bin/python
$PY jobs/synthesize.py --config configs/synthesize/demo.yaml out_dir="$OUT/corpus"
$PY jobs/preprocess.py --config configs/data/synthetic_demo.yaml corpus.root="$OUT/corpus" out_dir="$OUT/shards"

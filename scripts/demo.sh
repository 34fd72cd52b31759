#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the embedded default: the progressive pipeline
# (jobs/joint_train.py, configs/joint/demo.yaml) on the synthetic signing corpus: generate the
# two-language corpus, preprocess it with Ray Data into Parquet shards, train Sign2Gloss,
# Gloss2Text and joint Sign2Text, evaluate the four tasks on dev and test.
# Every stage skips work that is already done, so re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python jobs/joint_train.py --config configs/joint/demo.yaml "$@"

#!/usr/bin/env bash
# Sets up .venv (if needed), installs the keypoint back-ends the tests exercise (MediaPipe, and
# mmpose HRNet with an mmcv wheel built once and cached), and runs the default (non-slow) tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_keypoints.sh mediapipe hrnet
exec .venv/bin/python -m pytest -m "not slow" -q "$@"

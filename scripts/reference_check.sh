#!/usr/bin/env bash
# scripts/reference_check.sh: recomputes the evaluation numbers in eval/ with scikit-learn,
# seqeval and numpy (pip-installed into a throw-away venv under .cache/) and compares them
# to docclass's to 1e-6; writes eval/reference/{comparison.json,comparison.md,expected.json}.
# Needs scripts/setup.sh (binary, datasets) and the GermEval split of scripts/train_default.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/reference_venv.sh
"$VENV/bin/python" scripts/reference_metrics.py

#!/usr/bin/env bash
# scripts/baselines_area_of_law.sh: TF-IDF baselines for the area-of-law head, scored on
# dev, by blocked cross-validation and on test; writes eval/area-of-law/baselines/.
# Uses the same throw-away venv as scripts/reference_check.sh. About 10 minutes on 2 cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/reference_venv.sh
"$VENV/bin/python" scripts/baselines_area_of_law.py

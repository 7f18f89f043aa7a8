#!/usr/bin/env bash
# scripts/baselines.sh [SET ...]: docclass train against the tuned TF-IDF + logistic
# regression baseline on every shared classification set (germeval2019_blurbs,
# germeval2018, ler_court_cls), same splits, paired tests; writes eval/baselines/.
# Needs scripts/setup.sh first; uses the reference venv of scripts/reference_check.sh.
# The first run encodes every set once (about 40 minutes on 2 cores, most of it
# ler_court_cls); later runs read the features from the cache.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ -x target/release/docclass ] && [ -d datasets/germeval2019_blurbs ] || { echo "baselines: run scripts/setup.sh first" >&2; exit 1; }
source scripts/reference_venv.sh
"$VENV/bin/python" scripts/baselines.py "$@"

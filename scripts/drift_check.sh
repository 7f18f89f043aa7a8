#!/usr/bin/env bash
# scripts/drift_check.sh: how good `docclass drift` is, measured on the shared labelled
# sets (scripts/drift_check.py says what is run); writes eval/drift/results.json.
# Trains the heads it needs when they are missing or lack a training profile:
#   models/area-of-law                 (scripts/train_default.sh: train + dev)
#   .cache/heads/germeval2018-coarse   GermEval 2018 coarse, four fifths
#   .cache/heads/blurbs-fold1..5       book blurbs, four of five folds each (drift_check.py)
# Encoder features come from the feature cache (.cache/features); on a fresh machine the
# first run encodes the sets (about an hour on 2 cores), later runs take minutes.
# Run scripts/setup.sh first.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DOCCLASS=target/release/docclass
[ -x "$DOCCLASS" ] && [ -d datasets/ler_court_cls ] && [ -f .cache/germeval2018/train.tsv ] \
  || { echo "drift_check: run scripts/setup.sh first" >&2; exit 1; }
has_profile() { [ -f "$1/head.json" ] && grep -q '"profile"' "$1/head.json"; }
has_profile models/area-of-law \
  || { echo "drift_check: models/area-of-law has no training profile: run scripts/train_default.sh" >&2; exit 1; }
has_profile .cache/heads/germeval2018-coarse \
  || "$DOCCLASS" train .cache/germeval2018/train.tsv --no-header --text-column 1 --label-column 2 \
       --out .cache/heads/germeval2018-coarse --force
python3 scripts/drift_check.py .cache/drift-check eval/drift/results.json

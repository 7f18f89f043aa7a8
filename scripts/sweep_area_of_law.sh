#!/usr/bin/env bash
# scripts/sweep_area_of_law.sh: the area-of-law head's settings compared by dev macro-F1
# (what selection sees) and by 5-fold blocked cross-validation over train + dev (see
# `docclass train --cross-validate`); writes eval/area-of-law/selection.md. Needs the
# features of every encoder layer in the cache (the first run encodes them, ~30 minutes
# on 2 cores); each setting then takes about 30 s.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DOCCLASS=target/release/docclass
DATA=datasets/ler_court_cls
OUT=eval/area-of-law/selection.md
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$DOCCLASS" train "$DATA/train.tsv" --dev "$DATA/dev.tsv" --layers 1,2,3,4,5,6,7,8,9,10,11,12 --features-only \
  --out "$WORK/unused"
{
  echo "# area-of-law: settings by dev score and by blocked cross-validation"
  echo
  echo "Written by \`scripts/sweep_area_of_law.sh\`. Every run: \`docclass train $DATA/train.tsv --dev $DATA/dev.tsv"
  echo "--seed 42 --epochs 30 --patience 5 --cross-validate 5\` plus the settings below. Dev: macro-F1 of the selected"
  echo "epoch on dev.tsv. CV: mean macro-F1 over 5 folds of train + dev, each court's passages cut into 5"
  echo "contiguous blocks, the selected epochs replayed on the other four (the dev passages all fall in fold 5)."
  echo
  echo "| settings | best epoch | dev macro-F1 | CV macro-F1 | folds |"
  echo "| --- | --- | --- | --- | --- |"
} > "$OUT"
run() {
  "$DOCCLASS" train "$DATA/train.tsv" --dev "$DATA/dev.tsv" --out "$WORK/head" --force --seed 42 --epochs 30 \
    --patience 5 --cross-validate 5 "$@" 2> "$WORK/log"
  python3 - "$WORK/head/head.json" "$*" >> "$OUT" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["training"]
cv = t["cross_validation"]
folds = " ".join(f"{s:.4f}" for s in cv["fold_scores"])
print(f"| `{sys.argv[2]}` | {t['best_epoch']} | {t['dev_score']['value']:.4f} | {cv['mean']:.4f} | {folds} |")
PY
  tail -n 1 "$OUT" >&2
}
run --dense-learning-rate 3e-6
run --dense-learning-rate 0
run --dense-learning-rate 1e-6
run --dense-learning-rate 1e-5
run --dense-learning-rate 3e-5
run --dense-learning-rate 0.001
run --dense-learning-rate 3e-6 --layers 2,4,6,8,10,12
run --dense-learning-rate 1e-5 --layers 2,4,6,8,10,12
run --dense-learning-rate 3e-6 --layers 1,2,3,4,5,6,7,8,9,10,11,12
run --dense-learning-rate 3e-6 --learning-rate 0.003
run --dense-learning-rate 3e-6 --learning-rate 0.03
run --dense-learning-rate 3e-6 --l2 1e-5
run --dense-learning-rate 3e-6 --batch-size 64
run --lexical-buckets 0 --dense-learning-rate 1e-3

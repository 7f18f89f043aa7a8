#!/usr/bin/env bash
# scripts/baselines_area_of_law.sh: TF-IDF baselines for the area-of-law head, scored on
# dev, by blocked cross-validation and on test; writes eval/area-of-law/baselines/.
# Uses the same throw-away venv as scripts/reference_check.sh. About 25 minutes on 2 cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/reference_venv.sh
"$VENV/bin/python" scripts/baselines_area_of_law.py

# The docclass head against three baselines on test, with McNemar's test and paired
# bootstrap intervals: the best character model on test (SVM), the best word model on
# dev, and word + character n-grams with logistic regression (the 0.955 the issue
# names). Needs the head's report (scripts/train_default.sh writes it).
DOCCLASS=target/release/docclass
BASELINES=eval/area-of-law/baselines
for system in char-wb-2-5-grams-linearsvc-c-1 word-1-2-grams-lr-c-30 word-1-2-char-wb-2-5-grams-lr-c-30; do
  "$DOCCLASS" eval --predictions ".cache/baselines/area-of-law/$system.jsonl" --gold datasets/ler_court_cls/test.tsv \
    --report "$BASELINES/$system-test" --force
  "$DOCCLASS" eval --compare eval/area-of-law/ler_court_cls-test "$BASELINES/$system-test" \
    --report "$BASELINES/head-vs-$system" --force
done

#!/usr/bin/env bash
# scripts/train_default.sh: retrains the heads of the default pipeline (models/de-legal)
# from the datasets and writes their test-split numbers into eval/, with docclass only.
#   models/legal-entities  CRF tagger, 7 coarse LER types: ler_train_rebuilt → ler_dev
#   models/area-of-law     classifier, 7 courts: ler_court_cls train → dev
#   eval/germeval2018/     a head on GermEval 2018 (coarse), scored on a held-out fifth
# Encoder features are cached in .cache/features: the first run spends about 67 minutes
# encoding on 2 cores (90 in all); later runs take 15 minutes. Same seed, same heads.
# Run scripts/setup.sh first (binary, encoder, datasets).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DOCCLASS=target/release/docclass
[ -x "$DOCCLASS" ] && [ -f models/multilingual-e5-small/model.safetensors ] && [ -d datasets/ler ] \
  || { echo "train_default: run scripts/setup.sh first" >&2; exit 1; }
SEED=${SEED:-42}
timed() { local start=$SECONDS; "$@"; echo "train_default: $(( SECONDS - start )) s: $*" >&2; }

# Layers, word features, epochs, rows and lexical dropout chosen on the dev split
# (eval/legal-entities/features-2026-12/ and dropout-2026-12/).
timed "$DOCCLASS" train datasets/ler/ler_train_rebuilt.conll --dev datasets/ler/ler_dev.conll \
  --tag-map labels/ler-coarse.tsv --out models/legal-entities --force --seed "$SEED" \
  --epochs 20 --patience 3 --word-features brackets --layers 5,6,7,8 --max-lexical-rows 600000 \
  --lexical-dropout 0.4
# A classifier chooses its settings by 5-fold cross-validation on train + dev and is
# fitted on both (see the README's train section).
timed "$DOCCLASS" train datasets/ler_court_cls/train.tsv --dev datasets/ler_court_cls/dev.tsv \
  --label-names models/area-of-law/label-names.tsv --out models/area-of-law --force --refit-with-dev

# Each head at f32 (the reference) and at int8 (what classify runs by default), and the two compared.
for precision in f32 int8; do
  suffix=; [ "$precision" = f32 ] || suffix=-$precision
  timed "$DOCCLASS" eval --model models/legal-entities datasets/ler/ler_test.conll --tag-map labels/ler-coarse.tsv \
    --precision "$precision" --report "eval/legal-entities/ler_test$suffix" --force
  timed "$DOCCLASS" eval --model models/area-of-law datasets/ler_court_cls/test.tsv \
    --precision "$precision" --report "eval/area-of-law/ler_court_cls-test$suffix" --force
done
"$DOCCLASS" eval --compare eval/legal-entities/ler_test eval/legal-entities/ler_test-int8 \
  --report eval/legal-entities/f32-vs-int8 --force
"$DOCCLASS" eval --compare eval/area-of-law/ler_court_cls-test eval/area-of-law/ler_court_cls-test-int8 \
  --report eval/area-of-law/f32-vs-int8 --force

# GermEval 2018 has no test file here: scripts/setup.sh holds every fifth line out for
# testing; the rest trains (settings chosen by cross-validation on it).
SPLIT=.cache/germeval2018
[ -f "$SPLIT/test.tsv" ] || { echo "train_default: run scripts/setup.sh first ($SPLIT)" >&2; exit 1; }
timed "$DOCCLASS" train "$SPLIT/train.tsv" --no-header --text-column 1 --label-column 2 \
  --out .cache/heads/germeval2018-coarse --force
timed "$DOCCLASS" eval --model .cache/heads/germeval2018-coarse "$SPLIT/test.tsv" --no-header \
  --text-column 1 --label-column 2 --precision f32 --report eval/germeval2018/coarse-heldout --force
cp .cache/heads/germeval2018-coarse/train-log.jsonl .cache/heads/germeval2018-coarse/head.json eval/germeval2018/coarse-heldout/
echo "train_default: done; scripts/reference_check.sh recomputes the numbers with scikit-learn and seqeval" >&2

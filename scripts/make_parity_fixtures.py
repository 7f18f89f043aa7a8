#!/usr/bin/env python3
"""Tiny random checkpoints and their transformers outputs, for docclass's parity tests.

For each architecture (bert, xlm-roberta, distilbert) and head (none, sequence
classification, token classification) this writes a Hugging Face directory under
tests/fixtures/parity/NAME/ (config.json, model.safetensors, tokenizer.json) and
expected.json: the token ids of a few German texts and what transformers computes for
them in ONE padded batch (so attention masks are exercised): last hidden states,
sequence logits or token logits. The Rust tests check docclass against these to 1e-4,
so CI never needs PyTorch.

With `--e5 DIR` it also writes tests/fixtures/e5-embeddings.json: transformers' mean-pooled
embeddings of a few German texts (with e5's "query: " prefix) from the real encoder that
scripts/setup.sh converted, which a Rust test compares with docclass's when the encoder
is fetched.

The tokenizers' trainers may order equally frequent pieces differently from run to run,
so a rerun can change token ids: the script always rewrites every fixture together.

Run once with a Python that has torch, transformers and tokenizers, e.g.:
    python3 -m venv .cache/venv && .cache/venv/bin/pip install torch transformers
    .cache/venv/bin/python scripts/make_parity_fixtures.py --e5 models/multilingual-e5-small
"""
import argparse
import json
import os
import shutil

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (BertConfig, BertForSequenceClassification, BertForTokenClassification, BertModel,
                          DistilBertConfig, DistilBertForSequenceClassification, DistilBertForTokenClassification,
                          DistilBertModel, PreTrainedTokenizerFast, XLMRobertaConfig,
                          XLMRobertaForSequenceClassification, XLMRobertaForTokenClassification, XLMRobertaModel)

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "parity")

# Hand-written German sentences: the tokenizers' training text (no dataset involved).
TRAINING_TEXT = [
    "Der Kläger begehrt die Aufhebung des Bescheids vom 3. März 2021.",
    "Die Beklagte wendet sich gegen das Urteil des Landgerichts Köln.",
    "Gemäß § 3 Abs. 1 AsylG ist ein Ausländer Flüchtling, wenn er verfolgt wird.",
    "Das Bundesverwaltungsgericht hat die Revision zurückgewiesen.",
    "Frau Müller wohnt in der Hauptstraße 5 in München.",
    "Die Straße führt über die Brücke nach Düsseldorf.",
    "Herr Schmidt ist Richter am Bundesgerichtshof in Karlsruhe.",
    "Der Antrag auf Zulassung der Berufung wird abgelehnt.",
    "Die Kosten des Verfahrens trägt die Klägerin.",
    "Ein Anspruch auf Schadensersatz besteht nicht.",
    "Die Verfassungsbeschwerde ist unzulässig.",
    "Das Finanzamt setzte die Einkommensteuer fest.",
]
TEXTS = [
    "Der Kläger wohnt in Köln.",
    "Gemäß § 3 AsylG ist die Klage der Frau Müller aus München unbegründet.",
    "Straße",
    "Das Bundesverwaltungsgericht in Leipzig hat die Revision des Beklagten gegen das Urteil zurückgewiesen.",
]
SEQ_LABELS = ["abgelehnt", "stattgegeben", "sonstiges"]
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SIZE = dict(hidden=32, layers=2, heads=4, ffn=64, positions=64)


def wordpiece_tokenizer():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok, "[PAD]"


def unigram_tokenizer():
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                      unk_token="<unk>")
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return tok, "<pad>"


def config_for(arch, vocab, pad_id, labels, problem_type=None):
    s = SIZE
    common = dict(vocab_size=vocab, pad_token_id=pad_id, initializer_range=0.3)
    if labels:
        common.update(id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    if problem_type:
        common["problem_type"] = problem_type
    if arch == "bert":
        return BertConfig(hidden_size=s["hidden"], num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                          intermediate_size=s["ffn"], max_position_embeddings=s["positions"], **common)
    if arch == "xlm-roberta":
        return XLMRobertaConfig(hidden_size=s["hidden"], num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                                intermediate_size=s["ffn"], max_position_embeddings=s["positions"] + pad_id + 1,
                                type_vocab_size=1, bos_token_id=0, eos_token_id=2, **common)
    return DistilBertConfig(dim=s["hidden"], n_layers=s["layers"], n_heads=s["heads"], hidden_dim=s["ffn"],
                            max_position_embeddings=s["positions"], **common)


CLASSES = {
    "bert": (BertModel, BertForSequenceClassification, BertForTokenClassification),
    "xlm-roberta": (XLMRobertaModel, XLMRobertaForSequenceClassification, XLMRobertaForTokenClassification),
    "distilbert": (DistilBertModel, DistilBertForSequenceClassification, DistilBertForTokenClassification),
}


def randomize(model):
    """Random values everywhere, LayerNorms near 1/0, so that no tensor is trivial."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))


def e5_embeddings(model_dir):
    """Mean-pooled last hidden states of the real encoder, batched with padding."""
    model = BertModel.from_pretrained(model_dir).eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"), pad_token="<pad>")
    texts = ["query: " + t for t in TEXTS]
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    out = os.path.join(OUT, "..", "e5-embeddings.json")
    with open(out, "w") as f:
        json.dump({"texts": TEXTS, "prefix": "query: ", "embeddings": pooled.tolist(),
                   "transformers": transformers.__version__}, f)
    print("wrote", out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--e5", help="the converted multilingual-e5-small directory")
    args = parser.parse_args()
    torch.manual_seed(0)
    shutil.rmtree(OUT, ignore_errors=True)
    for arch, (base_cls, seq_cls, tok_cls) in CLASSES.items():
        tok, pad = unigram_tokenizer() if arch == "xlm-roberta" else wordpiece_tokenizer()
        pad_id = tok.token_to_id(pad)
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad)
        variants = [("base", base_cls, None, None), ("seqcls", seq_cls, SEQ_LABELS, None),
                    ("tokcls", tok_cls, TAGS, None)]
        if arch == "xlm-roberta":
            variants.append(("multilabel", seq_cls, SEQ_LABELS, "multi_label_classification"))
        for variant, cls, labels, problem_type in variants:
            name = f"{arch}-{variant}"
            out = os.path.join(OUT, name)
            os.makedirs(out)
            model = cls(config_for(arch, tok.get_vocab_size(), pad_id, labels, problem_type)).eval()
            randomize(model)
            model.save_pretrained(out, safe_serialization=True)
            tok.save(os.path.join(out, "tokenizer.json"))
            enc = fast(TEXTS, padding=True, return_tensors="pt")
            with torch.no_grad():
                result = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            lens = enc["attention_mask"].sum(1).tolist()
            expected = {"texts": TEXTS, "ids": [enc["input_ids"][i, :n].tolist() for i, n in enumerate(lens)],
                        "transformers": transformers.__version__, "torch": torch.__version__}
            if variant == "base":
                expected["last_hidden_state"] = [result.last_hidden_state[i, :n].tolist() for i, n in enumerate(lens)]
            elif variant == "tokcls":
                expected["token_logits"] = [result.logits[i, :n].tolist() for i, n in enumerate(lens)]
            else:
                expected["logits"] = result.logits.tolist()
            with open(os.path.join(out, "expected.json"), "w") as f:
                json.dump(expected, f)
            print(name, os.path.getsize(os.path.join(out, "model.safetensors")), "bytes of weights")
    if args.e5:
        e5_embeddings(args.e5)


if __name__ == "__main__":
    main()

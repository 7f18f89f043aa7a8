//! The compact Unigram model against `tokenizers`' own: the same ids, offsets and words
//! for every text of every shared dataset and for adversarial strings.

mod common;

use std::path::Path;

use common::*;
use docclass::text::tokenizer;

/// Strings that have broken tokenizers: nothing, whitespace runs, combining marks,
/// emoji and their joiners, scripts the vocabulary hardly knows, controls, long runs.
fn adversarial() -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        " ",
        "   \t\n  ",
        "a",
        "Ä",
        "A\u{308}rger mit der Stra\u{308}ße",
        "e\u{301}\u{302}\u{303}\u{304}",
        "👩‍👩‍👧‍👦 Familie 🇩🇪 und 👍🏽",
        "ꦲꦏ꧀ꦱꦫꦗꦮ ᚠᚢᚦᚨᚱᚲ 𓀀𓀁 𐌰𐌱",
        "中华人民共和国 東京 서울 Москва القاهرة",
        "\u{0}\u{1}\u{7f}\u{200b}\u{feff}\u{2028}",
        "<s> </s> <unk> <mask> <pad>",
        "§§ 1–3 AsylG i.V.m. Art. 16a GG; Az.: 2 BvR 1516/93",
        "www.bamf.de/DE/Themen?x=1&y=2 — mail@example.org",
        "\u{fffd}\u{fffd}Ã¤Ã¶Ã¼ÃŸ (mojibake)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.push("x".repeat(100_000));
    texts.push("Verwaltungsgerichtsbarkeit ".repeat(40_000));
    texts.push("🙂".repeat(50_000));
    texts
}

/// `with_special`: also with the special tokens added (the crate's post-processor runs
/// in both, so a few texts tell).
fn assert_same(
    reference: &tokenizers::Tokenizer,
    compact: &tokenizer::Tokenizer,
    texts: &[String],
    with_special: bool,
    what: &str,
) {
    let specials: &[bool] = if with_special { &[false, true] } else { &[false] };
    for (n, text) in texts.iter().enumerate() {
        for &special in specials {
            let a = reference.encode_char_offsets(text.as_str(), special).unwrap();
            let b = compact.encode_char_offsets(text.as_str(), special).unwrap();
            let shown: String = text.chars().take(80).collect();
            assert_eq!(a.get_ids(), b.get_ids(), "{what} text {n}: {shown:?}");
            assert_eq!(a.get_offsets(), b.get_offsets(), "{what} text {n}: {shown:?}");
            assert_eq!(a.get_word_ids(), b.get_word_ids(), "{what} text {n}: {shown:?}");
        }
    }
}

fn both(path: &Path) -> (tokenizers::Tokenizer, tokenizer::Tokenizer) {
    (tokenizers::Tokenizer::from_file(path).unwrap(), tokenizer::load(path).unwrap())
}

#[test]
fn the_fixture_unigram_tokenizes_as_the_crate_does() {
    let (reference, compact) = both(&fixture("xlm-roberta-base").join("tokenizer.json"));
    assert!(matches!(compact.get_model(), tokenizer::TokenModel::Unigram(_)));
    assert_eq!(reference.get_vocab_size(true), compact.get_vocab_size(true));
    assert_eq!(reference.get_vocab(true), compact.get_vocab(true));
    let mut texts = adversarial();
    texts.extend(
        [
            "Der Kläger wohnt in Köln und klagt vor dem Bundesarbeitsgericht.",
            "Gemäß § 3 Abs. 1 AsylG wird die Flüchtlingseigenschaft zuerkannt.",
            "Frau Müller-Lüdenscheidt beantragt Akteneinsicht beim BAMF in Nürnberg.",
            "Die Revision gegen das Urteil des LSG Baden-Württemberg vom 12.03.2019 wird zurückgewiesen.",
        ]
        .map(String::from),
    );
    assert_same(&reference, &compact, &texts, true, "fixture");
    // WordPiece stays the crate's own.
    let (_, wordpiece) = both(&fixture("bert-base").join("tokenizer.json"));
    assert!(matches!(wordpiece.get_model(), tokenizer::TokenModel::Crate(_)));
}

/// Every line (every CoNLL sentence) of every shared dataset through e5's tokenizer.
#[test]
#[ignore = "needs the real encoder or datasets: run scripts/setup.sh"]
fn the_e5_unigram_tokenizes_every_shared_text_as_the_crate_does() {
    let (reference, compact) = both(&real_model().join("tokenizer.json"));
    assert_same(&reference, &compact, &adversarial(), true, "adversarial");
    let files = [
        "ler/ler_train_rebuilt.conll",
        "ler/ler_dev.conll",
        "ler/ler_test.conll",
        "ler_court_cls/train.tsv",
        "ler_court_cls/dev.tsv",
        "ler_court_cls/test.tsv",
        "germeval2018/germeval2018.training.txt",
        "germeval2019_blurbs/blurbs.tsv",
    ];
    let mut total = 0;
    for file in files {
        let content = std::fs::read_to_string(dataset(file)).unwrap();
        let texts: Vec<String> = if file.ends_with(".conll") {
            content
                .split("\n\n")
                .map(|s| s.lines().filter_map(|l| l.split_whitespace().next()).collect::<Vec<_>>().join(" "))
                .collect()
        } else {
            content.lines().map(str::to_string).collect()
        };
        total += texts.len();
        assert_same(&reference, &compact, &texts, false, file);
    }
    assert!(total > 65_000, "{total} texts");
}

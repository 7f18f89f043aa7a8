//! The model card `train` writes beside a classifier head that has none.

use super::selection::{Evaluated, Scored, Setting};
use crate::model::head_file::{DocumentPooling, HeadSpec};

pub(super) fn model_card(
    spec: &HeadSpec,
    dense: &Evaluated,
    lexical: Option<&Evaluated>,
    combined: &Scored,
    dev_source: &str,
) -> String {
    let training = &spec.training;
    let cv = &training["cross_validation"];
    let score = cv["score"].as_str().unwrap_or("score");
    let row = |name: &str, scored: Option<&Scored>, setting: String| match scored {
        Some(s) => format!(
            "| {name} | {:.4} | {} | {:.4} | {setting} |\n",
            s.mean,
            s.fold_scores.iter().map(|f| format!("{f:.4}")).collect::<Vec<_>>().join(" / "),
            s.log_loss
        ),
        None => format!("| {name} | – | – | – | lexical features switched off |\n"),
    };
    let setting = |e: &Evaluated| {
        let weighting = if e.blend.balanced { ", labels weighted alike" } else { "" };
        match e.setting {
            Setting::Lexical { c } => format!("C = {c}{weighting}"),
            Setting::Dense { pooling: DocumentPooling::Mean, c } => format!("mean of the windows, C = {c}{weighting}"),
            Setting::Dense { pooling: DocumentPooling::MeanMax, c } => {
                format!("mean and maximum of the windows, C = {c}{weighting}")
            }
        }
    };
    let mut card = format!(
        "# {name}\n\nA document classifier trained by `docclass train` (written by it; replace this file with your \
         own card and retraining keeps yours).\n\n- **Labels** ({n}): {labels}\n- **Data**: `{train}` ({examples} \
         documents); development data: {dev_source}\n- **Encoder layers** {layers:?}, fingerprint `{fingerprint}…`\n\
         - **Command**: `{command}`\n\n## What each half adds\n\n{folds}-fold cross-validation on the training data \
         (blocked: each label's documents in file order cut into contiguous blocks), {score} by fold, on the same folds \
         for each model. The head `classify` runs is the combination, fitted for the lowest log loss on the \
         out-of-fold logits.\n\n| model | mean {score} | folds | log loss | chosen \
         setting |\n| --- | --- | --- | --- | --- |\n",
        name = spec.name,
        n = spec.labels.len(),
        labels = spec.labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", "),
        train = training["train"]["path"].as_str().unwrap_or("?"),
        examples = training["train_examples"],
        layers = spec.layers,
        fingerprint = &spec.encoder_fingerprint[..12.min(spec.encoder_fingerprint.len())],
        command = training["command"].as_str().unwrap_or("?"),
        folds = cv["folds"],
    );
    card += &row(
        "lexical only (word and character n-gram TF-IDF)",
        lexical.map(|e| &e.scored),
        lexical.map_or(String::new(), setting),
    );
    card += &row("dense only (encoder features)", Some(&dense.scored), setting(dense));
    let weights = &cv["stack"]["weights"];
    card += &row(
        "combined",
        Some(combined),
        format!("dense weight {}, lexical weight {}", weights["dense"], weights["lexical"]),
    );
    if let Some(dev) = training.get("dev_score") {
        card += &format!(
            "\nOn the development data the head scores {} {}.\n",
            dev["name"].as_str().unwrap_or(score),
            dev["value"]
        );
    }
    card
}

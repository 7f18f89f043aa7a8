//! `docclass model import` and `docclass model check`.

use anyhow::{bail, Context, Result};

use super::Outcome;
use crate::cli::ModelCommand;
use crate::infer::{Pipeline, PipelineOptions};
use crate::model::ModelBundle;

pub fn run(command: ModelCommand) -> Result<Outcome> {
    match command {
        ModelCommand::Import { e5_q4, tokenizer, notice, out, force } => {
            if out.join("model.safetensors").exists() && !force {
                bail!("{}: a model is already there (use --force to replace it)", out.display());
            }
            let report = crate::model::import_e5::import(&e5_q4, &tokenizer, notice.as_deref(), &out)?;
            let h = report.header;
            eprintln!(
                "imported {} tensors into {}: hidden {}, {} layers, {} heads, vocabulary {}",
                report.tensors,
                report.out_dir.display(),
                h.hidden,
                h.layers,
                h.heads,
                h.vocab
            );
            Ok(Outcome::Complete)
        }
        ModelCommand::Check { dir } => {
            let bundle = ModelBundle::load(&dir).with_context(|| format!("loading model {}", dir.display()))?;
            let config = bundle.encoder_config().clone();
            let prefix = bundle.settings.input_prefix.clone();
            let pipeline = Pipeline::new(bundle, None)?;
            let heads: Vec<String> = pipeline.heads.iter().map(|h| h.describe()).collect();
            let options = PipelineOptions::first_window_only(std::num::NonZeroUsize::new(512).expect("not 0"));
            let (embeddings, tokens) =
                pipeline.embed_texts(&["Das Verwaltungsgericht weist die Klage ab."], &options)?;
            let embedding = &embeddings[0];
            if embedding.iter().any(|x| !x.is_finite()) {
                bail!("{}: the encoder produced non-finite values", dir.display());
            }
            println!(
                "{}: {} encoder, hidden {}, {} layers, {} heads, max {} tokens, input prefix {:?}; task heads: {}; test sentence: {tokens} tokens, embedding norm {:.4}",
                dir.display(),
                config.arch.name(),
                config.hidden,
                config.layers,
                config.heads,
                config.max_sequence_len(),
                prefix,
                if heads.is_empty() { "none".to_string() } else { heads.join(", ") },
                embedding.iter().map(|x| x * x).sum::<f32>().sqrt()
            );
            Ok(Outcome::Complete)
        }
    }
}

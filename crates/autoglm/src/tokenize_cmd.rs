//! `autoglm tokenize`: a text's token ids and pieces, from any GGUF's tokenizer (a
//! vocab-only file, with no weights, is enough), as llama.cpp's `llama-tokenize` prints them.

use anyhow::{Context, Result};
use gguf::GgufFile;
use std::path::PathBuf;
use tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF whose tokenizer to use (default: the default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The text to tokenize.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    text: Option<String>,
    /// A file whose contents to tokenize.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Print a JSON array of {"id", "piece"} instead of one `id -> 'piece'` per line.
    #[arg(long)]
    json: bool,
    /// Do not add the BOS token the vocabulary asks for.
    #[arg(long)]
    no_bos: bool,
    /// Read special-token text (`<|im_start|>`) as plain text.
    #[arg(long)]
    no_parse_special: bool,
}

pub fn run(a: Args) -> Result<()> {
    let path = crate::load::model_path(a.model)?;
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let tok = Tokenizer::from_gguf(&file)?;
    let text = match (a.text, a.file) {
        (Some(t), _) => t,
        (None, Some(f)) => {
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => unreachable!("clap requires --text or --file"),
    };
    let ids = tok.encode(&text, !a.no_bos, !a.no_parse_special)?;
    let piece = |id: u32| {
        tok.token_bytes(id)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    if a.json {
        let rows: Vec<serde_json::Value> = ids
            .iter()
            .map(|&id| serde_json::json!({"id": id, "piece": piece(id)}))
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        for id in ids {
            println!("{id:6} -> '{}'", piece(id));
        }
    }
    Ok(())
}

use crate::load::load;
use anyhow::{bail, Context, Result};
use model::generate::{FinishReason, GenerateOptions};
use model::{Sampler, SamplingParams};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use tokenizer::{ChatMessage, ChatTemplate, Detokenizer};

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file (default: the pulled default model, fetched on first use).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Raw prompt text (no chat template; no BOS unless the model asks for one).
    #[arg(
        long,
        conflicts_with = "messages",
        required_unless_present = "messages"
    )]
    prompt: Option<String>,
    /// JSON file with an OpenAI-style messages array; the chat template is applied.
    #[arg(long)]
    messages: Option<PathBuf>,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    #[arg(long)]
    seed: Option<u64>,
    /// Report the K most likely tokens at each step.
    #[arg(long, default_value_t = 0)]
    top_logprobs: usize,
    /// Keep generating past end-of-generation tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    arith: crate::load::Arithmetic,
}

/// Text of an OpenAI message `content`: a string, or an array of parts whose text parts
/// are joined.
pub fn content_text(content: &Value) -> Result<String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match p.get("type").and_then(|t| t.as_str()) {
                    Some("text") => out.push_str(
                        p.get("text")
                            .and_then(|t| t.as_str())
                            .context("text part without text")?,
                    ),
                    Some(other) => bail!(
                        "content part of type {other:?} is not supported by a text-only model"
                    ),
                    None => bail!("content part without a type"),
                }
            }
            Ok(out)
        }
        _ => bail!("message content must be a string or an array of parts"),
    }
}

fn read_messages(path: &PathBuf) -> Result<Vec<ChatMessage>> {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    let arr = v
        .get("messages")
        .unwrap_or(&v)
        .as_array()
        .context("expected a JSON array of messages")?;
    arr.iter()
        .map(|m| {
            let role = m
                .get("role")
                .and_then(|r| r.as_str())
                .context("message without a role")?;
            Ok(ChatMessage::new(
                role,
                &content_text(m.get("content").unwrap_or(&Value::Null))?,
            ))
        })
        .collect()
}

pub fn run(a: Args) -> Result<()> {
    let l = load(a.model, a.threads, a.arith)?;
    let tok = &l.tokenizer;
    let prompt_ids = match (&a.prompt, &a.messages) {
        (Some(p), _) => tok.encode(p, true, true)?,
        (None, Some(file)) => {
            let msgs = read_messages(file)?;
            let tmpl_src = tok
                .chat_template()
                .context("this model has no chat template")?;
            let tmpl = ChatTemplate::new(tmpl_src, tok.bos_text(), tok.eos_text())?;
            tok.encode(&tmpl.render(&msgs, true)?, true, true)?
        }
        (None, None) => bail!("give --prompt or --messages"),
    };
    let ctx = l.model.config.context_length;
    if prompt_ids.len() + a.max_tokens > ctx {
        bail!(
            "prompt ({} tokens) + max_tokens ({}) exceeds the context length {ctx}",
            prompt_ids.len(),
            a.max_tokens
        );
    }
    let mut sampler = Sampler::new(
        SamplingParams {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repetition_penalty: a.repeat_penalty,
            frequency_penalty: a.frequency_penalty,
            presence_penalty: a.presence_penalty,
            seed: a.seed,
            logit_bias: Vec::new(),
        },
        &prompt_ids,
    );
    let stops: Vec<u32> = if a.ignore_eos {
        Vec::new()
    } else {
        tok.eog_tokens().to_vec()
    };
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        top_logprobs: a.top_logprobs,
        stop_tokens: &stops,
        prefill_chunk: 512,
    };
    let mut detok = Detokenizer::new();
    let mut text = String::new();
    let stdout = std::io::stdout();
    let stream = !a.json;
    let mut failed = None;
    let gen =
        l.model.generate(
            &prompt_ids,
            &mut sampler,
            &opts,
            &mut |t| match detok.push(tok, t.token) {
                Ok(piece) => {
                    if stream {
                        let mut o = stdout.lock();
                        let _ = o.write_all(piece.as_bytes());
                        let _ = o.flush();
                    }
                    text.push_str(&piece);
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            },
        )?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let tail = detok.finish();
    text.push_str(&tail);
    let finish = match gen.finish {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    };
    if a.json {
        let mut out = json!({
            "prompt_token_ids": prompt_ids,
            "token_ids": gen.tokens.iter().map(|t| t.token).collect::<Vec<_>>(),
            "text": text,
            "finish_reason": finish,
        });
        if a.top_logprobs > 0 {
            out["logprobs"] = json!(gen.tokens.iter().map(|t| t.logprob).collect::<Vec<_>>());
            out["top_logprobs"] = json!(gen
                .tokens
                .iter()
                .map(|t| t
                    .top
                    .iter()
                    .map(|&(i, lp)| json!([i, lp]))
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>());
        }
        println!("{out}");
    } else {
        println!("{tail}");
    }
    Ok(())
}

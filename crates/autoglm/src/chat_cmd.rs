//! `autoglm chat`: try a server by hand — one-shot with `--prompt`, or a conversation
//! read line by line from stdin — streaming the answer to the terminal through the Rust
//! client with its default retry policy.

use anyhow::{Context, Result};
use autoglm_client::Client;
use futures::StreamExt;
use std::io::{BufRead, Write};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8000/v1")]
    base_url: String,
    #[arg(long)]
    api_key: Option<String>,
    /// Model to name (default: none; single-model servers accept that).
    #[arg(long)]
    model: Option<String>,
    /// Ask once and exit; without it, each stdin line is a turn of one conversation.
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
}

pub fn run(a: Args) -> Result<()> {
    let mut b = Client::builder(a.base_url.clone());
    if let Some(k) = &a.api_key {
        b = b.api_key(k.clone());
    }
    let client = b.build().context("building the client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut messages: Vec<serde_json::Value> = Vec::new();
    if let Some(s) = &a.system {
        messages.push(serde_json::json!({"role": "system", "content": s}));
    }
    let turn = |line: String, messages: &mut Vec<serde_json::Value>| -> Result<()> {
        messages.push(serde_json::json!({"role": "user", "content": line}));
        let mut body = serde_json::json!({
            "messages": messages,
            "max_tokens": a.max_tokens,
            "temperature": a.temperature,
        });
        if let Some(m) = &a.model {
            body["model"] = serde_json::json!(m);
        }
        let req = api::ChatRequest::from_json(&body).map_err(|e| anyhow::anyhow!(e.message))?;
        let answer = rt.block_on(async {
            let mut st = client.chat_stream(&req).await?;
            let mut text = String::new();
            let out = std::io::stdout();
            while let Some(chunk) = st.next().await {
                let chunk = chunk?;
                if let Some(t) = chunk.choices.first().and_then(|c| c.delta.content.clone()) {
                    let mut o = out.lock();
                    let _ = o.write_all(t.as_bytes());
                    let _ = o.flush();
                    text.push_str(&t);
                }
            }
            println!();
            Ok::<_, autoglm_client::Error>(text)
        })?;
        messages.push(serde_json::json!({"role": "assistant", "content": answer}));
        Ok(())
    };
    if let Some(p) = a.prompt.clone() {
        return turn(p, &mut messages);
    }
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        turn(line, &mut messages)?;
    }
    Ok(())
}

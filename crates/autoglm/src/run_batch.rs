//! `autoglm run-batch -i in.jsonl -o out.jsonl`: the OpenAI batch file format without a
//! server. The file goes through the same store, validation and runner as
//! `POST /v1/batches` (in a scratch store), its lines through the same chat and
//! completions handlers, so the output lines are what the server would write.

use crate::serve::load_into;
use anyhow::{bail, Context, Result};
use batch::{BatchStatus, Endpoint, FilePurpose, NewBatch};
use engine::EngineConfig;
use server::{AppState, ServerConfig};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Input: one request per line ({"custom_id", "method": "POST", "url", "body"}).
    #[arg(short = 'i', long)]
    input: PathBuf,
    /// Output: one result per line, in OpenAI's batch output format.
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// Where lines that failed go (default: the output file too, after the others).
    #[arg(long)]
    error_output: Option<PathBuf>,
    /// GGUF model file (default: the pulled default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The model name the lines' `model` must give (default: the file's name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Compute threads (default: all cores, or AUTOGLM_THREADS).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    arith: crate::load::Arithmetic,
    /// Lines in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Tokens of KV cache.
    #[arg(long, default_value_t = EngineConfig::default().kv_cache_tokens)]
    kv_cache_tokens: usize,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// The endpoint the file's requests name: the first known `url` (validation then checks
/// that every line agrees; a file naming none is validated as chat and refused line by
/// line).
fn endpoint_of(bytes: &[u8]) -> Endpoint {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["url"].as_str().and_then(Endpoint::parse))
        .unwrap_or(Endpoint::Chat)
}

pub fn run(a: Args) -> Result<()> {
    let input =
        std::fs::read(&a.input).with_context(|| format!("reading {}", a.input.display()))?;
    let endpoint = endpoint_of(&input);
    let model_id = a
        .served_model_name
        .clone()
        .unwrap_or_else(|| match &a.model {
            Some(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
            None => model::paths::DEFAULT_MODEL_FILE
                .trim_end_matches(".gguf")
                .to_string(),
        });
    let scratch = std::env::temp_dir().join(format!("autoglm-run-batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let store = Arc::new(batch::Store::open(&scratch)?);
    let limits = batch::Limits {
        model_id: model_id.clone(),
        ..batch::Limits::default()
    };
    // Refused before the model is loaded: a bad file costs nothing.
    if let Err(errors) = batch::validate(&input, endpoint, &limits) {
        for e in &errors {
            eprintln!(
                "line {}: {} ({}){}",
                e.line.map_or("-".to_string(), |l| l.to_string()),
                e.message,
                e.code,
                e.param
                    .as_ref()
                    .map(|p| format!(" [{p}]"))
                    .unwrap_or_default()
            );
        }
        let _ = std::fs::remove_dir_all(&scratch);
        bail!(
            "{} problem(s) in {}; nothing was run",
            errors.len(),
            a.input.display()
        );
    }
    let file = store.add_file(FilePurpose::Batch, &a.input.to_string_lossy(), &input)?;
    let b = store.create_batch(NewBatch {
        endpoint,
        input_file_id: file.id,
        completion_window: "offline".into(),
        window_secs: u64::MAX / 4,
        metadata: None,
    })?;
    let state = AppState::new(
        ServerConfig {
            model_id,
            ..ServerConfig::default()
        },
        None,
    );
    let engine_cfg = EngineConfig {
        kv_cache_tokens: a.kv_cache_tokens,
        ..EngineConfig::default()
    };
    load_into(&state, a.model.clone(), a.threads, a.arith, engine_cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let total = {
        let lines = batch::validate(&input, endpoint, &limits).map(|v| v.lines.len());
        lines.unwrap_or(0) as u64
    };
    let finished = rt.block_on(async {
        let runner = batch::Runner::new(
            store.clone(),
            Arc::new(server::batch_lines::ServerLines(state.clone())),
            batch::RunnerConfig {
                concurrency: a.concurrency.max(1),
                limits,
                retention: None,
            },
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(runner.run(stop_rx));
        let bar = if a.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(total)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} lines ({per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let b = loop {
            let cur = store.batch(&b.id)?;
            let c = cur.request_counts;
            bar.set_position(c.completed + c.failed);
            if c.failed > 0 {
                bar.set_message(format!("{} failed", c.failed));
            }
            if cur.status.is_terminal() {
                break cur;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        bar.finish();
        let _ = stop_tx.send(true);
        let _ = task.await;
        anyhow::Ok(b)
    })?;
    state.begin_shutdown();
    if finished.status != BatchStatus::Completed {
        bail!(
            "the batch ended {:?}: {:?}",
            finished.status,
            finished.errors
        );
    }
    let copy = |id: &Option<String>, to: &mut std::fs::File| -> Result<()> {
        if let Some(id) = id {
            to.write_all(&std::fs::read(store.file_path(id)?)?)?;
        }
        Ok(())
    };
    let mut out = std::fs::File::create(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    copy(&finished.output_file_id, &mut out)?;
    match &a.error_output {
        Some(p) => {
            let mut e =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            copy(&finished.error_file_id, &mut e)?;
        }
        None => copy(&finished.error_file_id, &mut out)?,
    }
    let c = finished.request_counts;
    eprintln!(
        "{} completed, {} failed of {}: {}",
        c.completed,
        c.failed,
        c.total,
        a.output.display()
    );
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

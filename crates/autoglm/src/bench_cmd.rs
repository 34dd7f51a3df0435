use anyhow::{bail, Context, Result};
use bench::{BenchConfig, Endpoint, LoadShape, Slo, WorkloadKind};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1. Only this is contacted.
    #[arg(long)]
    base_url: String,
    #[arg(long)]
    api_key: Option<String>,
    /// Model name to send (default: none; servers with one model accept that).
    #[arg(long)]
    model: Option<String>,
    /// chat or completions.
    #[arg(long, default_value = "chat")]
    endpoint: String,
    /// Non-streaming requests (TTFT then equals E2E).
    #[arg(long)]
    no_stream: bool,
    /// Closed loop: comma-separated concurrency steps (a stepped sweep).
    #[arg(long, value_delimiter = ',', conflicts_with = "request_rate")]
    concurrency: Vec<usize>,
    /// Open loop: comma-separated request rates (req/s), one step each.
    #[arg(long, value_delimiter = ',')]
    request_rate: Vec<f64>,
    /// Gamma shape of inter-arrival times: 1 is Poisson, below 1 burstier.
    #[arg(long, default_value_t = 1.0)]
    burstiness: f64,
    /// Open loop: at most this many requests in flight.
    #[arg(long)]
    max_inflight: Option<usize>,
    /// Requests measured per step.
    #[arg(long)]
    requests: Option<usize>,
    /// Seconds per step (with --requests, whichever ends first).
    #[arg(long)]
    duration: Option<f64>,
    /// Unmeasured requests before each step.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// random, shared-prefix, repeated, agent or file.
    #[arg(long, default_value = "random")]
    workload: String,
    /// Prompt words (about one token each) for random prompts, questions, agent screens.
    #[arg(long, default_value_t = 128)]
    input_len: usize,
    /// max_tokens of each request.
    #[arg(long, default_value_t = 128)]
    output_len: usize,
    /// shared-prefix: number of distinct system prompts.
    #[arg(long, default_value_t = 4)]
    prefix_count: usize,
    /// shared-prefix: words per system prompt.
    #[arg(long, default_value_t = 512)]
    prefix_len: usize,
    /// repeated: fraction of requests that repeat an earlier one exactly.
    #[arg(long, default_value_t = 0.5)]
    repeat_fraction: f64,
    /// agent: turns per session.
    #[arg(long, default_value_t = 8)]
    turns: usize,
    /// file: JSONL of {"prompt": ...} or {"messages": [...]}, optional "max_tokens".
    #[arg(long)]
    file: Option<PathBuf>,
    /// Do not send ignore_eos (outputs may end early; lengths then come from usage).
    #[arg(long)]
    no_ignore_eos: bool,
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Goodput objectives, e.g. ttft:500,tpot:50,e2el:5000 (milliseconds).
    #[arg(long)]
    slo: Option<String>,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
    /// Write results.json, results.md and charts here.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    save_baseline: Option<String>,
    #[arg(long)]
    compare: Option<String>,
    /// Exit with status 3 if any compared metric is worse than the baseline by more than PCT.
    #[arg(long)]
    fail_on_regression: Option<f64>,
    /// Mark regressions beyond this percent in the comparison (default 10).
    #[arg(long, default_value_t = 10.0)]
    regression_threshold: f64,
    /// Where baselines live (default: $AUTOGLM_HOME/baselines).
    #[arg(long)]
    baseline_dir: Option<PathBuf>,
    /// Print results.json to stdout instead of the table.
    #[arg(long)]
    json: bool,
    #[arg(long)]
    no_progress: bool,
}

pub fn run(a: Args) -> Result<()> {
    let endpoint = match a.endpoint.as_str() {
        "chat" => Endpoint::Chat,
        "completions" => Endpoint::Completions,
        other => bail!("--endpoint {other:?}: chat or completions"),
    };
    let workload = match a.workload.as_str() {
        "random" => WorkloadKind::Random,
        "shared-prefix" => WorkloadKind::SharedPrefix {
            prefix_count: a.prefix_count,
            prefix_len: a.prefix_len,
        },
        "repeated" => WorkloadKind::Repeated {
            fraction: a.repeat_fraction,
        },
        "agent" => WorkloadKind::Agent { turns: a.turns },
        "file" => WorkloadKind::File(a.file.clone().context("--workload file needs --file")?),
        other => bail!("--workload {other:?}: random, shared-prefix, repeated, agent or file"),
    };
    let steps: Vec<LoadShape> = if !a.request_rate.is_empty() {
        a.request_rate
            .iter()
            .map(|&rate| LoadShape::Open {
                rate,
                burstiness: a.burstiness,
            })
            .collect()
    } else if !a.concurrency.is_empty() {
        a.concurrency
            .iter()
            .map(|&c| LoadShape::Closed { concurrency: c })
            .collect()
    } else {
        vec![LoadShape::Closed { concurrency: 1 }]
    };
    let cfg = BenchConfig {
        base_url: a.base_url.clone(),
        api_key: a.api_key.clone(),
        model: a.model.clone(),
        endpoint,
        stream: !a.no_stream,
        ignore_eos: !a.no_ignore_eos,
        steps,
        requests: a
            .requests
            .or(if a.duration.is_none() { Some(32) } else { None }),
        duration: a.duration.map(Duration::from_secs_f64),
        warmup: a.warmup,
        max_inflight: a.max_inflight,
        workload,
        input_len: a.input_len,
        output_len: a.output_len,
        temperature: a.temperature,
        seed: a.seed,
        slo: a
            .slo
            .as_deref()
            .map(Slo::parse)
            .transpose()?
            .unwrap_or_default(),
        timeout: Duration::from_secs_f64(a.timeout),
        progress: !a.no_progress && !a.json,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = rt.block_on(bench::run(&cfg))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        bench::print_table(&results);
    }
    if let Some(dir) = &a.out {
        let files = bench::write_results(&results, dir)?;
        eprintln!("wrote {} to {}", files.join(", "), dir.display());
    }
    let bdir = a
        .baseline_dir
        .clone()
        .unwrap_or_else(|| crate::settings::env().home.join("baselines"));
    if let Some(name) = &a.save_baseline {
        let p = bench::save_baseline(&bdir, name, &results)?;
        eprintln!("saved baseline {name} to {}", p.display());
    }
    if let Some(name) = &a.compare {
        let base = bench::load_baseline(&bdir, name)?;
        let rows = bench::compare(&results, &base);
        if rows.is_empty() {
            bail!("baseline {name} has no step matching this run's steps");
        }
        let limit = a.fail_on_regression.unwrap_or(a.regression_threshold);
        let mut worst = f64::MIN;
        println!("comparison with baseline {name} (regression: worse by more than {limit}%):");
        for c in &rows {
            let flag = if c.worse_pct > limit {
                "REGRESSION"
            } else if c.worse_pct < -limit {
                "better"
            } else {
                ""
            };
            println!(
                "  {:>8} {:<13} baseline {:>10.2}  now {:>10.2}  ratio {:>6.3}  {flag}",
                c.step, c.metric, c.baseline, c.current, c.ratio
            );
            worst = worst.max(c.worse_pct);
        }
        if let Some(pct) = a.fail_on_regression {
            if worst > pct {
                eprintln!("regression beyond {pct}% against baseline {name}");
                std::process::exit(3);
            }
        }
    }
    Ok(())
}

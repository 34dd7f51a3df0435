//! autoglm: serve, generate, benchmark and pull GGUF models on CPUs.

mod bench_cmd;
mod chaos;
mod chat_cmd;
mod generate_cmd;
mod load;
mod mem;
mod perf;
mod perplexity;
mod pull;
mod run_batch;
mod serve;
mod settings;
mod synth;
mod tokenize_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "autoglm",
    version,
    about = "OpenAI-compatible LLM inference for GGUF models on CPUs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the OpenAI-compatible API (chat, completions, models, health, metrics).
    Serve(Box<serve::Args>),
    /// Fetch the default model (SmolLM2-135M-Instruct Q4_1) into the cache; prints its path.
    Pull,
    /// Generate text from a prompt or a chat.
    Generate(generate_cmd::Args),
    /// Measure prefill and batched decode throughput (like llama-bench / llama-batched-bench).
    Perf(perf::Args),
    /// Load-test any OpenAI-compatible server: TTFT, TPOT, ITL, E2E, throughput, goodput.
    Bench(Box<bench_cmd::Args>),
    /// Perplexity of a text file, computed the way llama-perplexity does.
    Perplexity(perplexity::Args),
    /// Write a random-weight GGUF of a real model's shape, for benchmarks.
    Synth(synth::Args),
    /// Chat with a server from the terminal (streamed, through the Rust client).
    Chat(chat_cmd::Args),
    /// A TCP proxy that injects faults (latency, resets, error statuses) for tests and demos.
    ChaosProxy(chaos::Args),
    /// Print a text's token ids and pieces (any GGUF, vocab-only ones included).
    Tokenize(tokenize_cmd::Args),
    /// Run an OpenAI batch input file (JSONL) without a server, writing the output file.
    RunBatch(run_batch::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    kernels::set_isa_cap(settings::env().isa_cap);
    match cli.cmd {
        Cmd::Pull => {
            let p = pull::pull_default()?;
            println!("{}", p.display());
            Ok(())
        }
        Cmd::Serve(a) => serve::run(*a),
        Cmd::Synth(a) => synth::run(a),
        Cmd::Generate(a) => generate_cmd::run(a),
        Cmd::Perf(a) => perf::run(a),
        Cmd::Perplexity(a) => perplexity::run(a),
        Cmd::Bench(a) => bench_cmd::run(*a),
        Cmd::ChaosProxy(a) => chaos::run(a),
        Cmd::Chat(a) => chat_cmd::run(a),
        Cmd::Tokenize(a) => tokenize_cmd::run(a),
        Cmd::RunBatch(a) => run_batch::run(a),
    }
}

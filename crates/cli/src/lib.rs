//! `sieve-cli`: the `sieve` command line. Parses arguments, resolves them into the library crates' typed
//! options, runs the command and prints; nothing here is needed to use Sieve as a library.
//!
//! Key design decision: this is the only crate that uses `anyhow`. Library errors keep their structure up
//! to here; [`main`] prints the whole chain (`error: ...` then `caused by: ...`) and maps failures to exit
//! codes: 0 success, 1 failure, 2 bad usage.

mod demo;
mod engine;
mod eval;
mod feed;
mod ingest;
mod models;
mod progress;
mod search;
mod serve;
mod tune;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sieve",
    version,
    about = "Two-stage semantic search: BM25 + dense recall, fusion, cross-encoder reranking"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest JSONL or CSV files (optionally gzip-compressed), or stdin, into an index.
    Ingest(ingest::IngestArgs),
    /// Search an index: BM25, dense, hybrid (fused) or hybrid + cross-encoder reranking.
    Search(search::SearchArgs),
    /// Delete documents by id.
    Delete(search::DeleteArgs),
    /// Show an index's size, settings and ingest checkpoints.
    Stats(IndexArg),
    /// Evaluate retrieval quality and latency on datasets with relevance judgments.
    Eval(eval::EvalArgs),
    /// The main job: index the product and news datasets and run example searches.
    Demo(demo::DemoArgs),
    /// Score documents against a query with a Qwen3-Reranker model; prints JSON.
    Rerank(models::RerankArgs),
    /// Embed texts with a Qwen3-Embedding or BERT-family model; prints JSON.
    Embed(models::EmbedArgs),
    /// Manage models: pull the defaults into the cache, list it, write random-weight test checkpoints.
    Models(models::ModelsArgs),
    /// Fit an index's fusion settings on labelled queries by k-fold cross-validation and store them in it.
    Tune(tune::TuneArgs),
    /// Completions of a half-typed query and the best-matching products (what `POST /v1/suggest` answers).
    Suggest(search::SuggestArgs),
    /// One page of a news feed for a topic or a reader's profile: fresh, each story once with its sources,
    /// sources diverse, the next page by cursor (what `POST /v1/feed` answers).
    Feed(feed::FeedArgs),
    /// Serve the HTTP API (search, rerank, embeddings, documents, tasks, metrics) over one or more indexes.
    Serve(serve::ServeArgs),
}

#[derive(Debug, Args)]
struct IndexArg {
    /// Index directory.
    #[arg(long, short = 'i')]
    index: PathBuf,
}

/// Log lines (graph rebuilds, device fallbacks) on stderr; `SIEVE_LOG` (or `RUST_LOG`) overrides the filter,
/// e.g. `RUST_LOG=sieve_server=debug,sieve_pipeline=debug` follows each request (its id) through the stages
/// and the model workers.
fn init_logging() {
    let from_env = tracing_subscriber::EnvFilter::try_from_env("SIEVE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"));
    let filter = from_env.unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,sieve_pipeline=info,sieve_vector=info,sieve_models=info,sieve_server=info",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// `sieve search … | head`: once the reader of stdout is gone, `println!` panics with "failed printing to
/// stdout: Broken pipe". Like `cat`, the command then ends quietly instead, with the status a shell reports for
/// a process ended by SIGPIPE (128 + 13). Every other panic goes to the default hook as before.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_stdout_broken_pipe(info.payload()) {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn is_stdout_broken_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    message.starts_with("failed printing to stdout") && message.contains("Broken pipe")
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    init_logging();
    quiet_on_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let result = match cli.command {
        Command::Ingest(args) => ingest::run(args),
        Command::Search(args) => search::run(args),
        Command::Delete(args) => search::delete(args),
        Command::Stats(args) => search::stats(&args.index),
        Command::Eval(args) => eval::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Rerank(args) => models::rerank(args),
        Command::Embed(args) => models::embed(args),
        Command::Models(args) => models::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Tune(args) => tune::run(args),
        Command::Suggest(args) => search::suggest(args),
        Command::Feed(args) => feed::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

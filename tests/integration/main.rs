//! Sieve's integration tests: the real `sieve` binary on real files in temporary directories.
//!
//! One binary, a module per area (tantivy's and meilisearch's habit): `browser` (the web UI in Chromium), `ingest` (bad input, idempotence,
//! upsert, delete, formats), `catalog` (browsing the product set), `durability` (SIGKILL during ingest), `demo` (the main job), `search` (the CLI's
//! search output), `models` (rerank, embed, model files), `eval` (the evaluation harness), `serve` (`sieve serve` beside other processes writing to its index), `tune` (fitting fusion settings).

mod browser;
mod catalog;
mod demo;
mod durability;
mod eval;
mod feed;
mod ingest;
mod models;
mod search;
mod serve;
mod tune;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `sieve` binary built for this test run.
pub fn sieve() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sieve"))
}

/// Runs `sieve ARGS` and returns its output.
pub fn run(args: &[&str]) -> Output {
    sieve().args(args).output().expect("sieve runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "sieve {args:?} failed: {}", stderr(&out));
    stdout(&out)
}

pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Writes `rows` (JSONL) to `dir/name` and ingests them into a new index `dir/idx`, which it returns.
#[track_caller]
pub fn ingested(dir: &Path, name: &str, rows: impl AsRef<[u8]>) -> PathBuf {
    let file = write(dir, name, rows);
    let index = dir.join("idx");
    ok(&["ingest", "--index", s(&index), s(&file), "--progress", "none"]);
    index
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Ids of `sieve search --json`.
pub fn search_ids(index: &Path, query: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["search", "--index", s(index), query, "--json", "-k", "50"];
    args.extend_from_slice(extra);
    let out: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    out["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_owned()).collect()
}

pub fn num_docs(index: &Path) -> u64 {
    sieve_text::TextIndex::open(index).unwrap().num_docs()
}

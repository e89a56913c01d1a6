//! Showing ingest progress: a bar on a terminal, plain log lines off one, or JSON events for scripts.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sieve_ingest::{Event, Progress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, log lines otherwise.
    Auto,
    Bar,
    Log,
    /// One JSON object per event on stderr.
    Json,
    None,
}

/// Renders [`Event`]s.
pub struct Reporter {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
    committed_docs: u64,
}

impl Reporter {
    pub fn new(mode: ProgressMode) -> Reporter {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Log,
            m => m,
        };
        Reporter { mode, bar: None, started: Instant::now(), last_log: Instant::now(), committed_docs: 0 }
    }

    fn rate(&self, docs: u64) -> f64 {
        docs as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Reporter {
    fn event(&mut self, event: Event<'_>) {
        match self.mode {
            ProgressMode::None | ProgressMode::Auto => {}
            ProgressMode::Json => {
                let line = match &event {
                    Event::Started { source, total_bytes, resume_after_line } => serde_json::json!({
                        "event": "started", "source": source, "total_bytes": total_bytes, "resume_after_line": resume_after_line
                    }),
                    Event::UpToDate { source, docs } => {
                        serde_json::json!({"event": "up_to_date", "source": source, "docs": docs})
                    }
                    Event::Read { .. } => return,
                    Event::Committed { source, docs, rejected, line, bytes_read, .. } => serde_json::json!({
                        "event": "committed", "source": source, "docs": docs, "rejected": rejected, "line": line, "bytes_read": bytes_read
                    }),
                };
                eprintln!("{line}");
            }
            ProgressMode::Log => match event {
                Event::Started { source, resume_after_line: Some(line), .. } => {
                    eprintln!("ingest: {source}: resuming after line {line} (earlier run was interrupted)")
                }
                Event::Started { source, .. } => eprintln!("ingest: {source}: started"),
                Event::UpToDate { source, docs } => {
                    eprintln!("ingest: {source}: already ingested ({docs} docs); nothing to do (--force re-ingests)")
                }
                Event::Read { .. } => {}
                Event::Committed { source, docs, rejected, line, bytes_read, total_bytes } => {
                    if self.last_log.elapsed() >= Duration::from_secs(2) || total_bytes.is_some_and(|t| bytes_read >= t)
                    {
                        self.last_log = Instant::now();
                        let pct = total_bytes
                            .map_or(String::new(), |t| format!(" {:.1}%", 100.0 * bytes_read as f64 / t.max(1) as f64));
                        eprintln!(
                            "ingest: {source}: committed {docs} docs, {rejected} rejected, through line {line}{pct} ({:.0} docs/s)",
                            self.rate(docs)
                        );
                    }
                }
            },
            ProgressMode::Bar => match event {
                Event::Started { source, total_bytes, .. } => {
                    let bar = match total_bytes {
                        Some(total) => ProgressBar::new(total).with_style(
                            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {percent:>3}% {msg} ETA {eta}")
                                .expect("valid template")
                                .progress_chars("=> "),
                        ),
                        None => ProgressBar::new_spinner().with_style(
                            ProgressStyle::with_template("{spinner} {prefix} {msg}").expect("valid template"),
                        ),
                    };
                    bar.set_prefix(source.to_owned());
                    bar.enable_steady_tick(Duration::from_millis(200));
                    self.started = Instant::now();
                    self.bar = Some(bar);
                }
                Event::UpToDate { source, docs } => {
                    eprintln!("{source}: already ingested ({docs} docs); nothing to do (--force re-ingests)")
                }
                Event::Read { rows, bytes_read, .. } => {
                    let rate = self.rate(rows);
                    let committed = self.committed_docs;
                    if let Some(bar) = &self.bar {
                        bar.set_position(bytes_read);
                        bar.set_message(format!("{rows} read, {committed} committed, {rate:.0} docs/s"));
                    }
                }
                Event::Committed { docs, bytes_read, .. } => {
                    self.committed_docs = docs;
                    if let Some(bar) = &self.bar {
                        bar.set_position(bytes_read);
                    }
                }
            },
        }
    }
}

//! The ingest loop: rows → validated documents → batches → commit (with the checkpoint) → acknowledgement.
//!
//! A batch is reported through [`Event::Committed`] only after [`BatchSink::commit`] returned, i.e. once it
//! is durable. A rerun of the same file resumes after the last committed row, or does nothing if the file
//! was fully ingested (unless forced); since every write is an upsert by id, re-ingesting is idempotent.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use sieve_core::{Checkpoint, Document, Limits, SourceProgress};

use crate::report::RejectReport;
use crate::source::{fingerprint, Format, Input, RowError, RowReader, SourceError};

/// Where documents go. Implemented by the BM25 index today and by the embedding pipeline later.
pub trait BatchSink {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The checkpoint of the last durable commit.
    fn committed(&self) -> Checkpoint;

    /// Buffers documents (insert or replace by id), in order.
    fn upsert(&mut self, docs: &[Document]) -> Result<(), Self::Error>;

    /// Makes all buffered documents durable together with `checkpoint`.
    fn commit(&mut self, checkpoint: Checkpoint) -> Result<(), Self::Error>;
}

/// What to do with a bad row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Write it to the reject report, count it, go on.
    #[default]
    Skip,
    /// Commit what came before it and stop with an error naming it.
    Fail,
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Documents per commit.
    pub batch_size: usize,
    pub on_error: OnError,
    pub limits: Limits,
    /// Overrides format detection from the file name.
    pub format: Option<Format>,
    /// Re-ingest a file even if its checkpoint says it is complete; ignore a partial checkpoint.
    pub force: bool,
    /// Input fields renamed before validation, `(from, to)`.
    pub renames: Vec<(String, String)>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            batch_size: 2000,
            on_error: OnError::Skip,
            limits: Limits::default(),
            format: None,
            force: false,
            renames: Vec::new(),
        }
    }
}

/// Progress notifications, for progress bars and logs.
#[derive(Debug)]
pub enum Event<'a> {
    Started {
        source: &'a str,
        total_bytes: Option<u64>,
        resume_after_line: Option<u64>,
    },
    /// The source was already fully ingested; nothing was read.
    UpToDate {
        source: &'a str,
        docs: u64,
    },
    /// Rows read so far in this run (not yet durable); sent every few hundred rows.
    Read {
        source: &'a str,
        rows: u64,
        bytes_read: u64,
        total_bytes: Option<u64>,
    },
    /// A batch is durable. Counts are for this run.
    Committed {
        source: &'a str,
        docs: u64,
        rejected: u64,
        line: u64,
        bytes_read: u64,
        total_bytes: Option<u64>,
    },
}

pub trait Progress {
    fn event(&mut self, event: Event<'_>);
}

/// Ignores every event.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&mut self, _: Event<'_>) {}
}

/// What one source contributed in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    pub source: String,
    pub docs: u64,
    pub rejected: u64,
    pub batches: u64,
    /// The run resumed after this line of an interrupted earlier run.
    pub resumed_after_line: Option<u64>,
    /// The source was already complete and was not read.
    pub up_to_date: bool,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{source_name}:{line}: {error} (stopped because of --on-error fail; rows before it are committed)")]
    BadRow { source_name: String, line: u64, error: RowError },
    #[error("writing the reject report {path}: {error}")]
    Report { path: String, error: std::io::Error },
    #[error("index write failed: {0}")]
    Sink(#[source] E),
}

/// The first line of each valid document id in the rows up to `last_line` (inclusive), keyed by the id's hash:
/// what an uninterrupted run would have seen there.
fn ids_before(input: &Input, options: &IngestOptions, last_line: u64) -> Result<HashMap<u128, u64>, SourceError> {
    let mut reader = RowReader::open_renamed(input, options.format, options.limits, None, &options.renames)?;
    let mut seen = HashMap::new();
    while let Some(row) = reader.next_row()? {
        if row.line > last_line {
            break;
        }
        if let Ok(doc) = row.outcome {
            seen.entry(xxhash_rust::xxh3::xxh3_128(doc.id.as_str().as_bytes())).or_insert(row.line);
        }
    }
    Ok(seen)
}

/// Ingests one source into `sink`.
pub fn ingest_source<S: BatchSink>(
    sink: &mut S,
    input: &Input,
    options: &IngestOptions,
    report: &mut RejectReport,
    progress: &mut dyn Progress,
) -> Result<SourceSummary, IngestError<S::Error>> {
    let started = Instant::now();
    let name = input.name();
    // Files get a checkpoint keyed by canonical path; stdin cannot be resumed.
    let tracked = match input {
        Input::File(path) => Some(track(path).map_err(|error| SourceError::Io { source_name: name.clone(), error })?),
        Input::Stdin => None,
    };
    let mut summary = SourceSummary {
        source: name.clone(),
        docs: 0,
        rejected: 0,
        batches: 0,
        resumed_after_line: None,
        up_to_date: false,
        elapsed: Duration::ZERO,
    };
    let mut resume = None;
    let mut progress_base = None;
    if let Some((key, fp)) = &tracked {
        if let Some(previous) = sink.committed().get(key).filter(|p| &p.fingerprint == fp && !options.force) {
            if previous.complete {
                progress.event(Event::UpToDate { source: &name, docs: previous.docs });
                summary.up_to_date = true;
                summary.elapsed = started.elapsed();
                return Ok(summary);
            }
            resume = Some((previous.line, previous.byte_offset));
            summary.resumed_after_line = Some(previous.line);
            progress_base = Some(previous.clone());
        }
    }
    let mut reader = RowReader::open_renamed(input, options.format, options.limits, resume, &options.renames)?;
    progress.event(Event::Started {
        source: &name,
        total_bytes: reader.total_bytes,
        resume_after_line: resume.map(|r| r.0),
    });

    // Cumulative progress of this source across runs, as stored in the checkpoint.
    let state = progress_base.unwrap_or_else(|| SourceProgress {
        source: tracked.as_ref().map_or_else(|| name.clone(), |t| t.0.clone()),
        fingerprint: tracked.as_ref().map_or_else(String::new, |t| t.1.clone()),
        line: 0,
        byte_offset: 0,
        docs: 0,
        rejected: 0,
        complete: false,
    });
    let mut run = Run {
        buffer: Vec::with_capacity(SUB_BATCH),
        last: (state.line, state.byte_offset),
        state,
        tracked: tracked.is_some(),
        total_bytes: reader.total_bytes,
        pending_docs: 0,
        pending_rejected: 0,
        summary,
        report,
        progress,
    };
    // One rule for an id given twice in a file: the first copy wins, the later ones are rejected as
    // `duplicate_id`. A resumed run first re-reads the ids of the rows the earlier runs committed, so that the
    // rule holds across a kill (it used to let the later copy replace the first after a resume).
    let mut seen: HashMap<u128, u64> = match resume {
        Some((line, _)) => ids_before(input, options, line)?,
        None => HashMap::new(),
    };
    // Rejects that an interrupted run wrote past its last commit: counted again (the checkpoint did not count
    // them) but not written twice.
    let reported = match resume {
        Some((line, _)) => run
            .report
            .reported_after(&name, line)
            .map_err(|e| IngestError::Report { path: run.report.path().display().to_string(), error: e })?,
        None => HashSet::new(),
    };
    let mut rows_read = 0u64;
    loop {
        let row = match reader.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => {
                // Keep what was read correctly before the source broke.
                run.commit_pending(sink, reader.bytes_read().get())?;
                return Err(e.into());
            }
        };
        let outcome = row.outcome.and_then(|doc| {
            let key = xxhash_rust::xxh3::xxh3_128(doc.id.as_str().as_bytes());
            match seen.get(&key) {
                Some(&first_line) => Err(RowError::DuplicateId { id: doc.id.to_string(), first_line }),
                None => {
                    seen.insert(key, row.line);
                    Ok(doc)
                }
            }
        });
        match outcome {
            Ok(doc) => {
                run.buffer.push(doc);
                run.pending_docs += 1;
                if run.buffer.len() >= SUB_BATCH {
                    sink.upsert(&run.buffer).map_err(IngestError::Sink)?;
                    run.buffer.clear();
                }
            }
            Err(error) if options.on_error == OnError::Fail => {
                run.commit_pending(sink, reader.bytes_read().get())?;
                return Err(IngestError::BadRow { source_name: name, line: row.line, error });
            }
            Err(error) => {
                if !reported.contains(&row.line) {
                    run.report
                        .write(&name, row.line, &error, &row.raw)
                        .map_err(|e| IngestError::Report { path: run.report.path().display().to_string(), error: e })?;
                }
                run.pending_rejected += 1;
            }
        }
        run.last = (row.line, row.end_offset);
        rows_read += 1;
        if rows_read.is_multiple_of(256) {
            run.progress.event(Event::Read {
                source: &name,
                rows: rows_read,
                bytes_read: reader.bytes_read().get(),
                total_bytes: run.total_bytes,
            });
        }
        if run.pending_docs >= options.batch_size as u64 {
            run.commit(sink, false, reader.bytes_read().get())?;
        }
    }
    run.commit(sink, true, reader.bytes_read().get())?;
    let mut summary = run.summary;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Documents handed to the sink at a time (a commit may span several of these).
const SUB_BATCH: usize = 512;

/// The state of one source's ingest between commits.
struct Run<'a> {
    /// Validated documents not yet handed to the sink.
    buffer: Vec<Document>,
    state: SourceProgress,
    summary: SourceSummary,
    tracked: bool,
    total_bytes: Option<u64>,
    /// Line and end offset of the last row read.
    last: (u64, u64),
    pending_docs: u64,
    pending_rejected: u64,
    report: &'a mut RejectReport,
    progress: &'a mut dyn Progress,
}

impl Run<'_> {
    /// Commits if anything is pending.
    fn commit_pending<S: BatchSink>(&mut self, sink: &mut S, bytes_read: u64) -> Result<(), IngestError<S::Error>> {
        if self.pending_docs + self.pending_rejected > 0 {
            self.commit(sink, false, bytes_read)?;
        }
        Ok(())
    }

    /// Hands buffered documents to the sink, syncs the report, commits the pending batch with the checkpoint at `self.last`, then acknowledges.
    fn commit<S: BatchSink>(
        &mut self,
        sink: &mut S,
        complete: bool,
        bytes_read: u64,
    ) -> Result<(), IngestError<S::Error>> {
        if !self.buffer.is_empty() {
            sink.upsert(&self.buffer).map_err(IngestError::Sink)?;
            self.buffer.clear();
        }
        self.report
            .sync()
            .map_err(|error| IngestError::Report { path: self.report.path().display().to_string(), error })?;
        let mut state = self.state.clone();
        (state.line, state.byte_offset) = self.last;
        state.docs += self.pending_docs;
        state.rejected += self.pending_rejected;
        state.complete = complete;
        let mut checkpoint = sink.committed();
        if self.tracked {
            checkpoint.upsert(state.clone());
        }
        sink.commit(checkpoint).map_err(IngestError::Sink)?;
        // Durable: from here on the batch is acknowledged.
        self.state = state;
        self.summary.docs += self.pending_docs;
        self.summary.rejected += self.pending_rejected;
        self.summary.batches += 1;
        self.pending_docs = 0;
        self.pending_rejected = 0;
        self.progress.event(Event::Committed {
            source: &self.summary.source,
            docs: self.summary.docs,
            rejected: self.summary.rejected,
            line: self.last.0,
            bytes_read,
            total_bytes: self.total_bytes,
        });
        Ok(())
    }
}

fn track(path: &Path) -> std::io::Result<(String, String)> {
    let canonical = std::fs::canonicalize(path)?;
    Ok((canonical.display().to_string(), fingerprint(path)?))
}

//! The reject report: one JSON line per rejected row, with the file, the line, a stable code, the reason and
//! the row itself, so nothing rejected is lost and every row can be fixed and re-ingested.
//!
//! A run that was killed may have written rejects past its last commit; the resumed run reads those rows
//! again. [`RejectReport::reported_after`] tells the driver which of them the report already holds, so each
//! rejected row appears once however often the ingest was interrupted, and a line cut short by the kill is
//! dropped before anything is appended.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::source::RowError;

/// One line of the report.
#[derive(Debug, Serialize)]
pub struct Rejected<'a> {
    pub source: &'a str,
    pub line: u64,
    pub code: &'static str,
    pub reason: String,
    pub raw: &'a str,
}

/// Appends rejected rows to a JSON-lines file, created on the first rejection.
#[derive(Debug)]
pub struct RejectReport {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    count: u64,
    /// A folder whose other `.jsonl` reports earlier runs wrote (the CLI's default: one file per run).
    history: Option<PathBuf>,
}

impl RejectReport {
    pub fn new(path: impl Into<PathBuf>) -> RejectReport {
        RejectReport { path: path.into(), file: None, count: 0, history: None }
    }

    /// Also consults the `.jsonl` reports in `dir` when asked what is already reported: where each run
    /// writes a report of its own, the killed run's rejects are in another file than the resumed run's.
    pub fn with_history(mut self, dir: impl Into<PathBuf>) -> RejectReport {
        self.history = Some(dir.into());
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn write(&mut self, source: &str, line: u64, error: &RowError, raw: &str) -> io::Result<()> {
        if self.file.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)?;
            }
            let mut file = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(&self.path)?;
            drop_cut_line(&mut file)?;
            file.seek(SeekFrom::End(0))?;
            self.file = Some(BufWriter::new(file));
        }
        let entry = Rejected { source, line, code: error.code(), reason: error.to_string(), raw };
        let file = self.file.as_mut().expect("opened above");
        serde_json::to_writer(&mut *file, &entry)?;
        file.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// The lines of `source` after `line` that the report already holds: the rejects an interrupted run wrote
    /// past its last commit. Lines that do not parse (one cut short by a kill) are ignored.
    pub fn reported_after(&mut self, source: &str, line: u64) -> io::Result<HashSet<u64>> {
        self.sync()?;
        let mut files = vec![self.path.clone()];
        if let Some(dir) = &self.history {
            match fs::read_dir(dir) {
                Ok(entries) => {
                    for entry in entries {
                        let path = entry?.path();
                        if path.extension().is_some_and(|e| e == "jsonl") && path != self.path {
                            files.push(path);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            source: String,
            line: u64,
        }
        let mut lines = HashSet::new();
        for path in files {
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for text in BufReader::new(file).split(b'\n') {
                if let Ok(entry) = serde_json::from_slice::<Entry>(&text?) {
                    if entry.source == source && entry.line > line {
                        lines.insert(entry.line);
                    }
                }
            }
        }
        Ok(lines)
    }

    /// Flushes and syncs; called before each commit so that a committed checkpoint never runs ahead of the
    /// report.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(file) = self.file.as_mut() {
            file.flush()?;
            file.get_ref().sync_data()?;
        }
        Ok(())
    }
}

/// Truncates a report that does not end in a newline back to its last complete line (the rest of a line the
/// writer was killed in the middle of), so that the next entry starts on a line of its own.
fn drop_cut_line(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut keep = len;
    let mut buf = [0u8; 4096];
    while keep > 0 {
        let start = keep.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(keep - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        io::Read::read_exact(file, chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        keep = start;
    }
    if keep < len {
        file.set_len(keep)?;
    }
    Ok(())
}

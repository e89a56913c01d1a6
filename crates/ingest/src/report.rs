//! The reject report: one JSON line per rejected row, with the file, the line, a stable code, the reason and
//! the row itself, so nothing rejected is lost and every row can be fixed and re-ingested.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
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
}

impl RejectReport {
    pub fn new(path: impl Into<PathBuf>) -> RejectReport {
        RejectReport { path: path.into(), file: None, count: 0 }
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
            let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.file = Some(BufWriter::new(file));
        }
        let entry = Rejected { source, line, code: error.code(), reason: error.to_string(), raw };
        let file = self.file.as_mut().expect("opened above");
        serde_json::to_writer(&mut *file, &entry)?;
        file.write_all(b"\n")?;
        self.count += 1;
        Ok(())
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

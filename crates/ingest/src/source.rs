//! Input sources: files or stdin, JSON lines or CSV, optionally gzip-compressed, read row by row.
//!
//! Every row comes out as a [`Row`] with its line number and either a [`Document`] or a [`RowError`]; a bad
//! row never stops the reader. Only problems with the source as a whole (unreadable, empty, a CSV without an
//! `id` column) are [`SourceError`]s.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use sieve_core::{Document, DocumentError, Limits};

/// Row formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (`.jsonl`, `.ndjson`).
    Jsonl,
    /// Comma-separated values with a header row that names the fields (`.csv`).
    Csv,
}

impl Format {
    /// The format a file name implies, looking through a `.gz` suffix.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".jsonl") || name.ends_with(".ndjson") || name.ends_with(".json") {
            Some(Format::Jsonl)
        } else if name.ends_with(".csv") {
            Some(Format::Csv)
        } else {
            None
        }
    }
}

/// Where rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    pub fn name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "<stdin>".into(),
        }
    }
}

/// A problem with a whole source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name}: {error}")]
    Io {
        source_name: String,
        #[source]
        error: io::Error,
    },
    #[error("{source_name}: the input is empty; expected {expected}")]
    Empty { source_name: String, expected: &'static str },
    #[error("{source_name}: cannot tell the format from the file name; expected a name ending in .jsonl, .ndjson, .json or .csv (optionally .gz), or pass --format")]
    UnknownFormat { source_name: String },
    #[error("{source_name}: CSV header has no `id` column; expected a header row naming the fields (id,title,body,...), found columns {found:?}")]
    CsvNoId { source_name: String, found: Vec<String> },
    #[error("{source_name}: CSV header is unreadable: {message}")]
    CsvHeader { source_name: String, message: String },
    #[error("{source_name}: CSV header names column {column:?} twice (columns {first} and {second}); expected each field once, found columns {found:?}")]
    CsvDuplicateHeader { source_name: String, column: String, first: usize, second: usize, found: Vec<String> },
    #[error("{source_name}: reading stopped after line {line}, at byte {byte}{of_total} of the {what}: {message}{hint}; the rows before it are kept", of_total = total.map_or(String::new(), |t| format!(" of {t}")), what = if *compressed { "compressed file" } else { "input" }, hint = if *compressed { " (the file looks truncated or corrupt: copy it again and ingest the new copy; upserts make that safe)" } else { "" })]
    Read { source_name: String, line: u64, byte: u64, total: Option<u64>, compressed: bool, message: String },
    #[error("{source_name}: line 1 starts a JSON array; expected one JSON document per line (JSON lines). Convert it first, e.g. `jq -c '.[]' {source_name} > docs.jsonl`")]
    JsonArray { source_name: String },
}

/// Why one row was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    #[error("malformed JSON: {message}")]
    MalformedJson { message: String },
    #[error("invalid UTF-8: the row's bytes are not valid UTF-8 after byte {valid_up_to}")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("row is {found} bytes, over the document limit of {limit} bytes")]
    TooLarge { found: usize, limit: usize },
    #[error("expected {expected} CSV columns (as in the header), found {found}")]
    ColumnCount { expected: usize, found: usize },
    #[error("duplicate id {id:?}: already given on line {first_line} of this input")]
    DuplicateId { id: String, first_line: u64 },
    #[error("{0}")]
    Invalid(#[from] DocumentError),
}

impl RowError {
    /// A stable machine-readable code for reports.
    pub fn code(&self) -> &'static str {
        match self {
            RowError::MalformedJson { .. } => "malformed_json",
            RowError::InvalidUtf8 { .. } => "invalid_utf8",
            RowError::TooLarge { .. } => "too_large",
            RowError::ColumnCount { .. } => "column_count",
            RowError::DuplicateId { .. } => "duplicate_id",
            RowError::Invalid(DocumentError::MissingField { .. }) => "missing_field",
            RowError::Invalid(DocumentError::TooLarge { .. }) => "too_large",
            RowError::Invalid(_) => "invalid_field",
        }
    }
}

/// One input row.
#[derive(Debug)]
pub struct Row {
    /// 1-based line number where the row starts.
    pub line: u64,
    /// Byte offset just past the row, in the decompressed stream.
    pub end_offset: u64,
    /// The row's text as read (lossily decoded if it was not UTF-8), for reject reports.
    pub raw: String,
    pub outcome: Result<Document, RowError>,
}

/// Counts bytes read from the underlying (possibly compressed) file, for progress bars.
#[derive(Debug, Clone, Default)]
pub struct ByteCounter(Arc<AtomicU64>);

impl ByteCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Counting<R> {
    inner: R,
    counter: ByteCounter,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// An open source.
pub struct RowReader {
    name: String,
    inner: Inner,
    limits: Limits,
    renames: Vec<(String, String)>,
    counter: ByteCounter,
    /// Size of the file on disk, when known.
    pub total_bytes: Option<u64>,
    pub format: Format,
    pub compressed: bool,
}

impl std::fmt::Debug for RowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowReader").field("name", &self.name).field("format", &self.format).finish()
    }
}

enum Inner {
    Jsonl {
        reader: Box<dyn BufRead + Send>,
        line: u64,
        offset: u64,
        buf: Vec<u8>,
    },
    Csv {
        reader: csv::Reader<Box<dyn Read + Send>>,
        headers: Vec<String>,
        record: csv::ByteRecord,
        skip_through: u64,
        tap: Tap,
    },
}

/// The bytes the CSV parser has read and not yet passed, so that a record's line can be counted exactly.
///
/// `csv` gives a record the position where its parser started looking for it, which is before the line ends it
/// skips: the `\n` of a CRLF pair (the `\r` ended the row before) and blank lines. Its line number is then one
/// too low after every CRLF row and after each blank line. Counting the `\n`s between that position and the
/// record's first byte puts it right. The parser reads ahead by at most its buffer, so little is kept.
#[derive(Debug, Clone, Default)]
struct Tap(Arc<Mutex<TapState>>);

#[derive(Debug, Default)]
struct TapState {
    /// Stream offset of `bytes[0]`.
    base: u64,
    bytes: VecDeque<u8>,
}

impl Tap {
    /// The line a record starts on, from the position `csv` gave it.
    fn record_line(&self, position: &csv::Position) -> u64 {
        let state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let from = position.byte().saturating_sub(state.base) as usize;
        let skipped = state.bytes.iter().skip(from).take_while(|b| matches!(b, b'\r' | b'\n'));
        position.line() + skipped.filter(|b| **b == b'\n').count() as u64
    }

    /// Forgets the bytes before stream offset `offset` (the end of the record just read).
    fn release_before(&self, offset: u64) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = (offset.saturating_sub(state.base) as usize).min(state.bytes.len());
        state.bytes.drain(..n);
        state.base += n as u64;
    }
}

/// A reader that copies what passes through it into a [`Tap`].
struct Tapped<R> {
    inner: R,
    tap: Tap,
}

impl<R: Read> Read for Tapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tap.0.lock().unwrap_or_else(|p| p.into_inner()).bytes.extend(&buf[..n]);
        Ok(n)
    }
}

impl RowReader {
    /// Opens `input`. `format` overrides detection from the file name; gzip is detected from the content.
    /// `skip_to` resumes after a checkpoint: rows ending at or before that byte offset are skipped (seeking
    /// directly in uncompressed JSON lines).
    pub fn open(
        input: &Input,
        format: Option<Format>,
        limits: Limits,
        skip_to: Option<(u64, u64)>,
    ) -> Result<RowReader, SourceError> {
        RowReader::open_renamed(input, format, limits, skip_to, &[])
    }

    /// [`RowReader::open`] with input fields renamed before validation (see [`RowReader::with_renames`]).
    pub fn open_renamed(
        input: &Input,
        format: Option<Format>,
        limits: Limits,
        skip_to: Option<(u64, u64)>,
        renames: &[(String, String)],
    ) -> Result<RowReader, SourceError> {
        let name = input.name();
        let io_err = |error| SourceError::Io { source_name: name.clone(), error };
        let counter = ByteCounter::default();
        let (raw, total_bytes, format): (Box<dyn Read + Send>, Option<u64>, Option<Format>) = match input {
            Input::File(path) => {
                let file = File::open(path).map_err(io_err)?;
                let size = file.metadata().map_err(io_err)?.len();
                let format = format
                    .or_else(|| Format::from_path(path))
                    .ok_or_else(|| SourceError::UnknownFormat { source_name: name.clone() })?;
                if size == 0 {
                    return Err(SourceError::Empty { source_name: name, expected: expected_rows(format) });
                }
                (Box::new(file), Some(size), Some(format))
            }
            Input::Stdin => (Box::new(io::stdin()), None, format),
        };
        let mut peek = BufReader::with_capacity(256 * 1024, Counting { inner: raw, counter: counter.clone() });
        let head = peek.fill_buf().map_err(io_err)?;
        let compressed = head.starts_with(&[0x1f, 0x8b]);
        // Stdin has no file name: without --format, its first byte tells (a JSON document starts with `{`; a
        // compressed stream is taken as JSON lines).
        let format = format.unwrap_or_else(|| {
            let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head).trim_ascii_start();
            if compressed || text.is_empty() || text.starts_with(b"{") || text.starts_with(b"[") {
                Format::Jsonl
            } else {
                Format::Csv
            }
        });
        if head.is_empty() {
            return Err(SourceError::Empty { source_name: name, expected: expected_rows(format) });
        }
        let stream: Box<dyn BufRead + Send> = if compressed {
            Box::new(BufReader::with_capacity(256 * 1024, flate2::read::MultiGzDecoder::new(peek)))
        } else if let (Format::Jsonl, Input::File(path), Some((line, offset))) = (format, input, skip_to) {
            // Plain JSON lines: seek straight to the checkpoint.
            let mut file = File::open(path).map_err(io_err)?;
            file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
            counter.0.store(offset, Ordering::Relaxed);
            let reader = BufReader::with_capacity(
                256 * 1024,
                Counting { inner: Box::new(file) as Box<dyn Read + Send>, counter: counter.clone() },
            );
            return Ok(RowReader {
                name,
                inner: Inner::Jsonl { reader: Box::new(reader), line, offset, buf: Vec::new() },
                limits,
                renames: renames.to_vec(),
                counter,
                total_bytes,
                format,
                compressed,
            });
        } else {
            Box::new(peek)
        };
        let inner = match format {
            Format::Jsonl => Inner::Jsonl { reader: stream, line: 0, offset: 0, buf: Vec::new() },
            Format::Csv => {
                let tap = Tap::default();
                let mut reader = csv::ReaderBuilder::new()
                    .flexible(true)
                    .has_headers(true)
                    .from_reader(Box::new(Tapped { inner: stream, tap: tap.clone() }) as Box<dyn Read + Send>);
                let headers = reader
                    .byte_headers()
                    .map_err(|e| SourceError::CsvHeader { source_name: name.clone(), message: e.to_string() })?;
                if headers.is_empty() {
                    return Err(SourceError::Empty { source_name: name, expected: expected_rows(format) });
                }
                let headers: Vec<String> = headers
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).trim().trim_start_matches('\u{feff}').to_owned())
                    .collect();
                for (second, h) in headers.iter().enumerate() {
                    if let Some(first) = headers[..second].iter().position(|x| x == h) {
                        return Err(SourceError::CsvDuplicateHeader {
                            source_name: name,
                            column: h.clone(),
                            first: first + 1,
                            second: second + 1,
                            found: headers,
                        });
                    }
                }
                let id_column = renames.iter().find(|(_, to)| to == "id").map_or("id", |(from, _)| from.as_str());
                if !headers.iter().any(|h| h == id_column) {
                    return Err(SourceError::CsvNoId { source_name: name, found: headers });
                }
                Inner::Csv { reader, headers, record: csv::ByteRecord::new(), skip_through: 0, tap }
            }
        };
        let mut reader =
            RowReader { name, inner, limits, renames: renames.to_vec(), counter, total_bytes, format, compressed };
        if let Some((line, _)) = skip_to {
            reader.skip_through_line(line)?;
        }
        Ok(reader)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames input fields before validation (`("_id", "id")`, `("text", "body")`): for inputs whose
    /// field names differ from Sieve's.
    pub fn with_renames(mut self, renames: Vec<(String, String)>) -> RowReader {
        self.renames = renames;
        self
    }

    /// Bytes consumed from the file on disk so far (compressed bytes for gzip).
    pub fn bytes_read(&self) -> &ByteCounter {
        &self.counter
    }

    fn skip_through_line(&mut self, last_line: u64) -> Result<(), SourceError> {
        let name = self.name.clone();
        match &mut self.inner {
            Inner::Jsonl { reader, line, offset, buf } => {
                while *line < last_line {
                    buf.clear();
                    let n = reader
                        .read_until(b'\n', buf)
                        .map_err(|error| SourceError::Io { source_name: name.clone(), error })?;
                    if n == 0 {
                        break;
                    }
                    *line += 1;
                    *offset += n as u64;
                }
            }
            Inner::Csv { skip_through, .. } => *skip_through = last_line,
        }
        Ok(())
    }

    /// The next row, `None` at the end of the input, or an I/O error that ends the source.
    pub fn next_row(&mut self) -> Result<Option<Row>, SourceError> {
        let limits = self.limits;
        let name = self.name.clone();
        let renames = &self.renames;
        let (counter, total, compressed) = (self.counter.clone(), self.total_bytes, self.compressed);
        // A read that fails mid-stream (a truncated gzip, a disk error) says where.
        let read_err = |line: u64, message: String| SourceError::Read {
            source_name: name.clone(),
            line,
            byte: counter.get(),
            total,
            compressed,
            message,
        };
        match &mut self.inner {
            Inner::Jsonl { reader, line, offset, buf } => loop {
                buf.clear();
                let n = reader.read_until(b'\n', buf).map_err(|e| read_err(*line, e.to_string()))?;
                if n == 0 {
                    return Ok(None);
                }
                *line += 1;
                *offset += n as u64;
                if *line == 1 {
                    // A UTF-8 byte-order mark is not part of the first document (CSV headers drop it too).
                    if buf.starts_with(b"\xEF\xBB\xBF") {
                        buf.drain(..3);
                    }
                    if buf.trim_ascii_start().starts_with(b"[") {
                        return Err(SourceError::JsonArray { source_name: name });
                    }
                }
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let raw = String::from_utf8_lossy(buf).trim_end_matches(['\n', '\r']).to_owned();
                return Ok(Some(Row {
                    line: *line,
                    end_offset: *offset,
                    outcome: parse_json_row(buf, &limits, renames),
                    raw,
                }));
            },
            Inner::Csv { reader, headers, record, skip_through, tap } => loop {
                let last_line = reader.position().line().saturating_sub(1);
                let more = reader.read_byte_record(record).map_err(|e| read_err(last_line, e.to_string()))?;
                if !more {
                    return Ok(None);
                }
                let line = record.position().map_or(0, |p| tap.record_line(p));
                let end_offset = reader.position().byte();
                tap.release_before(end_offset);
                if line <= *skip_through {
                    continue;
                }
                let raw = csv_line(record);
                return Ok(Some(Row {
                    line,
                    end_offset,
                    outcome: parse_csv_row(headers, record, &limits, renames),
                    raw,
                }));
            },
        }
    }
}

/// A record as one CSV line (quoted where a cell needs it, no line terminator), so that the reject report's
/// `raw` parses back to the same cells: joining them with commas would split a cell like `"Sony, Turntable"`.
fn csv_line(record: &csv::ByteRecord) -> String {
    let mut w =
        csv::WriterBuilder::new().flexible(true).terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    let bytes = match w.write_byte_record(record).and_then(|()| w.flush().map_err(csv::Error::from)) {
        Ok(()) => w.into_inner().unwrap_or_default(),
        Err(_) => record.iter().collect::<Vec<_>>().join(&b","[..]), // (writing to memory does not fail)
    };
    let text = String::from_utf8_lossy(&bytes);
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}

fn expected_rows(format: Format) -> &'static str {
    match format {
        Format::Jsonl => "one JSON document per line",
        Format::Csv => "a header row naming the fields, then one document per row",
    }
}

fn rename(value: &mut Value, renames: &[(String, String)]) {
    if let Value::Object(obj) = value {
        for (from, to) in renames {
            if let Some(v) = obj.remove(from) {
                obj.insert(to.clone(), v);
            }
        }
    }
}

fn parse_json_row(bytes: &[u8], limits: &Limits, renames: &[(String, String)]) -> Result<Document, RowError> {
    let text = std::str::from_utf8(bytes).map_err(|e| RowError::InvalidUtf8 { valid_up_to: e.valid_up_to() })?;
    let text = text.trim();
    // Cheap size check before parsing; the exact check runs on the validated document.
    if text.len() > limits.max_document_bytes.saturating_mul(2) {
        return Err(RowError::TooLarge { found: text.len(), limit: limits.max_document_bytes });
    }
    let mut value: Value =
        serde_json::from_str(text).map_err(|e| RowError::MalformedJson { message: e.to_string() })?;
    rename(&mut value, renames);
    Ok(Document::from_json(value, limits)?)
}

fn parse_csv_row(
    headers: &[String],
    record: &csv::ByteRecord,
    limits: &Limits,
    renames: &[(String, String)],
) -> Result<Document, RowError> {
    if record.len() != headers.len() {
        return Err(RowError::ColumnCount { expected: headers.len(), found: record.len() });
    }
    let size: usize = record.iter().map(<[u8]>::len).sum();
    if size > limits.max_document_bytes.saturating_mul(2) {
        return Err(RowError::TooLarge { found: size, limit: limits.max_document_bytes });
    }
    let mut obj = Map::new();
    let mut bytes_before = 0;
    for (header, cell) in headers.iter().zip(record.iter()) {
        let text = std::str::from_utf8(cell)
            .map_err(|e| RowError::InvalidUtf8 { valid_up_to: bytes_before + e.valid_up_to() })?;
        bytes_before += cell.len() + 1;
        if !text.is_empty() {
            obj.insert(header.clone(), Value::String(text.to_owned()));
        }
    }
    let mut value = Value::Object(obj);
    rename(&mut value, renames);
    Ok(Document::from_json(value, limits)?)
}

/// Identity of a file's content: its size and a hash of its first and last MiB. A changed file gets a new
/// fingerprint, so a checkpoint for the old content is never applied to the new.
pub fn fingerprint(path: &Path) -> io::Result<String> {
    const SPAN: u64 = 1 << 20;
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; SPAN as usize];
    let n = read_full(&mut file, &mut buf)?;
    hasher.update(&buf[..n]);
    if size > SPAN {
        file.seek(SeekFrom::Start(size.saturating_sub(SPAN).max(SPAN)))?;
        let n = read_full(&mut file, &mut buf)?;
        hasher.update(&buf[..n]);
    }
    Ok(format!("{size}:{:016x}", hasher.digest()))
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            m => n += m,
        }
    }
    Ok(n)
}

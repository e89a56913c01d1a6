//! Tests of readers and the ingest loop against an in-memory sink.

use std::io::Write;

use sieve_core::{Checkpoint, Document};

use crate::*;

/// Keeps committed documents in order; buffered ones vanish unless committed, like a real index.
#[derive(Default)]
struct MemSink {
    committed: Vec<String>,
    buffered: Vec<String>,
    checkpoint: Checkpoint,
    commits: usize,
}

impl BatchSink for MemSink {
    type Error = std::io::Error;
    fn committed(&self) -> Checkpoint {
        self.checkpoint.clone()
    }
    fn upsert(&mut self, docs: &[Document]) -> Result<(), Self::Error> {
        self.buffered.extend(docs.iter().map(|d| d.id.to_string()));
        Ok(())
    }
    fn commit(&mut self, checkpoint: Checkpoint) -> Result<(), Self::Error> {
        self.committed.append(&mut self.buffered);
        self.checkpoint = checkpoint;
        self.commits += 1;
        Ok(())
    }
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> Input {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    Input::File(path)
}

fn run<S: BatchSink<Error = std::io::Error>>(
    sink: &mut S,
    input: &Input,
    options: &IngestOptions,
    report: &mut RejectReport,
) -> Result<SourceSummary, IngestError<std::io::Error>> {
    ingest_source(sink, input, options, report, &mut NoProgress)
}

fn report_lines(report: &RejectReport) -> Vec<serde_json::Value> {
    std::fs::read_to_string(report.path())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn bad_rows_are_reported_with_line_code_and_raw_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"{\"id\":\"a\",\"title\":\"ok\"}\n{\"id\":\"b\",\"title\":\n\n{\"title\":\"no id\"}\n{\"id\":\"c\",\"price\":-3}\n".to_vec();
    bytes.extend_from_slice(b"{\"id\":\"d\",\"title\":\"bad \xff utf8\"}\n{\"id\":\"a\",\"title\":\"again\"}\n{\"id\":\"e\",\"published_at\":\"soon\"}\n{\"id\":\"f\"}\n");
    let input = write(&dir, "rows.jsonl", &bytes);
    let mut sink = MemSink::default();
    let mut report = RejectReport::new(dir.path().join("rejected.jsonl"));
    let summary = run(&mut sink, &input, &IngestOptions::default(), &mut report).unwrap();
    assert_eq!(sink.committed, ["a", "f"]);
    assert_eq!((summary.docs, summary.rejected), (2, 6));
    let lines = report_lines(&report);
    let got: Vec<(u64, &str)> =
        lines.iter().map(|l| (l["line"].as_u64().unwrap(), l["code"].as_str().unwrap())).collect();
    assert_eq!(
        got,
        [
            (2, "malformed_json"),
            (4, "missing_field"),
            (5, "invalid_field"),
            (6, "invalid_utf8"),
            (7, "duplicate_id"),
            (8, "invalid_field")
        ]
    );
    assert_eq!(lines[4]["reason"], "duplicate id \"a\": already given on line 1 of this input");
    assert_eq!(lines[2]["raw"], "{\"id\":\"c\",\"price\":-3}");
    assert!(lines[2]["reason"]
        .as_str()
        .unwrap()
        .contains("field `price`: expected a finite number >= 0, found number -3"));
    let cp = sink.checkpoint.sources[0].clone();
    assert!(cp.complete);
    assert_eq!((cp.line, cp.docs, cp.rejected), (9, 2, 6));
}

#[test]
fn fail_mode_commits_rows_before_the_bad_one_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(&dir, "rows.jsonl", b"{\"id\":\"a\"}\n{\"id\":\"b\"}\nnot json\n{\"id\":\"c\"}\n");
    let mut sink = MemSink::default();
    let mut report = RejectReport::new(dir.path().join("r.jsonl"));
    let options = IngestOptions { on_error: OnError::Fail, ..IngestOptions::default() };
    let err = run(&mut sink, &input, &options, &mut report).unwrap_err();
    assert!(err.to_string().contains("rows.jsonl:3: malformed JSON"), "{err}");
    assert_eq!(sink.committed, ["a", "b"]);
    assert_eq!(sink.checkpoint.sources[0].line, 2);
    assert!(!sink.checkpoint.sources[0].complete);
}

#[test]
fn csv_rows_map_headers_to_fields_and_short_rows_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(&dir, "p.csv", "id,title,brand,price,tags,colour\np1,\"Sony, Turntable\",Sony,149.5,a|b,black\np2,Short row\np3,\"Speaker, \"\"5.1\"\"\nsystem\",,NaN,,\n".as_bytes());
    let mut sink = MemSink::default();
    let mut report = RejectReport::new(dir.path().join("r.jsonl"));
    let summary = run(&mut sink, &input, &IngestOptions::default(), &mut report).unwrap();
    assert_eq!(sink.committed, ["p1"]);
    assert_eq!(summary.rejected, 2);
    let lines = report_lines(&report);
    assert_eq!(lines[0]["reason"], "expected 6 CSV columns (as in the header), found 2");
    assert_eq!(lines[0]["line"], 3);
    assert!(lines[1]["reason"].as_str().unwrap().contains("`price`"));
    // the rejected row is kept as a CSV row that reads back to the same cells (quotes, comma, line break)
    assert_eq!(lines[1]["raw"], "p3,\"Speaker, \"\"5.1\"\"\nsystem\",,NaN,,");
    let again = write(
        &dir,
        "again.csv",
        format!("id,title,brand,price,tags,colour\n{}\n", lines[1]["raw"].as_str().unwrap()).as_bytes(),
    );
    let mut reader = RowReader::open(&again, None, Default::default(), None).unwrap();
    let row = reader.next_row().unwrap().unwrap();
    assert!(row.outcome.unwrap_err().to_string().contains("`price`"), "the same row, the same error");
    assert_eq!(row.raw, lines[1]["raw"].as_str().unwrap());
    // Typed fields and extra columns come through the reader too.
    let mut reader = RowReader::open(&input, None, Default::default(), None).unwrap();
    let doc = reader.next_row().unwrap().unwrap().outcome.unwrap();
    assert_eq!((doc.title.as_deref(), doc.price, doc.tags.len()), (Some("Sony, Turntable"), Some(149.5), 2));
    assert_eq!(doc.extra["colour"], "black");
}

#[test]
fn csv_without_id_column_and_empty_files_are_source_errors() {
    let dir = tempfile::tempdir().unwrap();
    let no_id = write(&dir, "p.csv", b"sku,title\n1,x\n");
    let err = RowReader::open(&no_id, None, Default::default(), None).unwrap_err();
    assert_eq!(err.to_string(), format!("{}: CSV header has no `id` column; expected a header row naming the fields (id,title,body,...), found columns [\"sku\", \"title\"]", no_id.name()));
    let empty = write(&dir, "e.jsonl", b"");
    let err = RowReader::open(&empty, None, Default::default(), None).unwrap_err();
    assert!(err.to_string().ends_with("the input is empty; expected one JSON document per line"), "{err}");
    let unknown = write(&dir, "data.txt", b"{}");
    assert!(matches!(
        RowReader::open(&unknown, None, Default::default(), None),
        Err(SourceError::UnknownFormat { .. })
    ));
}

#[test]
fn gzip_is_detected_from_content() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..10 {
        writeln!(gz, "{{\"id\":\"g{i}\",\"title\":\"t\"}}").unwrap();
    }
    let input = write(&dir, "rows.jsonl.gz", &gz.finish().unwrap());
    let mut sink = MemSink::default();
    let options = IngestOptions { batch_size: 3, ..IngestOptions::default() };
    let summary = run(&mut sink, &input, &options, &mut RejectReport::new(dir.path().join("r"))).unwrap();
    assert_eq!(summary.docs, 10);
    assert_eq!(sink.commits, 4, "3+3+3 then the final 1");
}

#[test]
fn rerun_resumes_after_the_checkpoint_or_does_nothing_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (0..10).map(|i| format!("{{\"id\":\"d{i}\"}}\n")).collect();
    for (name, bytes) in [
        ("rows.jsonl", rows.clone().into_bytes()),
        ("rows.csv", format!("id\n{}", (0..10).map(|i| format!("d{i}\n")).collect::<String>()).into_bytes()),
    ] {
        let input = write(&dir, name, &bytes);
        let mut sink = MemSink::default();
        let mut report = RejectReport::new(dir.path().join("r"));
        let options = IngestOptions { batch_size: 4, ..IngestOptions::default() };
        run(&mut sink, &input, &options, &mut report).unwrap();
        // Simulate a crash after the first commit: keep only its documents and checkpoint.
        let mut crashed = MemSink::default();
        let first_line = if name.ends_with(".csv") { 5 } else { 4 };
        let mut cp = sink.checkpoint.clone();
        cp.sources[0].line = first_line;
        cp.sources[0].byte_offset = if name.ends_with(".csv") { 3 + 4 * 3 } else { 4 * 12 };
        cp.sources[0].docs = 4;
        cp.sources[0].complete = false;
        crashed.checkpoint = cp;
        crashed.committed = (0..4).map(|i| format!("d{i}")).collect();
        let summary = run(&mut crashed, &input, &options, &mut report).unwrap();
        assert_eq!(summary.resumed_after_line, Some(first_line), "{name}");
        assert_eq!(crashed.committed, (0..10).map(|i| format!("d{i}")).collect::<Vec<_>>(), "{name}");
        assert_eq!(crashed.checkpoint.sources[0].docs, 10, "{name}");
        // Complete: nothing is read again.
        let before = crashed.commits;
        let again = run(&mut crashed, &input, &options, &mut report).unwrap();
        assert!(again.up_to_date);
        assert_eq!(crashed.commits, before);
        // Forced: everything again (upserts make it idempotent in a real index).
        let forced = run(&mut crashed, &input, &IngestOptions { force: true, ..options.clone() }, &mut report).unwrap();
        assert_eq!(forced.docs, 10);
    }
}

#[test]
fn oversize_rows_are_rejected_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let body = "x".repeat(5 * 1024 * 1024);
    let input =
        write(&dir, "big.jsonl", format!("{{\"id\":\"big\",\"body\":\"{body}\"}}\n{{\"id\":\"small\"}}\n").as_bytes());
    let mut sink = MemSink::default();
    let mut report = RejectReport::new(dir.path().join("r.jsonl"));
    run(&mut sink, &input, &IngestOptions::default(), &mut report).unwrap();
    assert_eq!(sink.committed, ["small"]);
    let lines = report_lines(&report);
    assert_eq!(lines[0]["code"], "too_large");
    assert_eq!(lines[0]["raw"].as_str().unwrap().len(), body.len() + 22, "the whole row is kept in the report");
}

#[test]
fn a_changed_file_gets_a_new_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let Input::File(path) = write(&dir, "a.jsonl", b"{\"id\":\"a\"}\n") else { unreachable!() };
    let before = fingerprint(&path).unwrap();
    std::fs::write(&path, b"{\"id\":\"b\"}\n").unwrap();
    assert_ne!(before, fingerprint(&path).unwrap());
}

/// A JSON lines file saved with a UTF-8 byte-order mark (as some Windows editors write them) keeps its first
/// row: the mark is not part of the document.
#[test]
fn a_byte_order_mark_does_not_cost_the_first_json_row() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(&dir, "bom.jsonl", b"\xEF\xBB\xBF{\"id\":\"a\",\"title\":\"first\"}\n{\"id\":\"b\"}\n");
    let mut sink = MemSink::default();
    let mut report = RejectReport::new(dir.path().join("r.jsonl"));
    let summary = run(&mut sink, &input, &IngestOptions::default(), &mut report).unwrap();
    assert_eq!((summary.docs, summary.rejected), (2, 0));
    assert_eq!(sink.committed, ["a", "b"]);
}

/// A pretty-printed JSON array is refused at once with a hint, not read as dozens of malformed lines.
#[test]
fn a_json_array_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("pretty.json", &b"[\n  {\"id\": \"a\"},\n  {\"id\": \"b\"}\n]\n"[..]),
        ("one-line.json", &b"\xEF\xBB\xBF  [{\"id\": \"a\"}, {\"id\": \"b\"}]\n"[..]),
    ] {
        let input = write(&dir, name, bytes);
        let mut sink = MemSink::default();
        let mut report = RejectReport::new(dir.path().join(format!("{name}.rejected")));
        let err = run(&mut sink, &input, &IngestOptions::default(), &mut report).unwrap_err().to_string();
        assert!(err.contains("line 1 starts a JSON array; expected one JSON document per line"), "{err}");
        assert!(err.contains("jq -c '.[]'"), "{err}");
        assert!(sink.committed.is_empty() && report_lines(&report).is_empty());
    }
}

/// A header naming a column twice would silently lose one of the two columns' cells.
#[test]
fn a_duplicated_csv_header_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(&dir, "dup.csv", b"id,title,body,title\np1,a,b,c\n");
    let err = RowReader::open(&input, None, Default::default(), None).unwrap_err().to_string();
    assert!(
        err.contains("CSV header names column \"title\" twice (columns 2 and 4)")
            && err.contains("found columns [\"id\", \"title\", \"body\", \"title\"]"),
        "{err}"
    );
}

/// Reject line numbers are the file's own line numbers with CRLF line ends and blank lines, as with LF.
#[test]
fn csv_reject_lines_are_exact_with_crlf_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    for (name, eol) in [("lf.csv", "\n"), ("crlf.csv", "\r\n")] {
        let text =
            ["id,title,price", "p1,a,1", "", "p2,b,oops", "", "", "p3,c,2", "p4,d,bad", "p5,\"two", "lines\",oops"]
                .join(eol)
                + eol;
        let input = write(&dir, name, text.as_bytes());
        let mut sink = MemSink::default();
        let mut report = RejectReport::new(dir.path().join(format!("{name}.rejected")));
        run(&mut sink, &input, &IngestOptions::default(), &mut report).unwrap();
        assert_eq!(sink.committed, ["p1", "p3"], "{name}");
        let lines: Vec<u64> = report_lines(&report).iter().map(|l| l["line"].as_u64().unwrap()).collect();
        assert_eq!(lines, [4, 8, 9], "{name}");
    }
}

/// A truncated gzip says where reading stopped (line and byte of the compressed file) and keeps the rows
/// before it; it used to say only "incomplete deflate stream", twice.
#[test]
fn a_truncated_gzip_says_where_it_stopped_and_keeps_the_rows_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..20_000 {
        writeln!(gz, "{{\"id\":\"g{i}\",\"title\":\"row {i} of a long file\"}}").unwrap();
    }
    let whole = gz.finish().unwrap();
    let input = write(&dir, "cut.jsonl.gz", &whole[..whole.len() / 2]);
    let mut sink = MemSink::default();
    let options = IngestOptions { batch_size: 1000, ..IngestOptions::default() };
    let err = run(&mut sink, &input, &options, &mut RejectReport::new(dir.path().join("r"))).unwrap_err();
    let msg = err.to_string();
    let kept = sink.committed.len() as u64;
    assert!(kept > 1000, "the rows before the cut are committed: {kept}");
    assert!(msg.contains(&format!("reading stopped after line {kept}, at byte ")), "{msg}");
    assert!(msg.contains(&format!(" of {} of the compressed file", whole.len() / 2)), "{msg}");
    assert!(msg.contains("looks truncated or corrupt"), "{msg}");
    // said once: no cause chained under it that repeats the message
    assert!(std::error::Error::source(&err).is_none());
}

/// A sink whose `fail_at`-th commit fails, as a kill between the report's sync and the commit would leave it.
struct FailingSink {
    inner: MemSink,
    fail_at: usize,
}

impl BatchSink for FailingSink {
    type Error = std::io::Error;
    fn committed(&self) -> Checkpoint {
        self.inner.committed()
    }
    fn upsert(&mut self, docs: &[Document]) -> Result<(), Self::Error> {
        self.inner.upsert(docs)
    }
    fn commit(&mut self, checkpoint: Checkpoint) -> Result<(), Self::Error> {
        if self.inner.commits + 1 == self.fail_at {
            self.inner.buffered.clear();
            return Err(std::io::Error::other("killed"));
        }
        self.inner.commit(checkpoint)
    }
}

/// A resumed run reads again the rows an interrupted one rejected past its last commit; the report keeps one
/// line per rejected row all the same, and a line cut short by the kill is dropped.
#[test]
fn a_resume_does_not_report_a_rejected_row_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 1..=40 {
        if i % 4 == 0 {
            text.push_str("not json\n");
        } else {
            text.push_str(&format!("{{\"id\":\"r{i}\"}}\n"));
        }
    }
    let input = write(&dir, "rows.jsonl", text.as_bytes());
    let options = IngestOptions { batch_size: 6, ..IngestOptions::default() };
    let path = dir.path().join("r.jsonl");
    let mut sink = FailingSink { inner: MemSink::default(), fail_at: 3 };
    let mut report = RejectReport::new(&path);
    run(&mut sink, &input, &options, &mut report).unwrap_err();
    let committed_line = sink.inner.checkpoint.sources[0].line;
    let written = report_lines(&report).len();
    assert!(written as u64 > committed_line / 4, "rejects past the last commit were written: {written}");
    drop(report);
    // the kill also cut the report's last line short
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"source\":\"rows.js").unwrap();
    let mut sink = sink.inner;
    let mut report = RejectReport::new(&path);
    let summary = run(&mut sink, &input, &options, &mut report).unwrap();
    assert_eq!(sink.committed.len(), 30);
    assert_eq!(sink.checkpoint.sources[0].rejected, 10, "the checkpoint counts each reject once");
    assert!(summary.rejected > 0);
    let lines: Vec<u64> = report_lines(&report).iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, (1..=10).map(|i| i * 4).collect::<Vec<u64>>());
}

/// The CLI's default writes one report per run; the resumed run consults the earlier ones in the folder, so
/// a row the killed run reported past its last commit is in one report only.
#[test]
fn a_resume_with_one_report_per_run_reports_each_row_once_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let text: String =
        (1..=40).map(|i| if i % 4 == 0 { "not json\n".to_owned() } else { format!("{{\"id\":\"r{i}\"}}\n") }).collect();
    let input = write(&dir, "rows.jsonl", text.as_bytes());
    let options = IngestOptions { batch_size: 6, ..IngestOptions::default() };
    let reports = dir.path().join("rejected");
    let mut sink = FailingSink { inner: MemSink::default(), fail_at: 3 };
    let mut first = RejectReport::new(reports.join("1.jsonl")).with_history(&reports);
    run(&mut sink, &input, &options, &mut first).unwrap_err();
    let mut sink = sink.inner;
    let mut second = RejectReport::new(reports.join("2.jsonl")).with_history(&reports);
    run(&mut sink, &input, &options, &mut second).unwrap();
    let mut lines: Vec<u64> =
        [report_lines(&first), report_lines(&second)].concat().iter().map(|l| l["line"].as_u64().unwrap()).collect();
    lines.sort_unstable();
    assert_eq!(lines, (1..=10).map(|i| i * 4).collect::<Vec<u64>>());
    assert_eq!(sink.checkpoint.sources[0].rejected, 10);
}

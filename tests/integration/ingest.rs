//! `sieve ingest` on real files: every kind of bad input is reported and nothing is lost.

use std::io::Write;

use crate::{ingested, num_docs, ok, run, s, search_ids, stderr, write};

fn report_rows(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_bad_row_is_reported_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<Vec<u8>> = vec![
        br#"{"id":"good-1","title":"Sony Turntable - PSLX350H","price":149.5,"brand":"Sony"}"#.to_vec(),
        br#"{"id":"bad-json","title":"unterminated"#.to_vec(),
        br#"{"title":"no id here"}"#.to_vec(),
        br#"{"id":"good-1","title":"duplicate of line 1"}"#.to_vec(),
        br#"{"id":"neg","price":-5}"#.to_vec(),
        br#"{"id":"nan","price":"NaN"}"#.to_vec(),
        br#"{"id":"nan-literal","price":NaN}"#.to_vec(),
        br#"{"id":"date","published_at":"22/11/2026"}"#.to_vec(),
        b"{\"id\":\"utf8\",\"title\":\"caf\xe9\"}".to_vec(),
        format!(r#"{{"id":"huge","body":"{}"}}"#, "x".repeat(5 * 1024 * 1024)).into_bytes(),
        br#"{"id":"good-2","title":"Bose speaker","published_at":"2024-05-01T08:00:00+08:00"}"#.to_vec(),
    ];
    rows.push(Vec::new()); // trailing newline only
    let file = write(dir.path(), "rows.jsonl", rows.join(&b'\n'));
    let index = dir.path().join("idx");
    let report = dir.path().join("rejected.jsonl");
    let out = run(&["ingest", "--index", s(&index), s(&file), "--report", s(&report), "--progress", "none"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("2 docs ingested, 9 rejected"), "{err}");
    assert!(err.contains(&format!("9 rows rejected; each is in {}", report.display())), "{err}");

    let rejected = report_rows(&report);
    let got: Vec<(u64, &str)> =
        rejected.iter().map(|r| (r["line"].as_u64().unwrap(), r["code"].as_str().unwrap())).collect();
    assert_eq!(
        got,
        [
            (2, "malformed_json"),
            (3, "missing_field"),
            (4, "duplicate_id"),
            (5, "invalid_field"),
            (6, "invalid_field"),
            (7, "malformed_json"),
            (8, "invalid_field"),
            (9, "invalid_utf8"),
            (10, "too_large"),
        ]
    );
    for r in &rejected {
        assert_eq!(r["source"], s(&file));
        assert!(!r["raw"].as_str().unwrap().is_empty(), "the raw row is kept: {r}");
    }
    let reason =
        |line: u64| rejected.iter().find(|r| r["line"] == line).unwrap()["reason"].as_str().unwrap().to_owned();
    assert_eq!(reason(3), "missing required field `id` (expected a non-empty string)");
    assert_eq!(reason(4), "duplicate id \"good-1\": already given on line 1 of this input");
    assert_eq!(reason(5), "field `price`: expected a finite number >= 0, found number -5");
    assert_eq!(reason(6), "field `price`: expected a finite number >= 0, found string \"NaN\"");
    assert!(reason(8).starts_with("field `published_at`: expected an RFC 3339 date-time"), "{}", reason(8));
    assert!(reason(10).contains("over the document limit of 1048576 bytes"), "{}", reason(10));

    assert_eq!(num_docs(&index), 2);
    assert_eq!(search_ids(&index, "PS-LX350H", &[]), ["good-1"]);
    assert_eq!(search_ids(&index, "speaker", &["--filter", "published_at>=2024-01-01"]), ["good-2"]);
}

#[test]
fn on_error_fail_stops_at_the_bad_row_and_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "rows.jsonl",
        "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c\",\"price\":-1}\n{\"id\":\"d\"}\n",
    );
    let index = dir.path().join("idx");
    let out = run(&["ingest", "--index", s(&index), s(&file), "--on-error", "fail", "--progress", "none"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3: field `price`: expected a finite number >= 0, found number -1", s(&file))),
        "{err}"
    );
    assert_eq!(num_docs(&index), 2);
}

#[test]
fn empty_file_missing_file_and_csv_without_id_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("idx");
    let empty = write(dir.path(), "empty.jsonl", "");
    let out = run(&["ingest", "--index", s(&index), s(&empty)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("the input is empty; expected one JSON document per line"), "{}", stderr(&out));

    let out = run(&["ingest", "--index", s(&index), s(&dir.path().join("nope.jsonl"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope.jsonl does not exist"), "{}", stderr(&out));

    let csv = write(dir.path(), "p.csv", "sku,title\n1,Speaker\n");
    let out = run(&["ingest", "--index", s(&index), s(&csv)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("CSV header has no `id` column"), "{}", stderr(&out));
}

#[test]
fn csv_with_a_missing_column_rejects_that_row_only() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        dir.path(),
        "p.csv",
        "id,title,brand,price,category\np1,Sony Turntable,Sony,149.50,electronics/audio\np2,Bose Speaker,Bose\np3,Linksys Switch,Linksys,49.99,computers/networking\n",
    );
    let index = dir.path().join("idx");
    let report = dir.path().join("r.jsonl");
    ok(&["ingest", "--index", s(&index), s(&csv), "--report", s(&report), "--progress", "none"]);
    let rejected = report_rows(&report);
    assert_eq!(rejected.len(), 1);
    assert_eq!((rejected[0]["line"].as_u64(), rejected[0]["code"].as_str()), (Some(3), Some("column_count")));
    assert_eq!(rejected[0]["reason"], "expected 5 CSV columns (as in the header), found 3");
    assert_eq!(num_docs(&index), 2);
    assert_eq!(search_ids(&index, "switch", &["--filter", "category=computers", "--filter", "price<100"]), ["p3"]);
}

#[test]
fn reingesting_the_same_file_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (0..50).map(|i| format!("{{\"id\":\"d{i}\",\"title\":\"item {i} widget\"}}\n")).collect();
    let file = write(dir.path(), "rows.jsonl", rows);
    let index = dir.path().join("idx");
    ok(&["ingest", "--index", s(&index), s(&file), "--batch-size", "7", "--progress", "none"]);
    let before = search_ids(&index, "widget", &[]);
    assert_eq!(num_docs(&index), 50);

    let again = run(&["ingest", "--index", s(&index), s(&file), "--progress", "log"]);
    assert!(again.status.success());
    assert!(stderr(&again).contains("already ingested (50 docs); nothing to do"), "{}", stderr(&again));
    assert_eq!(num_docs(&index), 50);

    ok(&["ingest", "--index", s(&index), s(&file), "--force", "--progress", "none"]);
    assert_eq!(num_docs(&index), 50);
    let mut after = search_ids(&index, "widget", &[]);
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after);
}

#[test]
fn upsert_replaces_by_id_and_delete_removes() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("idx");
    let a = write(
        dir.path(),
        "a.jsonl",
        "{\"id\":\"p1\",\"title\":\"Sony turntable\",\"price\":100}\n{\"id\":\"p2\",\"title\":\"Bose speaker\"}\n",
    );
    let b = write(dir.path(), "b.jsonl", "{\"id\":\"p1\",\"title\":\"Technics turntable\",\"price\":80,\"extra_field\":{\"kept\":[1,2]}}\n{\"id\":\"p3\",\"title\":\"Denon receiver\"}\n");
    ok(&["ingest", "--index", s(&index), s(&a), "--progress", "none"]);
    ok(&["ingest", "--index", s(&index), s(&b), "--progress", "none"]);
    assert_eq!(num_docs(&index), 3);
    assert!(search_ids(&index, "sony", &[]).is_empty(), "the old version of p1 is gone");
    let out: serde_json::Value =
        serde_json::from_str(&ok(&["search", "--index", s(&index), "technics", "--json"])).unwrap();
    let doc = &out["hits"][0]["document"];
    assert_eq!(doc["id"], "p1");
    assert_eq!(doc["price"], 80.0);
    assert_eq!(doc["extra_field"], serde_json::json!({"kept": [1, 2]}), "unknown fields come back untouched");

    let out = ok(&["delete", "--index", s(&index), "p2", "nope"]);
    assert!(out.contains("deleted 1 documents; index now holds 2"), "{out}");
    assert!(out.contains("not found (1): nope"), "{out}");
    assert!(search_ids(&index, "speaker", &[]).is_empty());
}

#[test]
fn gzip_files_and_stdin_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..20 {
        writeln!(gz, "{{\"id\":\"g{i}\",\"title\":\"gzipped row\"}}").unwrap();
    }
    let file = write(dir.path(), "rows.jsonl.gz", gz.finish().unwrap());
    let index = dir.path().join("idx");
    ok(&["ingest", "--index", s(&index), s(&file), "--progress", "none"]);
    assert_eq!(num_docs(&index), 20);

    let mut child = crate::sieve()
        .args(["ingest", "--index", s(&index), "-", "--format", "csv", "--progress", "none"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"id,title\ns1,from stdin\ns2,also stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(num_docs(&index), 22);
    assert_eq!(search_ids(&index, "stdin", &[]).len(), 2);
}

/// `--embedder` on an index that already holds documents without embeddings is refused before anything is
/// written: those documents would never reach the graph (their file is not read again), and dense search would
/// miss them without a word. Searching such an index with `--embedder` is refused the same way.
#[test]
fn an_embedder_is_refused_to_an_index_already_holding_documents_without_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let index = ingested(
        dir.path(),
        "a.jsonl",
        "{\"id\":\"a\",\"title\":\"hello world\"}\n{\"id\":\"b\",\"title\":\"hello there\"}\n",
    );

    let more = write(dir.path(), "b.jsonl", "{\"id\":\"c\",\"title\":\"hello again\"}\n");
    let o = run(&[
        "ingest",
        "--index",
        s(&index),
        s(&more),
        "--embedder",
        "minilm",
        "--device",
        "cpu",
        "--progress",
        "none",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("holds 2 documents without embeddings") && e.contains("new index"), "{e}");
    assert!(!index.join("vectors").exists(), "no dense side was started");
    assert_eq!(num_docs(&index), 2, "nothing was written");

    let o = run(&["search", "--index", s(&index), "hello", "--embedder", "minilm"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has no embeddings to search"), "{}", stderr(&o));
    // a graph setting with no graph to shape is refused too, not ignored
    let o = run(&["ingest", "--index", s(&index), s(&more), "--hnsw-m", "32", "--progress", "none"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--hnsw-m 32 shapes the vector graph"), "{}", stderr(&o));
    // without the flags, the same ingest goes on as BM25 only
    ok(&["ingest", "--index", s(&index), s(&more), "--progress", "none"]);
    assert_eq!(num_docs(&index), 3);
}

/// A refused run writes nothing: no index folder for a file that cannot be read as documents (before, an empty
/// file still created the index).
#[test]
fn a_refused_run_creates_no_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("idx");
    let cases = [
        ("empty.jsonl", "", "the input is empty"),
        ("array.json", "[\n  {\"id\": \"a\"}\n]\n", "line 1 starts a JSON array"),
        ("dup.csv", "id,title,title\np1,a,b\n", "names column \"title\" twice"),
        ("noid.csv", "sku,title\n1,x\n", "CSV header has no `id` column"),
    ];
    for (name, text, expect) in cases {
        let file = write(dir.path(), name, text);
        let out = run(&["ingest", "--index", s(&index), s(&file)]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(stderr(&out).contains(expect), "{name}: {}", stderr(&out));
        assert!(!index.exists(), "{name}: the refused run created {}", index.display());
    }
}

/// BM25 settings shape a new index; given for an existing one they must agree with it, or the run is refused
/// (they were silently ignored).
#[test]
fn settings_flags_that_an_existing_index_would_ignore_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rows = "{\"id\":\"a\",\"title\":\"turntable\"}\n";
    let file = write(dir.path(), "a.jsonl", rows);
    let index = dir.path().join("idx");
    ok(&["ingest", "--index", s(&index), s(&file), "--k1", "1.2", "--progress", "none"]);
    let more = write(dir.path(), "b.jsonl", "{\"id\":\"b\",\"title\":\"speaker\"}\n");
    // the same value is fine
    ok(&["ingest", "--index", s(&index), s(&more), "--k1", "1.2", "--progress", "none"]);
    for (flag, value, has) in [("--k1", "0.9", "1.2"), ("--b", "0.75", "0.4"), ("--title-boost", "1", "2")] {
        let out = run(&["ingest", "--index", s(&index), s(&more), flag, value, "--force"]);
        assert_eq!(out.status.code(), Some(1), "{flag}");
        let e = stderr(&out);
        assert!(
            e.contains(&format!("{flag} {value}: index")) && e.contains(&format!("created with {flag} {has}")),
            "{e}"
        );
    }
}

/// `--index` naming a folder that holds other files is refused instead of being turned into an index.
#[test]
fn a_foreign_folder_is_not_turned_into_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("documents");
    std::fs::create_dir_all(&folder).unwrap();
    write(&folder, "notes.txt", "mine");
    let file = write(dir.path(), "a.jsonl", "{\"id\":\"a\"}\n");
    let out = run(&["ingest", "--index", s(&folder), s(&file)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("found a folder holding other files (notes.txt)"), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["notes.txt"], "nothing was written into it");
}

/// Stdin has no file name to tell its format: without `--format` its first byte does (it used to be taken as
/// JSON lines, and a CSV rejected every row with exit 0).
#[test]
fn stdin_without_format_is_detected_from_its_first_byte() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("idx");
    let pipe = |bytes: &[u8]| {
        let mut child = crate::sieve()
            .args(["ingest", "--index", s(&index), "-", "--progress", "none"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = pipe(b"id,title\ns1,csv from stdin\ns2,also csv\n");
    assert!(out.status.success() && stderr(&out).contains("2 docs ingested, 0 rejected"), "{}", stderr(&out));
    let out = pipe(b"\n  {\"id\":\"j1\",\"title\":\"json from stdin\"}\n");
    assert!(out.status.success() && stderr(&out).contains("1 docs ingested, 0 rejected"), "{}", stderr(&out));
    assert_eq!(num_docs(&index), 3);
}

/// One rule for an id given twice in a file, with or without an interruption: the first copy wins and the
/// later one is rejected. (After a stop and a resume, the later copy used to replace the first silently.)
#[test]
fn the_first_copy_of_a_duplicate_id_wins_with_or_without_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "d.jsonl",
        "{\"id\":\"x\",\"title\":\"first\"}\n{\"id\":\"bad\"\n{\"id\":\"x\",\"title\":\"second\"}\n",
    );
    let title = |index: &std::path::Path| {
        let t = sieve_text::TextIndex::open(index).unwrap();
        t.get("x").unwrap().unwrap().title.unwrap()
    };
    // straight through
    let straight = dir.path().join("straight");
    let report = dir.path().join("straight.rejected.jsonl");
    ok(&["ingest", "--index", s(&straight), s(&file), "--report", s(&report), "--progress", "none"]);
    assert_eq!(title(&straight), "first");
    let codes: Vec<String> = report_rows(&report).iter().map(|r| r["code"].as_str().unwrap().to_owned()).collect();
    assert_eq!(codes, ["malformed_json", "duplicate_id"]);
    // stopped after line 1 (--on-error fail commits the rows before the bad one), then resumed
    let resumed = dir.path().join("resumed");
    let out = run(&["ingest", "--index", s(&resumed), s(&file), "--on-error", "fail"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = dir.path().join("resumed.rejected.jsonl");
    ok(&["ingest", "--index", s(&resumed), s(&file), "--report", s(&report), "--progress", "none"]);
    assert_eq!(title(&resumed), "first", "the resume applies the same rule");
    let rows = report_rows(&report);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[1]["code"].as_str(), rows[1]["line"].as_u64()), (Some("duplicate_id"), Some(3)));
    assert!(rows[1]["reason"].as_str().unwrap().contains("already given on line 1"), "{rows:?}");
}

#[test]
fn html_in_titles_and_bodies_becomes_text_unless_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let rows = concat!(
        r#"{"id": "n1", "title": "Markets &amp; bonds", "body": "<p>Stocks <b>rose</b>.</p><script>track()</script><p>Oil &lt;$80&gt;</p>"}"#,
        "\n",
        r#"{"id": "n2", "title": "price < 200", "body": "plain text, a<5"}"#,
        "\n"
    );
    let index = crate::ingested(dir.path(), "news.jsonl", rows);
    let out: serde_json::Value =
        serde_json::from_str(&ok(&["search", "--index", s(&index), "stocks", "--json"])).unwrap();
    let doc = &out["hits"][0]["document"];
    assert_eq!(
        (doc["title"].as_str(), doc["body"].as_str()),
        (Some("Markets & bonds"), Some("Stocks rose.\nOil <$80>"))
    );
    assert!(doc.get("body_html").is_none(), "the raw field is kept only when asked");
    assert!(search_ids(&index, "track", &[]).is_empty(), "a script's text is not indexed");
    let plain: serde_json::Value =
        serde_json::from_str(&ok(&["search", "--index", s(&index), "plain", "--json"])).unwrap();
    assert_eq!(plain["hits"][0]["document"]["body"], "plain text, a<5", "text with `<` is left alone");

    // per ingest: keep the raw field, or leave markup as it is
    let more = write(dir.path(), "more.jsonl", "{\"id\": \"n3\", \"title\": \"t\", \"body\": \"<i>kept</i> raw\"}\n");
    ok(&["ingest", "--index", s(&index), s(&more), "--keep-raw-html", "true", "--progress", "none"]);
    let out: serde_json::Value =
        serde_json::from_str(&ok(&["search", "--index", s(&index), "kept", "--json"])).unwrap();
    let doc = &out["hits"][0]["document"];
    assert_eq!((doc["body"].as_str(), doc["body_html"].as_str()), (Some("kept raw"), Some("<i>kept</i> raw")));
    let raw = write(dir.path(), "raw.jsonl", "{\"id\": \"n4\", \"title\": \"t\", \"body\": \"<em>as is</em>\"}\n");
    ok(&["ingest", "--index", s(&index), s(&raw), "--html-clean", "false", "--progress", "none"]);
    let out: serde_json::Value = serde_json::from_str(&ok(&["search", "--index", s(&index), "em", "--json"])).unwrap();
    assert_eq!(out["hits"][0]["document"]["body"], "<em>as is</em>");
}

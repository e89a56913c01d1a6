//! Evaluation datasets on disk, in either layout:
//!
//! - Sieve / `shared/data`: `corpus.jsonl` (`id`, `title`, `body`, other fields), `queries.jsonl` (`id`,
//!   `text`), `qrels.tsv` (`query_id<TAB>doc_id<TAB>grade`, no header);
//! - BEIR: `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`, `text`), `qrels/test.tsv` (with a
//!   header row).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::metrics::Judgments;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an evaluation dataset; expected {expected}")]
    Layout { path: String, expected: &'static str },
    #[error("{path}:{line}: expected {expected}, found {found:?}")]
    Row { path: String, line: usize, expected: &'static str, found: String },
}

/// Which layout a dataset folder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Sieve,
    Beir,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub id: String,
    pub text: String,
}

/// A dataset folder: where its corpus is, its queries, and their judgments.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub dir: PathBuf,
    pub layout: Layout,
    pub queries: Vec<Query>,
    pub qrels: HashMap<String, Judgments>,
}

impl Dataset {
    pub fn open(dir: &Path) -> Result<Dataset, DatasetError> {
        let layout = if dir.join("qrels.tsv").is_file() {
            Layout::Sieve
        } else if dir.join("qrels").join("test.tsv").is_file() {
            Layout::Beir
        } else {
            return Err(DatasetError::Layout {
                path: dir.display().to_string(),
                expected: "corpus.jsonl, queries.jsonl and qrels.tsv (or BEIR's qrels/test.tsv)",
            });
        };
        for needed in ["corpus.jsonl", "queries.jsonl"] {
            if !dir.join(needed).is_file() {
                return Err(DatasetError::Layout {
                    path: dir.display().to_string(),
                    expected: "corpus.jsonl, queries.jsonl and qrels.tsv (or BEIR's qrels/test.tsv)",
                });
            }
        }
        let qrels_path = match layout {
            Layout::Sieve => dir.join("qrels.tsv"),
            Layout::Beir => dir.join("qrels").join("test.tsv"),
        };
        let qrels = read_qrels(&qrels_path)?;
        let queries = read_queries(&dir.join("queries.jsonl"))?;
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Dataset { name, dir: dir.to_path_buf(), layout, queries, qrels })
    }

    pub fn corpus_path(&self) -> PathBuf {
        self.dir.join("corpus.jsonl")
    }

    /// The queries that have at least one relevant (grade > 0) judgment; the others are skipped.
    pub fn judged_queries(&self) -> Vec<&Query> {
        self.queries.iter().filter(|q| self.qrels.get(&q.id).is_some_and(|j| j.values().any(|&g| g > 0))).collect()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.display().to_string(), source }
}

fn read_qrels(path: &Path) -> Result<HashMap<String, Judgments>, DatasetError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let mut out: HashMap<String, Judgments> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        if line.trim().is_empty() {
            continue;
        }
        let bad = || DatasetError::Row {
            path: path.display().to_string(),
            line: i + 1,
            expected: "query_id<TAB>doc_id<TAB>grade",
            found: line.to_owned(),
        };
        if cols.len() < 3 {
            return Err(bad());
        }
        // TREC qrels have an iteration column: query 0 doc grade.
        let (q, d, g) = if cols.len() >= 4 { (cols[0], cols[2], cols[3]) } else { (cols[0], cols[1], cols[2]) };
        let grade = match g.parse::<f64>() {
            Ok(g) if g.is_finite() => g.max(0.0) as u32,
            _ if i == 0 => continue, // a header row (BEIR: query-id corpus-id score)
            _ => return Err(bad()),
        };
        let slot = out.entry(q.to_owned()).or_default().entry(d.to_owned()).or_insert(0);
        *slot = (*slot).max(grade);
    }
    Ok(out)
}

fn read_queries(path: &Path) -> Result<Vec<Query>, DatasetError> {
    let file = fs::File::open(path).map_err(io(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = || DatasetError::Row {
            path: path.display().to_string(),
            line: i + 1,
            expected: "a JSON object with \"id\" (or \"_id\") and \"text\"",
            found: line.chars().take(80).collect(),
        };
        let v: Value = serde_json::from_str(&line).map_err(|_| bad())?;
        let id = v.get("id").or_else(|| v.get("_id")).and_then(value_as_id).ok_or_else(bad)?;
        let text = v.get("text").and_then(Value::as_str).ok_or_else(bad)?.to_owned();
        out.push(Query { id, text });
    }
    Ok(out)
}

fn value_as_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Rewrites a BEIR corpus row (`_id`, `text`) into a Sieve document object (`id`, `body`).
pub fn beir_row_to_document(mut v: Value) -> Value {
    if let Value::Object(obj) = &mut v {
        if let Some(id) = obj.remove("_id") {
            obj.insert("id".into(), value_as_id(&id).map_or(id, Value::String));
        }
        if let Some(text) = obj.remove("text") {
            obj.insert("body".into(), text);
        }
        obj.remove("metadata");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let sieve = dir.path().join("s");
        fs::create_dir_all(&sieve).unwrap();
        fs::write(sieve.join("corpus.jsonl"), "{\"id\":\"d1\",\"title\":\"t\",\"body\":\"b\"}\n").unwrap();
        fs::write(sieve.join("queries.jsonl"), "{\"id\":\"q1\",\"text\":\"t\"}\n{\"id\":\"q2\",\"text\":\"u\"}\n")
            .unwrap();
        fs::write(sieve.join("qrels.tsv"), "q1\td1\t2\nq2\td1\t0\n").unwrap();
        let ds = Dataset::open(&sieve).unwrap();
        assert_eq!(ds.layout, Layout::Sieve);
        assert_eq!(ds.qrels["q1"]["d1"], 2);
        assert_eq!(ds.judged_queries().len(), 1, "q2 has only a grade-0 judgment");

        let beir = dir.path().join("b");
        fs::create_dir_all(beir.join("qrels")).unwrap();
        fs::write(beir.join("corpus.jsonl"), "{\"_id\":\"7\",\"title\":\"t\",\"text\":\"b\"}\n").unwrap();
        fs::write(beir.join("queries.jsonl"), "{\"_id\":\"q1\",\"text\":\"t\"}\n").unwrap();
        fs::write(beir.join("qrels").join("test.tsv"), "query-id\tcorpus-id\tscore\nq1\t7\t1\n").unwrap();
        let ds = Dataset::open(&beir).unwrap();
        assert_eq!(ds.layout, Layout::Beir);
        assert_eq!(ds.qrels["q1"]["7"], 1);
        let doc = beir_row_to_document(serde_json::json!({"_id": "7", "title": "t", "text": "b"}));
        assert_eq!(doc, serde_json::json!({"id": "7", "title": "t", "body": "b"}));
    }

    #[test]
    fn a_folder_without_judgments_is_refused_with_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let err = Dataset::open(dir.path()).unwrap_err();
        assert!(err
            .to_string()
            .ends_with("expected corpus.jsonl, queries.jsonl and qrels.tsv (or BEIR's qrels/test.tsv)"));
    }
}

//! Write tasks: every document write is a task with an id, persisted before it is acknowledged and applied
//! by one ingest thread per index, in order. An upsert's body is stored as an NDJSON file and ingested with
//! the same checkpointed loop as `sieve ingest`, so a task cut short by a shutdown or a crash resumes from
//! its last commit when the server starts again (it is reported with `resumed`), and never half-applies.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
pub use sieve_api::{RowFailure, Task, TaskKind, TaskStatus};
use sieve_core::{Checkpoint, DocId};
use sieve_ingest::{ingest_source, BatchSink, Event, Format, IngestOptions, Input, Progress, RejectReport};
use sieve_pipeline::{Engine, PipelineError, SavePolicy};
use sieve_text::{TextError, WriterOptions};

use crate::config::ServerConfig;

/// Rejected rows kept on a task (all of them are in its reject file).
const MAX_ERRORS: usize = 100;
const TASK_DIR: &str = "tasks";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Task problems the HTTP layer reports.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("the server is shutting down; no new writes are accepted")]
    ShuttingDown,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> TaskError + '_ {
    move |e| TaskError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// All tasks of all indexes, their files, and a way to wait for them.
#[derive(Debug)]
pub struct TaskStore {
    tasks: Mutex<BTreeMap<u64, Task>>,
    dirs: BTreeMap<String, PathBuf>,
    next_id: AtomicU64,
    changed: tokio::sync::Notify,
    shutting_down: AtomicBool,
    /// Finished tasks kept; see [`TaskStore::prune`].
    keep_finished: usize,
}

impl TaskStore {
    /// Reads the tasks recorded under each index (`INDEX/tasks/`); returns the store and, per index, the
    /// unfinished tasks to run again, in order. At most `keep_finished` finished tasks are kept (at least 1).
    pub fn open(
        indexes: &[(String, PathBuf)],
        keep_finished: usize,
    ) -> Result<(TaskStore, BTreeMap<String, Vec<u64>>), TaskError> {
        let mut tasks = BTreeMap::new();
        let mut dirs = BTreeMap::new();
        let mut pending: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (name, path) in indexes {
            let dir = path.join(TASK_DIR);
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
                let p = entry.map_err(io_err(&dir))?.path();
                if p.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let raw = std::fs::read(&p).map_err(io_err(&p))?;
                let Ok(mut task) = serde_json::from_slice::<Task>(&raw) else {
                    tracing::warn!("{}: not a task record; ignored", p.display());
                    continue;
                };
                if !task.status.finished() {
                    task.resumed += 1;
                    task.status = TaskStatus::Enqueued;
                    tracing::info!("task {} ({}) was interrupted; resuming it", task.id, name);
                    pending.entry(name.clone()).or_default().push(task.id);
                }
                tasks.insert(task.id, task);
            }
            dirs.insert(name.clone(), dir);
        }
        pending.values_mut().for_each(|v| v.sort_unstable());
        let next = tasks.keys().next_back().map_or(1, |k| k + 1);
        let store = TaskStore {
            tasks: Mutex::new(tasks),
            dirs,
            next_id: AtomicU64::new(next),
            changed: tokio::sync::Notify::new(),
            shutting_down: AtomicBool::new(false),
            keep_finished: keep_finished.max(1),
        };
        for ids in pending.values() {
            for id in ids {
                store.persist(*id)?;
            }
        }
        store.prune();
        Ok((store, pending))
    }

    /// Removes the oldest finished tasks past `keep_finished`, with their files (record, reject report, and
    /// the body a failed upsert kept). The newest task is never removed: the next id is one past the newest
    /// record, so ids are not reused after a restart. The checkpoint entries of removed bodies are dropped by
    /// the next commit of that index ([`Pruned`]).
    fn prune(&self) {
        let removed = self.take_excess(&mut self.tasks.lock().unwrap_or_else(|p| p.into_inner()), None);
        self.remove_files(&removed);
    }

    /// Takes the oldest finished tasks past the limit out of `tasks`, sparing the newest task and `spare` (a
    /// task that just finished, whose waiters have yet to see it).
    fn take_excess(&self, tasks: &mut BTreeMap<u64, Task>, spare: Option<u64>) -> Vec<Task> {
        let newest = tasks.keys().next_back().copied();
        let finished: Vec<u64> = tasks.values().filter(|t| t.status.finished()).map(|t| t.id).collect();
        let excess = finished.len().saturating_sub(self.keep_finished);
        finished
            .into_iter()
            .filter(|&id| Some(id) != newest && Some(id) != spare)
            .take(excess)
            .filter_map(|id| tasks.remove(&id))
            .collect()
    }

    fn remove_files(&self, removed: &[Task]) {
        for t in removed {
            let record = self.dir(&t.index).join(format!("{}.json", t.id));
            for f in [record, self.rejects_path(&t.index, t.id), self.payload_path(&t.index, t.id)] {
                match std::fs::remove_file(&f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        tracing::warn!("task {}: could not remove {}: {e}", t.id, f.display())
                    }
                    _ => {}
                }
            }
        }
    }

    fn dir(&self, index: &str) -> &Path {
        self.dirs.get(index).expect("index known to the store")
    }

    /// Where task `id`'s body is stored: `{id}.ndjson`, or `{id}.csv` for a CSV upload.
    pub fn payload_path(&self, index: &str, id: u64) -> PathBuf {
        let csv = self.dir(index).join(format!("{id}.csv"));
        if csv.is_file() {
            return csv;
        }
        self.dir(index).join(format!("{id}.ndjson"))
    }

    fn rejects_path(&self, index: &str, id: u64) -> PathBuf {
        self.dir(index).join(format!("{id}.rejects.jsonl"))
    }

    pub fn get(&self, id: u64) -> Option<Task> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// The most recent tasks, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Task> {
        let t = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        t.values().rev().take(limit).cloned().collect()
    }

    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let t = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::from([("enqueued", 0), ("processing", 0), ("succeeded", 0), ("failed", 0)]);
        for task in t.values() {
            let key = match task.status {
                TaskStatus::Enqueued => "enqueued",
                TaskStatus::Processing => "processing",
                TaskStatus::Succeeded => "succeeded",
                TaskStatus::Failed => "failed",
            };
            *out.entry(key).or_default() += 1;
        }
        out
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Records a new upsert whose NDJSON body (`rows` lines) is written durably first.
    pub fn create_upsert(&self, index: &str, ndjson: &[u8], rows: u64) -> Result<Task, TaskError> {
        self.create_upsert_as(index, ndjson, rows, Format::Jsonl)
    }

    /// An upsert whose body is JSON lines or CSV with a header row (the web UI's uploads), stored in that
    /// format and read by the same row reader as `sieve ingest`, so a bad row is named by its line.
    pub fn create_upsert_as(&self, index: &str, body: &[u8], rows: u64, format: Format) -> Result<Task, TaskError> {
        if self.shutting_down() {
            return Err(TaskError::ShuttingDown);
        }
        let id = self.next_id.fetch_add(1, Ordering::AcqRel);
        let ext = if format == Format::Csv { "csv" } else { "ndjson" };
        let path = self.dir(index).join(format!("{id}.{ext}"));
        let mut f = std::fs::File::create(&path).map_err(io_err(&path))?;
        f.write_all(body).and_then(|_| f.sync_all()).map_err(io_err(&path))?;
        self.create(new_task(id, index, TaskKind::Upsert, rows, None))
    }

    pub fn create_delete(&self, index: &str, doc: &DocId) -> Result<Task, TaskError> {
        if self.shutting_down() {
            return Err(TaskError::ShuttingDown);
        }
        let id = self.next_id.fetch_add(1, Ordering::AcqRel);
        self.create(new_task(id, index, TaskKind::Delete, 1, Some(doc.as_str().to_owned())))
    }

    fn create(&self, task: Task) -> Result<Task, TaskError> {
        let id = task.id;
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).insert(id, task.clone());
        self.persist(id)?;
        Ok(task)
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Task)) {
        if let Some(t) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
            f(t);
        }
        self.changed.notify_waiters();
    }

    /// Writes the task's record (atomically: temp file, then rename).
    fn persist(&self, id: u64) -> Result<(), TaskError> {
        let Some(task) = self.get(id) else { return Ok(()) };
        let dir = self.dir(&task.index);
        let (tmp, path) = (dir.join(format!("{id}.json.tmp")), dir.join(format!("{id}.json")));
        let bytes = serde_json::to_vec_pretty(&task).expect("task serializes");
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    fn persist_logged(&self, id: u64) {
        if let Err(e) = self.persist(id) {
            tracing::error!("task {id}: could not record its state: {e}");
        }
    }

    /// Waits until task `id` has finished or `timeout` passed; returns it as it is then.
    pub async fn wait(&self, id: u64, timeout: Duration) -> Option<Task> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let task = self.get(id)?;
            if task.status.finished() || task.blocked.is_some() {
                return Some(task);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.get(id);
            }
        }
    }

    /// Runs one task against `engine` (on the index's ingest thread). A task that cannot get the index's
    /// writer (another process holds it) goes back to `enqueued`, says why in `blocked`, and is tried again
    /// later; it is never failed for that.
    pub fn run(&self, engine: &Engine, id: u64, batch_size: usize) -> Ran {
        let Some(task) = self.get(id) else { return Ran::Finished };
        self.update(id, |t| {
            t.status = TaskStatus::Processing;
            t.started_at = Some(now_ms());
        });
        self.persist_logged(id);
        let outcome = match task.kind {
            TaskKind::Upsert => self.run_upsert(engine, &task, batch_size),
            TaskKind::Delete => self.run_delete(engine, &task),
        };
        let outcome = match outcome {
            Err(RunError::Locked(why)) => {
                let first = self.get(id).is_some_and(|t| t.blocked.is_none());
                self.update(id, |t| {
                    t.status = TaskStatus::Enqueued;
                    t.started_at = None;
                    t.blocked = Some(why.clone());
                });
                self.persist_logged(id);
                self.changed.notify_waiters();
                if first {
                    tracing::warn!("index {}: task {id} waits for the writer lock: {why}", task.index);
                }
                return Ran::Blocked;
            }
            Err(RunError::Failed(e)) => Err(e),
            Ok(()) => Ok(()),
        };
        self.update(id, |t| t.blocked = None);
        let synced = outcome.and_then(|()| engine.sync_vectors().map(|_| ()).map_err(|e| e.to_string()));
        self.finish(id, &task.index, synced);
        Ran::Finished
    }

    /// Records how task `id` ended and makes it durable, removes the body of a success and the tasks now past
    /// the retention limit, and only then wakes the waiters, so what they see next is settled.
    fn finish(&self, id: u64, index: &str, outcome: Result<(), String>) {
        let succeeded = outcome.is_ok();
        let removed = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = tasks.get_mut(&id) {
                t.finished_at = Some(now_ms());
                match outcome {
                    Ok(()) => t.status = TaskStatus::Succeeded,
                    Err(e) => {
                        t.status = TaskStatus::Failed;
                        t.error = Some(e);
                    }
                }
            }
            self.take_excess(&mut tasks, Some(id))
        };
        self.persist_logged(id);
        if succeeded {
            let _ = std::fs::remove_file(self.payload_path(index, id));
        }
        self.remove_files(&removed);
        self.changed.notify_waiters();
    }

    fn run_upsert(&self, engine: &Engine, task: &Task, batch_size: usize) -> Result<(), RunError> {
        let payload = self.payload_path(&task.index, task.id);
        if !payload.is_file() {
            return Err(format!("the task's stored body {} is missing", payload.display()).into());
        }
        let key = std::fs::canonicalize(&payload).map_err(|e| e.to_string())?.display().to_string();
        let mut inner = engine.sink(WriterOptions { threads: 1, memory_bytes: 64 << 20 }).map_err(RunError::sink)?;
        let mut sink = Pruned::new(&mut inner, self.dir(&task.index));
        let format = if payload.extension().is_some_and(|e| e == "csv") { Format::Csv } else { Format::Jsonl };
        let options = IngestOptions { batch_size, format: Some(format), ..IngestOptions::default() };
        let rejects = self.rejects_path(&task.index, task.id);
        let mut report = RejectReport::new(&rejects);
        let mut progress = TaskProgress { store: self, id: task.id, base: (0, 0) };
        if let Some(p) = sieve_ingest::BatchSink::committed(&sink).get(&key) {
            progress.base = (p.docs, p.rejected);
            self.update(task.id, |t| (t.read, t.indexed, t.rejected) = (p.line, p.docs, p.rejected));
        }
        let result = ingest_source(&mut sink, &Input::File(payload), &options, &mut report, &mut progress);
        let finished = inner.finish();
        let errors = read_rejects(&rejects);
        self.update(task.id, |t| t.errors = errors);
        result.map_err(|e| e.to_string())?;
        Ok(finished.map_err(|e| e.to_string())?)
    }

    fn run_delete(&self, engine: &Engine, task: &Task) -> Result<(), RunError> {
        let id = task.document_id.as_deref().ok_or("a delete task without a document id")?;
        let id = DocId::parse(id, usize::MAX).map_err(|e| e.to_string())?;
        let present = engine.text().get_many(std::slice::from_ref(&id)).map_err(|e| e.to_string())?;
        let mut inner = engine.sink(WriterOptions { threads: 1, memory_bytes: 32 << 20 }).map_err(RunError::sink)?;
        inner.delete(&id);
        let mut sink = Pruned::new(&mut inner, self.dir(&task.index));
        let checkpoint = sink.committed();
        sink.commit(checkpoint).map_err(|e| e.to_string())?;
        inner.finish().map_err(|e| e.to_string())?;
        let deleted = present.first().is_some_and(Option::is_some) as u64;
        self.update(task.id, |t| t.deleted = deleted);
        Ok(())
    }
}

/// What [`TaskStore::run`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// Succeeded or failed; the next task may run.
    Finished,
    /// Waiting for the index's writer lock; try it again later, before any later task.
    Blocked,
}

/// Why a task did not run through.
enum RunError {
    /// Another process holds the index's writer lock.
    Locked(String),
    Failed(String),
}

impl RunError {
    fn sink(e: PipelineError) -> RunError {
        match e {
            PipelineError::Text(e @ TextError::Locked { .. }) => RunError::Locked(e.to_string()),
            e => RunError::Failed(e.to_string()),
        }
    }
}

impl From<String> for RunError {
    fn from(e: String) -> RunError {
        RunError::Failed(e)
    }
}

impl From<&str> for RunError {
    fn from(e: &str) -> RunError {
        RunError::Failed(e.to_owned())
    }
}

fn new_task(id: u64, index: &str, kind: TaskKind, received: u64, document_id: Option<String>) -> Task {
    Task {
        id,
        index: index.to_owned(),
        kind,
        status: TaskStatus::Enqueued,
        received,
        read: 0,
        indexed: 0,
        rejected: 0,
        deleted: 0,
        errors: Vec::new(),
        error: None,
        document_id,
        blocked: None,
        resumed: 0,
        enqueued_at: now_ms(),
        started_at: None,
        finished_at: None,
    }
}

fn read_rejects(path: &Path) -> Vec<RowFailure> {
    #[derive(Deserialize)]
    struct Line {
        line: u64,
        code: String,
        reason: String,
    }
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .take(MAX_ERRORS)
        .map(|l| RowFailure { line: l.line, code: l.code, reason: l.reason })
        .collect()
}

/// An index's sink that leaves the checkpoint entries of finished task bodies out of every commit. A task's
/// body file is removed only once its success is recorded (or its record is pruned), so nothing can resume it
/// after that; without this the commit payload would grow by one entry per write, forever. Entries of other
/// sources (files given to `sieve ingest`) are kept.
struct Pruned<'a, S> {
    inner: &'a mut S,
    /// The index's task directory, canonical (the form checkpoint keys take).
    dir: Option<PathBuf>,
}

impl<'a, S> Pruned<'a, S> {
    fn new(inner: &'a mut S, dir: &Path) -> Self {
        Pruned { inner, dir: std::fs::canonicalize(dir).ok() }
    }

    fn stale(&self, source: &str) -> bool {
        let path = Path::new(source);
        self.dir.as_deref().is_some_and(|d| path.parent() == Some(d)) && !path.exists()
    }
}

impl<S: BatchSink> BatchSink for Pruned<'_, S> {
    type Error = S::Error;

    fn committed(&self) -> Checkpoint {
        let mut c = self.inner.committed();
        c.sources.retain(|s| !self.stale(&s.source));
        c
    }

    fn upsert(&mut self, docs: &[sieve_core::Document]) -> Result<(), Self::Error> {
        self.inner.upsert(docs)
    }

    fn commit(&mut self, checkpoint: Checkpoint) -> Result<(), Self::Error> {
        self.inner.commit(checkpoint)
    }
}

/// Feeds the ingest loop's progress into the task record.
struct TaskProgress<'s> {
    store: &'s TaskStore,
    id: u64,
    /// Counts committed by earlier runs of this task.
    base: (u64, u64),
}

impl Progress for TaskProgress<'_> {
    fn event(&mut self, event: Event<'_>) {
        let base = self.base;
        match event {
            Event::Read { rows, .. } => self.store.update(self.id, |t| t.read = t.read.max(rows)),
            Event::Committed { docs, rejected, line, .. } => {
                self.store.update(self.id, |t| {
                    t.read = t.read.max(line);
                    t.indexed = base.0 + docs;
                    t.rejected = base.1 + rejected;
                });
                self.store.persist_logged(self.id);
            }
            Event::Started { .. } | Event::UpToDate { .. } => {}
        }
    }
}

/// The ingest thread of one index: runs its tasks in order until the queue closes. It wakes every [`TICK`]
/// to follow commits other processes made to the index, and to retry a task blocked on the writer lock (before
/// any later task). Under an interval save policy it also writes the vector graph the interval held back, once
/// no task ran for an interval, and when the queue closes (shutdown).
pub fn spawn_ingest_thread(
    name: &str,
    store: Arc<TaskStore>,
    engine: Arc<Engine>,
    config: &ServerConfig,
) -> (mpsc::Sender<u64>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<u64>();
    let batch_size = config.ingest_batch_size;
    let idle = match config.vector_save() {
        SavePolicy::EveryChange => None,
        SavePolicy::Interval(every) => Some(every),
    };
    let name = name.to_owned();
    let handle = std::thread::Builder::new()
        .name(format!("ingest-{name}"))
        .spawn(move || {
            let mut thread = IngestThread { name, store, engine, batch_size, idle, backlog: VecDeque::new() };
            thread.serve(&rx);
        })
        .expect("spawn ingest thread");
    (tx, handle)
}

/// How often an index's ingest thread wakes without work: to follow commits other processes made, to retry a
/// task blocked on the writer lock, and to save the vector graph once writes paused.
const TICK: Duration = Duration::from_secs(1);

/// One index's ingest thread: runs its tasks in order, one at a time.
struct IngestThread {
    name: String,
    store: Arc<TaskStore>,
    engine: Arc<Engine>,
    batch_size: usize,
    /// `SavePolicy::Interval`: the graph is saved once writes paused this long.
    idle: Option<Duration>,
    /// Tasks received and not run yet, in order; the first may be blocked on the writer lock.
    backlog: VecDeque<u64>,
}

impl IngestThread {
    fn serve(&mut self, rx: &mpsc::Receiver<u64>) {
        let mut blocked = false;
        let mut unsaved_since: Option<Instant> = None;
        loop {
            let wait = if self.backlog.is_empty() || blocked { TICK } else { Duration::ZERO };
            match rx.recv_timeout(wait) {
                Ok(id) => {
                    self.backlog.push_back(id);
                    if !blocked {
                        continue; // take everything that is waiting, then run
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.follow_commits();
            if let (Some(idle), Some(since)) = (self.idle, unsaved_since) {
                if since.elapsed() >= idle {
                    self.flush();
                    unsaved_since = None;
                }
            }
            let Some(&id) = self.backlog.front() else { continue };
            if self.store.shutting_down() {
                // left enqueued on disk: the next start runs it
                self.backlog.pop_front();
                continue;
            }
            blocked = self.run(id) == Ran::Blocked;
            if !blocked {
                self.backlog.pop_front();
                unsaved_since = Some(Instant::now());
            }
        }
        if self.idle.is_some() {
            self.flush();
        }
    }

    fn run(&self, id: u64) -> Ran {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.store.run(&self.engine, id, self.batch_size)
        }));
        run.unwrap_or_else(|_| {
            self.store.update(id, |t| {
                t.status = TaskStatus::Failed;
                t.error = Some("the ingest thread panicked on this task".into());
                t.finished_at = Some(now_ms());
            });
            self.store.persist_logged(id);
            Ran::Finished
        })
    }

    /// Another process (`sieve ingest`, `sieve delete`) may have committed to this index: search and info
    /// then see it within a tick.
    fn follow_commits(&self) {
        match self.engine.follow_commits() {
            Ok(Some(report)) => {
                tracing::info!("index {}: followed commit {} made by another process", self.name, report.generation)
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("index {}: could not follow the latest commit: {e}", self.name),
        }
    }

    fn flush(&self) {
        match self.engine.flush_vectors() {
            Ok(true) => tracing::debug!("index {}: vector graph saved", self.name),
            Ok(false) => {}
            Err(e) => tracing::error!("index {}: could not save the vector graph: {e}", self.name),
        }
    }
}

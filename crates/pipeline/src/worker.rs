//! Model workers: a model lives on its own thread and serves requests from any number of callers, batching
//! whatever is waiting (up to a cost budget, e.g. tokens, and a short wait for company) into one call. The
//! queue in front of it is bounded: a caller that finds it full is told so at once ([`WorkerError::Overloaded`])
//! instead of waiting behind work it cannot outlast. A caller waits at most its own timeout; jobs whose caller
//! gave up (timed out or cancelled, e.g. an HTTP client that disconnected) are dropped before they reach the model.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::stats::Histogram;

/// Why a worker call produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("{worker} did not answer within {millis} ms")]
    Timeout { worker: String, millis: u64 },
    #[error("{worker} failed: {message}")]
    Failed { worker: String, message: String },
    #[error("{worker} has stopped")]
    Stopped { worker: String },
    #[error("{worker} is overloaded: {queued} requests are already queued (limit {limit})")]
    Overloaded { worker: String, queued: usize, limit: usize },
    #[error("the caller of {worker} went away")]
    Cancelled { worker: String },
}

/// Set by a caller that no longer wants its answer (e.g. the HTTP client disconnected); the worker then skips
/// the job, and the waiting call returns [`WorkerError::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// How a worker batches and how much it queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Cost (e.g. tokens) one model call may carry; a single job larger than this still runs, alone.
    pub budget: usize,
    /// How long the first job of a batch waits for others to join it while the budget is not full.
    pub max_wait: Duration,
    /// Jobs that may wait in the queue; past it calls fail fast with [`WorkerError::Overloaded`].
    pub max_queue: usize,
}

impl WorkerOptions {
    pub fn new(budget: usize) -> WorkerOptions {
        WorkerOptions { budget, max_wait: Duration::ZERO, max_queue: usize::MAX }
    }
}

/// What a worker has done, for metrics. Counters only grow; `queued` is the queue depth now.
#[derive(Debug)]
pub struct WorkerStats {
    pub queued: AtomicUsize,
    pub batches: AtomicU64,
    pub jobs: AtomicU64,
    /// Jobs refused because the queue was full.
    pub rejected: AtomicU64,
    /// Jobs dropped before compute because their caller had timed out.
    pub expired: AtomicU64,
    /// Jobs dropped before compute because their caller cancelled (disconnected).
    pub cancelled: AtomicU64,
    /// Jobs per model call.
    pub batch_jobs: Histogram,
    /// Cost (tokens) per model call.
    pub batch_cost: Histogram,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            queued: AtomicUsize::new(0),
            batches: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            batch_jobs: Histogram::new(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            batch_cost: Histogram::new(&[64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0]),
        }
    }
}

/// Where a call's time went: waiting in the queue, then in the model call its job was batched into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallTiming {
    pub queued: Duration,
    pub compute: Duration,
}

type Reply<R> = (Result<R, String>, CallTiming);

struct Envelope<J, R> {
    job: J,
    cost: usize,
    enqueued: Instant,
    deadline: Option<Instant>,
    cancel: Option<CancelToken>,
    reply: mpsc::SyncSender<Reply<R>>,
    /// The caller's span (a request's, with its request id): the model thread logs the job's fate in it.
    span: tracing::Span,
}

struct ReplyTo<R> {
    reply: mpsc::SyncSender<Reply<R>>,
    timing: CallTiming,
    span: tracing::Span,
}

/// The batch a job starts: it and whatever else waits, up to the cost budget, for at most `max_wait`; jobs
/// whose caller cancelled or whose deadline passed are dropped (and counted) before any compute.
fn gather<J, R>(
    rx: &mpsc::Receiver<Envelope<J, R>>,
    first: Envelope<J, R>,
    options: &WorkerOptions,
    st: &WorkerStats,
) -> Vec<Envelope<J, R>> {
    st.queued.fetch_sub(1, Ordering::AcqRel);
    let mut cost = first.cost;
    let mut batch = vec![first];
    let wait_until = Instant::now() + options.max_wait;
    while cost < options.budget {
        let left = wait_until.saturating_duration_since(Instant::now());
        let next = if left.is_zero() { rx.try_recv().ok() } else { rx.recv_timeout(left).ok() };
        let Some(e) = next else { break };
        st.queued.fetch_sub(1, Ordering::AcqRel);
        cost += e.cost;
        batch.push(e);
    }
    let now = Instant::now();
    batch.retain(|e| {
        if e.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            st.cancelled.fetch_add(1, Ordering::Relaxed);
            false
        } else if e.deadline.is_some_and(|d| now >= d) {
            st.expired.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            true
        }
    });
    batch
}

/// One model call for the batch; each job's result (or the batch's failure: a wrong result count, a panic) goes
/// back to its caller, and each job is logged in its caller's span.
fn run_batch<J, R>(
    batch: Vec<Envelope<J, R>>,
    run: &mut impl FnMut(Vec<J>) -> Vec<Result<R, String>>,
    worker: &str,
    st: &WorkerStats,
) {
    let n = batch.len();
    st.batches.fetch_add(1, Ordering::Relaxed);
    st.jobs.fetch_add(n as u64, Ordering::Relaxed);
    st.batch_jobs.observe(n as f64);
    st.batch_cost.observe(batch.iter().map(|e| e.cost).sum::<usize>() as f64);
    let start = Instant::now();
    let batch_span = tracing::debug_span!("model_batch", worker = %worker, jobs = n);
    for e in &batch {
        batch_span.follows_from(&e.span);
    }
    let (jobs, replies): (Vec<J>, Vec<_>) =
        batch.into_iter().map(|e| (e.job, (e.reply, start.saturating_duration_since(e.enqueued), e.span))).unzip();
    let results = batch_span.in_scope(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(jobs))));
    let compute = start.elapsed();
    let replies: Vec<_> = replies
        .into_iter()
        .map(|(reply, queued, span)| {
            tracing::debug!(
                parent: &span,
                worker = %worker,
                batch = n,
                queued_us = queued.as_micros() as u64,
                compute_us = compute.as_micros() as u64,
                "model call done"
            );
            ReplyTo { reply, timing: CallTiming { queued, compute }, span }
        })
        .collect();
    match results {
        Ok(results) if results.len() == n => {
            for (reply, result) in replies.into_iter().zip(results) {
                if let Err(e) = &result {
                    tracing::warn!(parent: &reply.span, worker = %worker, "model call failed: {e}");
                }
                let _ = reply.reply.send((result, reply.timing));
            }
        }
        Ok(results) => {
            let msg = format!("returned {} results for {n} jobs", results.len());
            replies.into_iter().for_each(|r| drop(r.reply.send((Err(msg.clone()), r.timing))));
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            replies.into_iter().for_each(|r| drop(r.reply.send((Err(format!("panicked: {msg}")), r.timing))));
        }
    }
}

/// A model thread and the queue in front of it.
pub struct Worker<J, R> {
    name: String,
    options: WorkerOptions,
    stats: Arc<WorkerStats>,
    tx: Mutex<Option<mpsc::Sender<Envelope<J, R>>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl<J, R> std::fmt::Debug for Worker<J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("name", &self.name).field("options", &self.options).finish()
    }
}

impl<J: Send + 'static, R: Send + 'static> Worker<J, R> {
    /// Starts the thread. `run` gets a batch of jobs and returns one result per job, in order; a panic in it
    /// fails that batch's jobs and the worker goes on.
    pub fn spawn(
        name: &str,
        options: WorkerOptions,
        mut run: impl FnMut(Vec<J>) -> Vec<Result<R, String>> + Send + 'static,
    ) -> Worker<J, R> {
        let (tx, rx) = mpsc::channel::<Envelope<J, R>>();
        let stats = Arc::new(WorkerStats::default());
        let st = stats.clone();
        let worker_name = name.to_owned();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let batch = gather(&rx, first, &options, &st);
                    if !batch.is_empty() {
                        run_batch(batch, &mut run, &worker_name, &st);
                    }
                }
            })
            .expect("spawn model worker thread");
        Worker { name: name.to_owned(), options, stats, tx: Mutex::new(Some(tx)), handle: Some(handle) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn options(&self) -> WorkerOptions {
        self.options
    }

    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// Queues `job` (of the given cost towards the batch budget) and waits for its result, at most `timeout`.
    pub fn call(&self, job: J, cost: usize, timeout: Option<Duration>) -> Result<R, WorkerError> {
        self.call_with(job, cost, timeout, None).map(|(r, _)| r)
    }

    /// [`Worker::call`], abandoned (and the job skipped if it has not started) once `cancel` is set; also
    /// says how long the job queued and how long its model call took.
    pub fn call_with(
        &self,
        job: J,
        cost: usize,
        timeout: Option<Duration>,
        cancel: Option<&CancelToken>,
    ) -> Result<(R, CallTiming), WorkerError> {
        let queued = self.stats.queued.fetch_add(1, Ordering::AcqRel);
        if queued >= self.options.max_queue {
            self.stats.queued.fetch_sub(1, Ordering::AcqRel);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(WorkerError::Overloaded { worker: self.name.clone(), queued, limit: self.options.max_queue });
        }
        let (reply, answer) = mpsc::sync_channel(1);
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let sent = {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            let envelope = Envelope {
                job,
                cost,
                enqueued: started,
                deadline,
                cancel: cancel.cloned(),
                reply,
                span: tracing::Span::current(),
            };
            tx.as_ref().is_some_and(|tx| tx.send(envelope).is_ok())
        };
        if !sent {
            self.stats.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(WorkerError::Stopped { worker: self.name.clone() });
        }
        // wait in short slices so that a cancellation is noticed while the job is still queued
        const SLICE: Duration = Duration::from_millis(20);
        let (result, timing) = loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            match answer.recv_timeout(slice) {
                Ok(r) => break r,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(WorkerError::Stopped { worker: self.name.clone() })
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if cancel.is_some_and(CancelToken::is_cancelled) {
                        return Err(WorkerError::Cancelled { worker: self.name.clone() });
                    }
                    if let (Some(d), Some(t)) = (deadline, timeout) {
                        if Instant::now() >= d {
                            return Err(WorkerError::Timeout {
                                worker: self.name.clone(),
                                millis: t.as_millis() as u64,
                            });
                        }
                    }
                }
            }
        };
        result.map(|r| (r, timing)).map_err(|message| WorkerError::Failed { worker: self.name.clone(), message })
    }
}

impl<J, R> Drop for Worker<J, R> {
    fn drop(&mut self) {
        // closing the queue ends the thread once the current batch is done
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sieve_models::standin::Gate;
    use std::sync::Arc;

    /// Polls `cond` until it holds; a generous deadline, so a loaded machine is slow, not wrong.
    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn waiting_jobs_are_batched_and_answered_in_order() {
        let gate = Gate::new();
        let (g, (entered_tx, entered)) = (gate.clone(), mpsc::channel::<usize>());
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let w = Arc::new(Worker::spawn("doubler", WorkerOptions::new(100), move |jobs: Vec<u32>| {
            entered_tx.send(jobs.len()).unwrap();
            g.wait();
            seen.lock().unwrap().push(jobs.len());
            jobs.into_iter().map(|j| Ok(j * 2)).collect()
        }));
        let call = |i: u32| {
            let w = w.clone();
            std::thread::spawn(move || w.call(i, 1, None))
        };
        // job 0 occupies the model; the other seven queue behind it and go in together
        let mut handles = vec![call(0)];
        assert_eq!(entered.recv().unwrap(), 1);
        handles.extend((1..8).map(call));
        wait_for("seven queued jobs", || w.stats().queued.load(Ordering::Acquire) == 7);
        gate.open();
        let results: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
        assert_eq!(results, (0..8).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(*batches.lock().unwrap(), vec![1, 7]);
        assert_eq!(w.stats().batches.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn timeouts_failures_and_panics_are_errors_the_worker_survives() {
        let gate = Gate::new();
        let g = gate.clone();
        let w = Worker::spawn("model", WorkerOptions::new(1), move |jobs: Vec<&'static str>| {
            jobs.into_iter()
                .map(|j| match j {
                    "slow" => {
                        g.wait();
                        Ok(1)
                    }
                    "fail" => Err("bad input".to_string()),
                    "panic" => panic!("boom"),
                    _ => Ok(0),
                })
                .collect()
        });
        // the model does not answer until the caller has given up
        let err = w.call("slow", 1, Some(Duration::from_millis(50))).unwrap_err();
        assert!(matches!(err, WorkerError::Timeout { millis: 50, .. }), "{err}");
        gate.open();
        assert_eq!(w.call("fail", 1, None).unwrap_err().to_string(), "model failed: bad input");
        let err = w.call("panic", 1, None).unwrap_err().to_string();
        assert!(err.contains("panicked: boom"), "{err}");
        assert_eq!(w.call("ok", 1, None).unwrap(), 0);
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_cancelled_jobs_never_reach_the_model() {
        let gate = Gate::new();
        let (g, (entered_tx, entered)) = (gate.clone(), mpsc::channel::<Vec<u32>>());
        let ran = Arc::new(Mutex::new(Vec::new()));
        let seen = ran.clone();
        let opts = WorkerOptions { budget: 1, max_wait: Duration::ZERO, max_queue: 1 };
        let w = Arc::new(Worker::spawn("slow", opts, move |jobs: Vec<u32>| {
            seen.lock().unwrap().extend(jobs.iter().copied());
            entered_tx.send(jobs.clone()).unwrap();
            g.wait();
            jobs.into_iter().map(Ok).collect()
        }));
        // job 1 occupies the model, job 2 waits in the queue (its caller then cancels), job 3 finds it full
        let busy = {
            let w = w.clone();
            std::thread::spawn(move || w.call(1, 1, None))
        };
        assert_eq!(entered.recv().unwrap(), vec![1]);
        let token = CancelToken::new();
        let waiting = {
            let (w, token) = (w.clone(), token.clone());
            std::thread::spawn(move || w.call_with(2, 1, None, Some(&token)))
        };
        wait_for("job 2 in the queue", || w.stats().queued.load(Ordering::Acquire) == 1);
        let err = w.call(3, 1, None).unwrap_err();
        assert!(matches!(err, WorkerError::Overloaded { queued: 1, limit: 1, .. }), "{err}");
        token.cancel();
        assert!(matches!(waiting.join().unwrap(), Err(WorkerError::Cancelled { .. })));
        gate.open();
        assert_eq!(busy.join().unwrap().unwrap(), 1);
        // the worker drops the cancelled job when it reaches it
        wait_for("the cancelled job to be dropped", || w.stats().cancelled.load(Ordering::Acquire) == 1);
        assert_eq!(w.call(4, 1, None).unwrap(), 4);
        assert_eq!(*ran.lock().unwrap(), vec![1, 4], "the cancelled job must not reach the model");
        let stats = w.stats();
        assert_eq!(stats.rejected.load(Ordering::Relaxed), 1);
        assert_eq!(stats.cancelled.load(Ordering::Relaxed), 1);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
        assert_eq!(stats.batch_jobs.snapshot().count, 2);
    }

    #[test]
    fn the_first_job_waits_for_company_until_the_budget_fills_or_max_wait_passes() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        // a long max_wait: the batch closes when the budget (3 jobs) is reached, however late they arrive
        let opts = WorkerOptions { budget: 3, max_wait: Duration::from_secs(60), max_queue: 16 };
        let w = Arc::new(Worker::spawn("gather", opts, move |jobs: Vec<u32>| {
            seen.lock().unwrap().push(jobs.len());
            jobs.into_iter().map(Ok).collect()
        }));
        let calls: Vec<_> = (0..3u32)
            .map(|i| {
                let w = w.clone();
                std::thread::spawn(move || w.call(i, 1, None))
            })
            .collect();
        for c in calls {
            c.join().unwrap().unwrap();
        }
        assert_eq!(*sizes.lock().unwrap(), vec![3]);

        // alone, a job waits max_wait for company and then runs
        let opts = WorkerOptions { budget: 100, max_wait: Duration::from_millis(200), max_queue: 16 };
        let w = Worker::spawn("alone", opts, |jobs: Vec<u32>| jobs.into_iter().map(Ok).collect());
        let started = Instant::now();
        assert_eq!(w.call(7, 1, None).unwrap(), 7);
        assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    }
}

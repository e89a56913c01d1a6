//! Model workers: a model lives on its own thread and serves requests from any number of callers, batching
//! whatever is waiting (up to a cost budget, e.g. tokens) into one call. A caller waits at most its own
//! timeout; jobs whose caller already gave up are dropped before they reach the model.

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a worker call produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("{worker} did not answer within {millis} ms")]
    Timeout { worker: String, millis: u64 },
    #[error("{worker} failed: {message}")]
    Failed { worker: String, message: String },
    #[error("{worker} has stopped")]
    Stopped { worker: String },
}

struct Envelope<J, R> {
    job: J,
    cost: usize,
    deadline: Option<Instant>,
    reply: mpsc::SyncSender<Result<R, String>>,
}

/// A model thread and the queue in front of it.
pub struct Worker<J, R> {
    name: String,
    tx: Mutex<Option<mpsc::Sender<Envelope<J, R>>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl<J, R> std::fmt::Debug for Worker<J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("name", &self.name).finish()
    }
}

impl<J: Send + 'static, R: Send + 'static> Worker<J, R> {
    /// Starts the thread. `run` gets a batch of jobs and returns one result per job, in order; a panic in it
    /// fails that batch's jobs and the worker goes on.
    pub fn spawn(
        name: &str,
        budget: usize,
        mut run: impl FnMut(Vec<J>) -> Vec<Result<R, String>> + Send + 'static,
    ) -> Worker<J, R> {
        let (tx, rx) = mpsc::channel::<Envelope<J, R>>();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut cost = first.cost;
                    let mut batch = vec![first];
                    while cost < budget {
                        match rx.try_recv() {
                            Ok(e) => {
                                cost += e.cost;
                                batch.push(e);
                            }
                            Err(_) => break,
                        }
                    }
                    let now = Instant::now();
                    batch.retain(|e| e.deadline.is_none_or(|d| now < d));
                    if batch.is_empty() {
                        continue;
                    }
                    let (jobs, replies): (Vec<J>, Vec<_>) = batch.into_iter().map(|e| (e.job, e.reply)).unzip();
                    let n = jobs.len();
                    let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(jobs)));
                    match results {
                        Ok(results) if results.len() == n => {
                            for (reply, result) in replies.into_iter().zip(results) {
                                let _ = reply.send(result);
                            }
                        }
                        Ok(results) => {
                            let msg = format!("returned {} results for {n} jobs", results.len());
                            replies.into_iter().for_each(|r| drop(r.send(Err(msg.clone()))));
                        }
                        Err(panic) => {
                            let msg = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "panicked".into());
                            replies.into_iter().for_each(|r| drop(r.send(Err(format!("panicked: {msg}")))));
                        }
                    }
                }
            })
            .expect("spawn model worker thread");
        Worker { name: name.to_owned(), tx: Mutex::new(Some(tx)), handle: Some(handle) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues `job` (of the given cost towards the batch budget) and waits for its result, at most `timeout`.
    pub fn call(&self, job: J, cost: usize, timeout: Option<Duration>) -> Result<R, WorkerError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let deadline = timeout.map(|t| Instant::now() + t);
        let sent = {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            tx.as_ref().is_some_and(|tx| tx.send(Envelope { job, cost, deadline, reply }).is_ok())
        };
        if !sent {
            return Err(WorkerError::Stopped { worker: self.name.clone() });
        }
        let result = match timeout {
            Some(t) => answer.recv_timeout(t).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => {
                    WorkerError::Timeout { worker: self.name.clone(), millis: t.as_millis() as u64 }
                }
                mpsc::RecvTimeoutError::Disconnected => WorkerError::Stopped { worker: self.name.clone() },
            })?,
            None => answer.recv().map_err(|_| WorkerError::Stopped { worker: self.name.clone() })?,
        };
        result.map_err(|message| WorkerError::Failed { worker: self.name.clone(), message })
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
    use std::sync::Arc;

    #[test]
    fn waiting_jobs_are_batched_and_answered_in_order() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let w = Arc::new(Worker::spawn("doubler", 100, move |jobs: Vec<u32>| {
            std::thread::sleep(Duration::from_millis(30));
            seen.lock().unwrap().push(jobs.len());
            jobs.into_iter().map(|j| Ok(j * 2)).collect()
        }));
        let handles: Vec<_> = (0..8u32)
            .map(|i| {
                let w = w.clone();
                std::thread::spawn(move || w.call(i, 1, None))
            })
            .collect();
        let results: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
        assert_eq!(results, (0..8).map(|i| i * 2).collect::<Vec<_>>());
        let batches = batches.lock().unwrap();
        assert_eq!(batches.iter().sum::<usize>(), 8);
        assert!(batches.len() < 8, "some calls must have shared a batch: {batches:?}");
    }

    #[test]
    fn timeouts_failures_and_panics_are_errors_the_worker_survives() {
        let w = Worker::spawn("model", 1, |jobs: Vec<&'static str>| {
            jobs.into_iter()
                .map(|j| match j {
                    "slow" => {
                        std::thread::sleep(Duration::from_millis(300));
                        Ok(1)
                    }
                    "fail" => Err("bad input".to_string()),
                    "panic" => panic!("boom"),
                    _ => Ok(0),
                })
                .collect()
        });
        let err = w.call("slow", 1, Some(Duration::from_millis(50))).unwrap_err();
        assert!(matches!(err, WorkerError::Timeout { millis: 50, .. }), "{err}");
        assert_eq!(w.call("fail", 1, None).unwrap_err().to_string(), "model failed: bad input");
        let err = w.call("panic", 1, None).unwrap_err().to_string();
        assert!(err.contains("panicked: boom"), "{err}");
        assert_eq!(w.call("ok", 1, None).unwrap(), 0);
    }
}

//! The document routes' parameters and the task view: every write is a task, and `GET /v1/tasks/{id}` shows
//! what became of it.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Query parameters of the document routes.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DocumentParams {
    /// Index (default: the server's first).
    pub index: Option<String>,
    /// Block until the write is committed (or `wait_timeout_secs` passes).
    pub wait: Option<bool>,
}

/// Query parameters of `GET /v1/tasks`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListParams {
    /// Most recent tasks to list (default 20, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Upsert,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Enqueued,
    Processing,
    Succeeded,
    Failed,
}

impl TaskStatus {
    pub fn finished(self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Failed)
    }
}

/// A row of an upsert that was not indexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RowFailure {
    /// 1-based line of the NDJSON body, or position in the JSON array.
    pub line: u64,
    pub code: String,
    pub reason: String,
}

/// A write and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: u64,
    pub index: String,
    pub kind: TaskKind,
    pub status: TaskStatus,
    /// Rows in the body (upsert) or 1 (delete).
    pub received: u64,
    /// Rows read so far (committed or not).
    pub read: u64,
    /// Documents committed.
    pub indexed: u64,
    /// Rows rejected (see `errors`).
    pub rejected: u64,
    /// Documents removed (delete).
    pub deleted: u64,
    /// The first rejected rows, with the reason.
    pub errors: Vec<RowFailure>,
    /// Why the task failed as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The document a delete removes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    /// Why an enqueued task is not running yet: another process (such as `sieve ingest`) holds the index's
    /// writer lock. The task runs once the lock is released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// How many times a restart picked the task up again.
    pub resumed: u32,
    /// Unix milliseconds.
    pub enqueued_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
}

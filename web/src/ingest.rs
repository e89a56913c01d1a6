//! Ingestion pages: `/ingest` uploads a JSONL or CSV file (or pasted rows) into an index as a durable write
//! task, the same task `POST /v1/documents` creates (`sieve_server::submit_upsert`), then redirects to
//! `/tasks/{id}`: progress (read, indexed, rejected, docs/s) that refreshes itself without JavaScript
//! (`<noscript>` meta refresh) and smoothly with it (`sieve.js` fetches the page and swaps the task's panel),
//! the rejected rows with line, code and reason, and the recent tasks.
//!
//! With an API key on the server these pages ask for it once (`/login`) and keep it in an HttpOnly,
//! SameSite=Strict cookie; every post carries the form token of [`crate::ui`].

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Multipart, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use leptos::prelude::*;
use serde::Deserialize;
use sieve_api::{Task, TaskStatus};
use sieve_ingest::Format;
use sieve_server::{ApiError, SharedState};

use crate::layout::{document, Tab};
use crate::ui;

/// Tasks the pages list.
const RECENT: usize = 10;

/// A 303 to `to`.
fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// The login form, for a server with an API key and a browser without it.
fn login(headers: &HeaderMap, next: &str, problem: Option<&str>) -> Response {
    ui::with_token(headers, |token| login_page(token, next, problem))
}

fn login_page(token: &str, next: &str, problem: Option<&str>) -> Response {
    let main = view! {
        <h1>"API key"</h1>
        <p>"This server takes writes only with its API key. It is kept in this browser as an HttpOnly cookie for the write pages."</p>
        {problem.map(|p| view! { <div class="banner error" role="alert">{p.to_owned()}</div> })}
        <form class="login" action="/login" method="post">
            <input type="hidden" name="csrf" value=token.to_owned()/>
            <input type="hidden" name="next" value=next.to_owned()/>
            <label for="key">"API key"</label>
            <input id="key" name="key" type="password" autocomplete="current-password" required=true/>
            <button type="submit">"Use this key"</button>
        </form>
    };
    let status = if problem.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    crate::html(status, document("API key", Tab::Ingest, main))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    next: String,
    csrf: Option<String>,
}

pub async fn login_post(State(state): State<SharedState>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if let Some(why) = ui::cross_site(&headers, f.csrf.as_deref()) {
        return crate::forbidden(Tab::Ingest, &why);
    }
    // only this site's own pages as the place to go back to
    let next = if f.next.starts_with('/') && !f.next.starts_with("//") { f.next.as_str() } else { "/ingest" };
    match &state.config.api_key {
        Some(key) if sieve_server::same_key(f.key.as_bytes(), key.as_bytes()) => {
            let mut res = see_other(next);
            // the key as given: a cookie value must not hold `;` or spaces, which a key might
            if f.key.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',') {
                ui::set_cookie(&mut res, ui::KEY_COOKIE, &f.key, 30 * 86_400);
                res
            } else {
                login(&headers, next, Some("this key has characters a cookie cannot hold; use the API instead"))
            }
        }
        Some(_) => login(&headers, next, Some("That is not this server's API key.")),
        None => see_other(next),
    }
}

pub async fn get(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if !ui::authorised(&state, &headers) {
        return login(&headers, "/ingest", None);
    }
    form_page(&state, &headers, None, StatusCode::OK)
}

fn form_page(state: &SharedState, headers: &HeaderMap, problem: Option<String>, status: StatusCode) -> Response {
    ui::with_token(headers, |token| upload_page(state, token, problem, status))
}

fn upload_page(state: &SharedState, token: &str, problem: Option<String>, status: StatusCode) -> Response {
    let indexes = state.indexes.keys().map(|n| view! { <option value=n.clone()>{n.clone()}</option> }).collect_view();
    let limit_mb = state.config.max_body_bytes as f64 / (1024.0 * 1024.0);
    let main = view! {
        <h1>"Add documents"</h1>
        {problem.map(|p| view! { <div class="banner error" role="alert"><strong>"Nothing was added: "</strong>{p}</div> })}
        <form class="ingest" action="/ingest" method="post" enctype="multipart/form-data">
            <input type="hidden" name="csrf" value=token.to_owned()/>
            <div class="row options">
                <label>"Index " <select name="index">{indexes}</select></label>
                <label>"Format "
                    <select name="format">
                        <option value="auto">"from the file name (or the first character)"</option>
                        <option value="jsonl">"JSONL: one JSON object per line"</option>
                        <option value="csv">"CSV with a header row"</option>
                    </select>
                </label>
            </div>
            <label for="file">{format!("A .jsonl or .csv file (at most {limit_mb:.0} MiB)")}</label>
            <input id="file" name="file" type="file" accept=".jsonl,.ndjson,.json,.csv,application/x-ndjson,text/csv"/>
            <label for="rows">"…or paste rows"</label>
            <textarea id="rows" name="rows" rows="6" placeholder="{\"id\": \"p1\", \"title\": \"Sony WH-1000XM4\", \"price\": 278}"></textarea>
            <button type="submit">"Add"</button>
        </form>
        {recent(state)}
    };
    crate::html(status, document("Add documents", Tab::Ingest, main))
}

/// What an upload form sent.
#[derive(Debug, Default)]
struct Upload {
    csrf: Option<String>,
    index: Option<String>,
    format: Option<String>,
    file_name: Option<String>,
    file: Vec<u8>,
    rows: String,
}

/// The upload's format: asked for, else the file's extension, else the first non-blank character (`{` for
/// JSONL, anything else CSV).
fn format_of(asked: Option<&str>, file_name: Option<&str>, body: &[u8]) -> Result<Format, String> {
    match asked.unwrap_or("auto") {
        "jsonl" | "ndjson" => return Ok(Format::Jsonl),
        "csv" => return Ok(Format::Csv),
        "auto" | "" => {}
        other => return Err(format!("format: expected auto, jsonl or csv, found {other:?}")),
    }
    let ext = file_name.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
        Some("csv") => Ok(Format::Csv),
        _ => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Ok(Format::Jsonl),
            Some(_) => Ok(Format::Csv),
            None => Err("the upload is empty: choose a file or paste rows".to_owned()),
        },
    }
}

/// Rows in a body: non-blank lines for JSONL, CSV records after the header (quoted line breaks counted
/// right).
fn rows_of(format: Format, body: &[u8]) -> u64 {
    match format {
        Format::Jsonl => {
            body.split(|&b| b == b'\n').filter(|l| l.iter().any(|b| !b.is_ascii_whitespace())).count() as u64
        }
        Format::Csv => csv_records(body).saturating_sub(1),
    }
}

/// CSV records in `body` (line breaks inside quotes do not end one).
fn csv_records(body: &[u8]) -> u64 {
    let (mut n, mut quoted, mut filled) = (0u64, false, false);
    for &b in body {
        match b {
            b'"' => {
                quoted = !quoted;
                filled = true;
            }
            b'\n' if !quoted => {
                if filled {
                    n += 1;
                }
                filled = false;
            }
            b'\r' => {}
            c if !c.is_ascii_whitespace() => filled = true,
            _ => {}
        }
    }
    n + filled as u64
}

async fn read_upload(mut mp: Multipart, limit: usize) -> Result<Upload, String> {
    let mut up = Upload::default();
    let mut size = 0usize;
    while let Some(mut field) = mp.next_field().await.map_err(|e| format!("the upload is not a valid form: {e}"))? {
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            up.file_name = field.file_name().map(str::to_owned);
            while let Some(chunk) = field.chunk().await.map_err(|e| format!("the upload broke off: {e}"))? {
                size += chunk.len();
                if size > limit {
                    return Err(format!(
                        "the upload is over the server's limit of {limit} bytes (max_body_bytes); split the file or use `sieve ingest`"
                    ));
                }
                up.file.extend_from_slice(&chunk);
            }
            continue;
        }
        let text = field.text().await.map_err(|e| format!("field `{name}`: {e}"))?;
        size += text.len();
        if size > limit {
            return Err(format!("the upload is over the server's limit of {limit} bytes (max_body_bytes)"));
        }
        match name.as_str() {
            "csrf" => up.csrf = Some(text),
            "index" => up.index = Some(text),
            "format" => up.format = Some(text),
            "rows" => up.rows = text,
            _ => {}
        }
    }
    Ok(up)
}

pub async fn post(State(state): State<SharedState>, headers: HeaderMap, mp: Multipart) -> Response {
    let up = match read_upload(mp, state.config.max_body_bytes).await {
        Ok(u) => u,
        Err(e) => {
            let status =
                if e.contains("limit") { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::UNPROCESSABLE_ENTITY };
            return form_page(&state, &headers, Some(e), status);
        }
    };
    if let Some(why) = ui::cross_site(&headers, up.csrf.as_deref()) {
        return crate::forbidden(Tab::Ingest, &why);
    }
    if !ui::authorised(&state, &headers) {
        return login(&headers, "/ingest", Some("Writes need this server's API key."));
    }
    // a chosen file wins over pasted rows
    let (mut body, file_name) = if up.file.iter().any(|b| !b.is_ascii_whitespace()) {
        (up.file, up.file_name)
    } else {
        (up.rows.into_bytes(), None)
    };
    let format = match format_of(up.format.as_deref(), file_name.as_deref(), &body) {
        Ok(f) => f,
        Err(e) => return form_page(&state, &headers, Some(e), StatusCode::UNPROCESSABLE_ENTITY),
    };
    if let Err(e) = std::str::from_utf8(&body) {
        let e = format!("the upload is not UTF-8 text after byte {}", e.valid_up_to());
        return form_page(&state, &headers, Some(e), StatusCode::UNPROCESSABLE_ENTITY);
    }
    if !body.ends_with(b"\n") {
        body.push(b'\n');
    }
    let rows = rows_of(format, &body);
    let index = up.index.unwrap_or_else(|| state.default_index.clone());
    match sieve_server::submit_upsert(&state, &index, body, rows, format).await {
        Ok(task) => see_other(&format!("/tasks/{}", task.id)),
        Err(e) => {
            let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            form_page(&state, &headers, Some(e.message), status)
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Documents per second over the task's run so far.
pub fn rate(t: &Task, now: u64) -> Option<f64> {
    let start = t.started_at?;
    let end = t.finished_at.unwrap_or(now);
    let secs = end.saturating_sub(start) as f64 / 1000.0;
    (secs > 0.0).then(|| t.read as f64 / secs)
}

fn status_text(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Enqueued => "enqueued",
        TaskStatus::Processing => "processing",
        TaskStatus::Succeeded => "succeeded",
        TaskStatus::Failed => "failed",
    }
}

pub async fn task(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !ui::authorised(&state, &headers) {
        return login(
            &headers,
            &format!("/tasks/{}", id.chars().filter(char::is_ascii_digit).collect::<String>()),
            None,
        );
    }
    let found = id.parse::<u64>().ok().and_then(|n| state.tasks.get(n));
    let Some(t) = found else {
        let e = ApiError::not_found(format!("no task {id:?}; the recent ones are listed below"));
        let main = view! { {crate::error_view("The task could not be shown", &e)} {recent(&state)} };
        return crate::html(StatusCode::NOT_FOUND, document("No such task", Tab::Ingest, main));
    };
    let done = t.status.finished();
    let now = now_ms();
    let pct = if t.received > 0 { (t.read as f64 / t.received as f64 * 100.0).min(100.0) } else { 0.0 };
    let docs_s = rate(&t, now).map_or("–".to_owned(), |r| format!("{r:.0}"));
    let errors = (!t.errors.is_empty()).then(|| {
        let rows = t
            .errors
            .iter()
            .map(|e| view! { <tr><td>{e.line}</td><td><code>{e.code.clone()}</code></td><td>{e.reason.clone()}</td></tr> })
            .collect_view();
        let more = (t.rejected as usize > t.errors.len())
            .then(|| view! { <p class="meta">{format!("The first {} of {} rejected rows.", t.errors.len(), t.rejected)}</p> });
        view! {
            <h2>"Rejected rows"</h2>
            <div class="scroll">
                <table class="errors">
                    <thead><tr><th scope="col">"Line"</th><th scope="col">"Code"</th><th scope="col">"Reason"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            {more}
        }
    });
    let failure = t
        .error
        .clone()
        .map(|e| view! { <div class="banner error" role="alert"><strong>"The task failed: "</strong>{e}</div> });
    let blocked = t.blocked.clone().map(|b| view! { <p class="banner degraded" role="status">{b}</p> });
    let status = status_text(t.status);
    let main = view! {
        {(!done).then(|| view! { <noscript><meta http-equiv="refresh" content="1"/></noscript> })}
        <h1>{format!("Task {} · {}", t.id, t.index)}</h1>
        <section id="task" class="task" data-done=done.to_string() aria-live="polite">
            <p class=format!("status {status}")><strong>{status}</strong></p>
            <progress max="100" value=format!("{pct:.1}") aria-label="rows read">{format!("{pct:.0}%")}</progress>
            <dl class="counts">
                <div><dt>"Rows"</dt><dd>{t.received}</dd></div>
                <div><dt>"Read"</dt><dd>{t.read}</dd></div>
                <div><dt>"Indexed"</dt><dd>{t.indexed}</dd></div>
                <div><dt>"Rejected"</dt><dd>{t.rejected}</dd></div>
                <div><dt>"Docs/s"</dt><dd>{docs_s}</dd></div>
            </dl>
            {blocked}
            {failure}
            {errors}
        </section>
        <p><a href="/ingest">"Add more documents"</a></p>
        {recent(&state)}
    };
    crate::html(StatusCode::OK, document(&format!("Task {}", t.id), Tab::Ingest, main))
}

/// The recent tasks, newest first.
fn recent(state: &SharedState) -> impl IntoView {
    let tasks = state.tasks.recent(RECENT);
    let rows = tasks
        .into_iter()
        .map(|t| {
            let href = format!("/tasks/{}", t.id);
            view! {
                <tr>
                    <td><a href=href>{t.id}</a></td>
                    <td>{t.index.clone()}</td>
                    <td>{status_text(t.status)}</td>
                    <td>{t.indexed}</td>
                    <td>{t.rejected}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="recent" aria-label="Recent tasks">
            <h2>"Recent tasks"</h2>
            <div class="scroll">
                <table>
                    <thead><tr><th scope="col">"Task"</th><th scope="col">"Index"</th><th scope="col">"Status"</th><th scope="col">"Indexed"</th><th scope="col">"Rejected"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uploads_format_and_rows() {
        assert_eq!(format_of(None, Some("a.CSV"), b"{"), Ok(Format::Csv));
        assert_eq!(format_of(Some("auto"), Some("a.jsonl"), b""), Ok(Format::Jsonl));
        assert_eq!(format_of(None, None, b"  \n{\"id\":1}"), Ok(Format::Jsonl));
        assert_eq!(format_of(None, None, b"id,title\n1,x"), Ok(Format::Csv));
        assert!(format_of(None, None, b" \n").is_err());
        assert!(format_of(Some("xml"), None, b"x").unwrap_err().contains("xml"));
        assert_eq!(rows_of(Format::Jsonl, b"{}\n\n{}\n  \n"), 2);
        assert_eq!(rows_of(Format::Csv, b"id,title\n1,\"two\nlines\"\n2,x\n"), 2);
        assert_eq!(rows_of(Format::Csv, b"id,title\r\n1,a\r\n2,b"), 2);
    }

    #[test]
    fn docs_per_second_over_the_run() {
        let t: Task = serde_json::from_value(serde_json::json!({
            "id": 1, "index": "p", "kind": "upsert", "status": "processing", "received": 10, "read": 500,
            "indexed": 400, "rejected": 0, "deleted": 0, "errors": [], "resumed": 0, "enqueued_at": 0,
            "started_at": 1000
        }))
        .unwrap();
        assert_eq!(rate(&t, 3000), Some(250.0));
        assert_eq!(rate(&t, 1000), None);
    }
}

//! The rerank playground (`/playground`): an instruction, a query and documents (one per line, or pasted JSONL
//! with a `text` field), top-N and max length, scored by the loaded cross-encoder through the same call as
//! `/v1/rerank` (`sieve_server::run_rerank`: limits, score cache, metrics). The answer lists the documents by
//! probability with the raw logit difference, token count, truncation and cache flags and the latency, and a
//! "view as request" box holds the equivalent `curl`. Without a reranker the page says how to load one.

use std::time::Instant;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use leptos::prelude::*;
use serde::Deserialize;
use serde_json::json;
use sieve_api::RerankBody;
use sieve_server::{ApiError, RerankRun, SharedState};

use crate::layout::{document, Tab};
use crate::ui;

/// The form's fields.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Input {
    #[serde(default)]
    pub instruction: String,
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub documents: String,
    #[serde(default)]
    pub top_n: String,
    #[serde(default)]
    pub max_length: String,
    #[serde(default)]
    pub csrf: Option<String>,
}

const EXAMPLE_QUERY: &str = "wireless noise cancelling headphones";
const EXAMPLE_DOCS: &str = "Sony WH-1000XM4 wireless noise-cancelling over-ear headphones\n\
Bose QuietComfort 45 Bluetooth headphones with active noise cancellation\n\
Logitech wired USB keyboard\n\
索尼 降噪 无线 耳机";

/// The documents the text area holds: a line each, or a JSONL line's `text` (or `document`, or `title` and
/// `body`) field. A JSON line without text is an error naming the line.
pub fn documents(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                format!("line {}: expected a JSON object or plain text, found invalid JSON ({e})", i + 1)
            })?;
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
            let text = field("text").or_else(|| field("document")).or_else(|| {
                let joined: Vec<String> = [field("title"), field("body")].into_iter().flatten().collect();
                (!joined.is_empty()).then(|| joined.join("\n"))
            });
            match text {
                Some(t) => out.push(t),
                None => {
                    return Err(format!(
                        "line {}: expected a `text`, `document`, `title` or `body` string field, found none",
                        i + 1
                    ))
                }
            }
        } else {
            out.push(line.to_owned());
        }
    }
    Ok(out)
}

/// The `/v1/rerank` body the form asks for.
pub fn body(input: &Input) -> Result<RerankBody, String> {
    let docs = documents(&input.documents)?;
    let num = |name: &str, v: &str| -> Result<Option<usize>, String> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<usize>().map(Some).map_err(|_| format!("`{name}`: expected a whole number, found {v:?}"))
    };
    let instruction = Some(input.instruction.trim()).filter(|s| !s.is_empty());
    let v = json!({
        "query": input.query,
        "documents": docs,
        "top_n": num("top_n", &input.top_n)?,
        "max_length": num("max_length", &input.max_length)?,
        "instruction": instruction,
        "return_documents": true,
    });
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// The `curl` that sends `body` to `/v1/rerank` (single quotes in the JSON escaped for the shell).
pub fn curl(host: &str, body: &RerankBody) -> String {
    let mut v = json!({ "query": body.query, "documents": body.documents.as_ref().map(|d| d.iter().map(|x| x.text().to_owned()).collect::<Vec<_>>()) });
    if let Some(n) = body.top_n {
        v["top_n"] = n.into();
    }
    if let Some(n) = body.max_length {
        v["max_length"] = n.into();
    }
    if let Some(i) = &body.instruction {
        v["instruction"] = i.clone().into();
    }
    let json = serde_json::to_string_pretty(&v).unwrap_or_default().replace('\'', "'\\''");
    format!("curl -s http://{host}/v1/rerank \\\n  -H 'Content-Type: application/json' \\\n  -d '{json}'")
}

pub async fn get(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let input =
        Input { query: EXAMPLE_QUERY.into(), documents: EXAMPLE_DOCS.into(), top_n: "10".into(), ..Input::default() };
    render(&state, &headers, &input, None)
}

pub async fn post(State(state): State<SharedState>, headers: HeaderMap, Form(input): Form<Input>) -> Response {
    if let Some(why) = ui::cross_site(&headers, input.csrf.as_deref()) {
        return crate::forbidden(Tab::Playground, &why);
    }
    let result = match body(&input) {
        Err(m) => Err(ApiError::new(sieve_server::ErrorCode::InvalidRequest, m)),
        Ok(b) => {
            let started = Instant::now();
            sieve_server::run_rerank(&state, &b).await.map(|run| (b, run, started.elapsed()))
        }
    };
    render(&state, &headers, &input, Some(result))
}

type Outcome = Result<(RerankBody, RerankRun, std::time::Duration), ApiError>;

fn render(state: &SharedState, headers: &HeaderMap, input: &Input, outcome: Option<Outcome>) -> Response {
    ui::with_token(headers, |token| page(state, headers, token, input, outcome))
}

fn page(state: &SharedState, headers: &HeaderMap, token: &str, input: &Input, outcome: Option<Outcome>) -> Response {
    let status = match &outcome {
        Some(Err(e)) => StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
        _ => StatusCode::OK,
    };
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost:8080");
    let model = state.models.reranker.as_ref().map(|r| r.name().to_owned());
    let missing = model.is_none().then(|| {
        view! {
            <div class="banner degraded" role="status">
                <strong>"No reranker is loaded. "</strong>
                "Start the server with one: " <code>"sieve serve --reranker DIR"</code>
                " (a Hugging Face-layout Qwen3-Reranker directory), or make a small random-weight one to try the page: "
                <code>"sieve models synth --out /tmp/rr --layout reranker --shape tiny"</code>"."
            </div>
        }
    });
    let answer = outcome.map(|o| match o {
        Err(e) => {
            view! { <div class="banner error" role="alert"><strong>"The rerank could not run: "</strong>{e.message}</div> }
                .into_any()
        }
        Ok((b, run, took)) => result(host, &b, &run, took).into_any(),
    });
    let main = view! {
        <h1>"Rerank playground"</h1>
        <p class="meta">{model.map(|m| format!("Model: {m}"))}</p>
        {missing}
        <form class="playground" action="/playground" method="post">
            <input type="hidden" name="csrf" value=token.to_owned()/>
            <label for="instruction">"Instruction (optional)"</label>
            <input id="instruction" name="instruction" value=input.instruction.clone()
                placeholder="Given a web search query, retrieve relevant passages that answer the query"/>
            <label for="query">"Query"</label>
            <input id="query" name="query" value=input.query.clone() required=true/>
            <label for="documents">"Documents: one per line, or JSONL with a " <code>"text"</code> " field"</label>
            <textarea id="documents" name="documents" rows="8">{input.documents.clone()}</textarea>
            <div class="row options">
                <label>"Top N " <input name="top_n" type="number" min="0" value=input.top_n.clone()/></label>
                <label>"Max length (tokens) " <input name="max_length" type="number" min="1" value=input.max_length.clone()/></label>
                <button type="submit">"Rerank"</button>
            </div>
        </form>
        {answer}
    };
    crate::html(status, document("Rerank playground", Tab::Playground, main))
}

fn result(host: &str, b: &RerankBody, run: &RerankRun, took: std::time::Duration) -> impl IntoView {
    let rows = run
        .order
        .iter()
        .enumerate()
        .map(|(rank, &i)| {
            let s = &run.scores[i];
            let text: String = run.texts[i].chars().take(300).collect();
            view! {
                <tr>
                    <td>{rank + 1}</td>
                    <td class="doc">{text}</td>
                    <td><meter min="0" max="1" value=format!("{}", s.score) aria-label=format!("probability {:.4}", s.score)></meter>
                        {format!(" {:.4}", s.score)}</td>
                    <td>{format!("{:.3}", s.raw)}</td>
                    <td>{s.tokens}</td>
                    <td>{if s.truncated { "yes" } else { "no" }}</td>
                    <td>{if run.cached[i] { "yes" } else { "no" }}</td>
                </tr>
            }
        })
        .collect_view();
    let latency = format!(
        "{} documents in {:.1} ms (queue {:.1} ms, model {:.1} ms)",
        run.texts.len(),
        took.as_secs_f64() * 1000.0,
        run.time.queue.as_secs_f64() * 1000.0,
        run.time.inference.as_secs_f64() * 1000.0
    );
    view! {
        <section aria-label="Scores">
            <h2>"Scores"</h2>
            <p class="meta" role="status">{latency}</p>
            <div class="scroll">
                <table class="scores">
                    <thead><tr>
                        <th scope="col">"#"</th><th scope="col">"Document"</th><th scope="col">"Probability"</th>
                        <th scope="col">"Logit (yes − no)"</th><th scope="col">"Tokens"</th>
                        <th scope="col">"Truncated"</th><th scope="col">"Cached"</th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            <details class="request" open=true>
                <summary>"View as request"</summary>
                <pre><code>{curl(host, b)}</code></pre>
            </details>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_jsonl_become_documents() {
        let d = documents("plain one\n\n{\"text\": \"from json\"}\n{\"title\": \"T\", \"body\": \"B\"}\n").unwrap();
        assert_eq!(d, ["plain one", "from json", "T\nB"]);
        assert!(documents("ok\n{\"id\": 3}").unwrap_err().starts_with("line 2: expected"));
        assert!(documents("{not json").unwrap_err().contains("line 1"));
    }

    #[test]
    fn the_form_is_a_rerank_body_and_a_curl() {
        let input = Input {
            query: "it's".into(),
            documents: "a\nb".into(),
            top_n: "1".into(),
            max_length: " ".into(),
            ..Input::default()
        };
        let b = body(&input).unwrap();
        assert_eq!((b.top_n, b.max_length, b.instruction.as_deref()), (Some(1), None, None));
        let c = curl("h:1", &b);
        assert!(c.starts_with("curl -s http://h:1/v1/rerank"));
        assert!(c.contains(r#""query": "it'\''s""#), "{c}");
        let bad = Input { top_n: "ten".into(), ..input };
        assert!(body(&bad).unwrap_err().contains("top_n"));
    }
}

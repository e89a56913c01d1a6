//! What the UI adds to the server's state: the labelled query sets the compare view overlays, and the guard of
//! the pages that write (the API key kept in a cookie, and a token against cross-site form posts).
//!
//! Cross-site posts are refused twice over: a double-submit token (a random value in an HttpOnly,
//! SameSite=Strict cookie that each form repeats in a hidden field, compared in constant time), and the
//! `Origin` header, which when present must name this host. A form from another site has neither.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use sieve_eval::Dataset;
use sieve_server::{same_key, SharedState};

/// How `sieve serve` configures the UI.
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    /// Labelled query sets (the `shared/data` layout) by the index they judge: `--judgments products=DIR`.
    pub judgments: Vec<(String, PathBuf)>,
}

/// A labelled set that could not be read.
#[derive(Debug)]
pub struct JudgmentsError {
    pub index: String,
    pub dir: PathBuf,
    pub source: sieve_eval::DatasetError,
}

impl std::fmt::Display for JudgmentsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "judgments for index `{}` at {}: {}", self.index, self.dir.display(), self.source)
    }
}

impl std::error::Error for JudgmentsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The UI's own state, beside the server's.
#[derive(Debug, Default)]
pub struct Ui {
    /// Labelled sets by index name.
    pub judgments: BTreeMap<String, Dataset>,
}

impl Ui {
    pub fn open(options: &UiOptions) -> Result<Ui, JudgmentsError> {
        let mut judgments = BTreeMap::new();
        for (index, dir) in &options.judgments {
            let set = Dataset::open(dir).map_err(|source| JudgmentsError {
                index: index.clone(),
                dir: dir.clone(),
                source,
            })?;
            judgments.insert(index.clone(), set);
        }
        Ok(Ui { judgments })
    }
}

/// The cookie that holds the API key the write pages were given.
pub const KEY_COOKIE: &str = "sieve_key";
/// The cookie that holds the form token.
pub const CSRF_COOKIE: &str = "sieve_csrf";

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for an HttpOnly, SameSite=Strict cookie on the whole site (`max_age` 0 removes it).
pub fn set_cookie(res: &mut Response, name: &str, value: &str, max_age: u64) {
    let c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// 128 random bits as hex: a new form token.
pub fn new_token() -> String {
    let mut b = [0u8; 16];
    // the OS's generator; should it fail, a token from the clock still differs per request (and the Origin
    // check still holds)
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        b = t.to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The request's form token, or a new one the answer must set (`(token, is_new)`).
pub fn token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE).filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())) {
        Some(t) => (t.to_owned(), false),
        None => (new_token(), true),
    }
}

/// A page whose form carries the form token: `page` gets the token; the answer sets the cookie when the
/// browser had none.
pub fn with_token(headers: &HeaderMap, page: impl FnOnce(&str) -> Response) -> Response {
    let (token, fresh) = token(headers);
    let mut res = page(&token);
    if fresh {
        set_cookie(&mut res, CSRF_COOKIE, &token, 86_400);
    }
    res
}

/// Why a form post is refused as cross-site, if it is: the `Origin` header (when sent) must be this host, and
/// the form's token must equal the cookie's.
pub fn cross_site(headers: &HeaderMap, form_token: Option<&str>) -> Option<String> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin == "null" || origin_host != host {
            return Some(format!("the form was posted from {origin}, not from this site ({host})"));
        }
    }
    let cookie = cookie(headers, CSRF_COOKIE).unwrap_or("");
    match form_token {
        Some(t) if !cookie.is_empty() && same_key(t.as_bytes(), cookie.as_bytes()) => None,
        _ => Some("the form's token does not match this browser's: reload the page and send it again".to_owned()),
    }
}

/// Whether the request may write: no API key on the server, or the key in the cookie.
pub fn authorised(state: &SharedState, headers: &HeaderMap) -> bool {
    match &state.config.api_key {
        None => true,
        Some(key) => cookie(headers, KEY_COOKIE).is_some_and(|given| same_key(given.as_bytes(), key.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_read_from_every_header() {
        let h = headers(&[("cookie", "a=1; sieve_csrf=abc"), ("cookie", "sieve_key=k=ey")]);
        assert_eq!(cookie(&h, "sieve_csrf"), Some("abc"));
        assert_eq!(cookie(&h, "sieve_key"), Some("k=ey"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn a_post_needs_the_cookies_token_and_a_same_site_origin() {
        let t = new_token();
        assert_eq!(t.len(), 32);
        assert_ne!(t, new_token());
        let cookie = format!("sieve_csrf={t}");
        let ok = headers(&[("cookie", &cookie), ("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]);
        assert_eq!(cross_site(&ok, Some(&t)), None);
        // no Origin header (an older browser, curl): the token alone decides
        assert_eq!(cross_site(&headers(&[("cookie", &cookie)]), Some(&t)), None);
        assert!(cross_site(&ok, Some("0".repeat(32).as_str())).is_some());
        assert!(cross_site(&ok, None).is_some());
        let evil = headers(&[("cookie", &cookie), ("host", "127.0.0.1:8080"), ("origin", "https://evil.example")]);
        assert!(cross_site(&evil, Some(&t)).unwrap().contains("evil.example"));
        assert!(cross_site(&headers(&[("host", "h")]), Some("")).is_some(), "no cookie, empty token");
        assert_eq!(token(&headers(&[("cookie", &cookie)])), (t, false));
        assert!(token(&headers(&[("cookie", "sieve_csrf=<script>")])).1, "a malformed token is replaced");
    }
}

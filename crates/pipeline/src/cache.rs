//! The rerank score cache: a cross-encoder score depends only on the model, the instruction, the query and
//! the document's text, so it is keyed by a hash of exactly those and reused across requests.
//!
//! Two backends behind [`ScoreCache`]: an in-process LRU (the default) and Redis (shared by several Sieve
//! processes), spoken to in plain RESP over TCP. A cache is an optimisation, never a dependency: every error
//! (Redis down, slow, answering nonsense) is reported to the caller, which counts it as a miss and goes on.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::Xxh3;

/// A cached cross-encoder result: everything the model said about the pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachedScore {
    pub score: f32,
    pub raw: f32,
    /// Tokens the model saw for the pair (template included).
    pub tokens: u32,
    /// Whether the document's tail was cut to fit the model's `max_length`.
    pub truncated: bool,
}

impl From<&sieve_models::RerankScore> for CachedScore {
    fn from(s: &sieve_models::RerankScore) -> CachedScore {
        CachedScore {
            score: s.score,
            raw: s.raw,
            tokens: s.tokens.min(u32::MAX as usize) as u32,
            truncated: s.truncated,
        }
    }
}

impl From<CachedScore> for sieve_models::RerankScore {
    fn from(c: CachedScore) -> sieve_models::RerankScore {
        sieve_models::RerankScore { score: c.score, raw: c.raw, tokens: c.tokens as usize, truncated: c.truncated }
    }
}

/// The key of one (model, instruction, query, document text) combination: 128 bits of xxh3 over the four,
/// each length-prefixed so no two combinations can run together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(pub u128);

impl CacheKey {
    pub fn new(model: &str, instruction: &str, query: &str, document: &str) -> CacheKey {
        let mut h = Xxh3::new();
        for part in [model, instruction, query, document] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        CacheKey(h.digest128())
    }

    /// The key of one pair as the reranker `model` (its name) scores it: `max_length` (`None`: the model's
    /// default) and the instruction (`None`: the model's default) are part of it, since both change the score.
    pub fn rerank(
        model: &str,
        max_length: Option<usize>,
        instruction: Option<&str>,
        query: &str,
        document: &str,
    ) -> CacheKey {
        let model_key = format!("{model}\u{1f}{}", max_length.unwrap_or(0));
        CacheKey::new(&model_key, instruction.unwrap_or(sieve_models::DEFAULT_INSTRUCTION), query, document)
    }

    fn redis_key(&self) -> String {
        format!("sieve:rerank:{:032x}", self.0)
    }
}

pub use sieve_core::CacheReport;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("score cache {backend} unavailable: {reason}")]
    Unavailable { backend: String, reason: String },
}

/// A store of rerank scores. Implementations are shared between request threads.
pub trait ScoreCache: Send + Sync {
    /// Which backend this is (`lru`, `redis://host:port`), for explanations and logs.
    fn describe(&self) -> String;
    /// The cached scores of `keys`, in order (`None` for a miss).
    fn get_many(&self, keys: &[CacheKey]) -> Result<Vec<Option<CachedScore>>, CacheError>;
    fn put_many(&self, items: &[(CacheKey, CachedScore)]) -> Result<(), CacheError>;
}

/// The in-process least-recently-used cache.
pub struct LruScoreCache {
    inner: Mutex<lru::LruCache<CacheKey, CachedScore>>,
    capacity: usize,
}

impl std::fmt::Debug for LruScoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LruScoreCache").field("capacity", &self.capacity).finish()
    }
}

impl LruScoreCache {
    /// Keeps up to `capacity` scores (at least 1).
    pub fn new(capacity: usize) -> LruScoreCache {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("at least 1");
        LruScoreCache { inner: Mutex::new(lru::LruCache::new(cap)), capacity: cap.get() }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ScoreCache for LruScoreCache {
    fn describe(&self) -> String {
        format!("lru({})", self.capacity)
    }

    fn get_many(&self, keys: &[CacheKey]) -> Result<Vec<Option<CachedScore>>, CacheError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(keys.iter().map(|k| inner.get(k).copied()).collect())
    }

    fn put_many(&self, items: &[(CacheKey, CachedScore)]) -> Result<(), CacheError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in items {
            inner.put(k.clone(), *v);
        }
        Ok(())
    }
}

/// Redis as a shared cache (`MGET` to read, pipelined `SET key value EX ttl` to write).
///
/// One connection, opened lazily and dropped on any error; after a failure the next attempt to reconnect
/// waits `retry_after`, so a dead Redis costs requests nothing but a lookup of the clock.
pub struct RedisScoreCache {
    address: String,
    timeout: Duration,
    ttl_seconds: u64,
    retry_after: Duration,
    state: Mutex<RedisState>,
}

#[derive(Default)]
struct RedisState {
    conn: Option<BufReader<TcpStream>>,
    failed_at: Option<Instant>,
}

impl std::fmt::Debug for RedisScoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisScoreCache").field("address", &self.address).finish()
    }
}

impl RedisScoreCache {
    /// `address` is `host:port` or `redis://host:port`; `timeout` bounds connecting and each reply.
    pub fn new(address: &str, timeout: Duration, ttl_seconds: u64) -> RedisScoreCache {
        let address = address.trim_start_matches("redis://").trim_end_matches('/').to_owned();
        RedisScoreCache {
            address,
            timeout,
            ttl_seconds: ttl_seconds.max(1),
            retry_after: Duration::from_secs(1),
            state: Mutex::new(RedisState::default()),
        }
    }

    /// How long to wait after a failure before trying to connect again.
    pub fn with_retry_after(mut self, retry_after: Duration) -> RedisScoreCache {
        self.retry_after = retry_after;
        self
    }

    fn unavailable(&self, reason: impl Into<String>) -> CacheError {
        CacheError::Unavailable { backend: format!("redis://{}", self.address), reason: reason.into() }
    }

    /// Runs `commands` (pipelined) and returns one reply per command.
    fn exchange(&self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, CacheError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.conn.is_none() {
            if let Some(at) = state.failed_at {
                if at.elapsed() < self.retry_after {
                    return Err(self.unavailable("recently failed; not retrying yet"));
                }
            }
            match self.connect() {
                Ok(c) => state.conn = Some(c),
                Err(e) => {
                    state.failed_at = Some(Instant::now());
                    return Err(self.unavailable(e));
                }
            }
        }
        let conn = state.conn.as_mut().expect("connected above");
        let result = (|| -> std::io::Result<Vec<Reply>> {
            let mut out = Vec::new();
            for c in commands {
                encode(c, &mut out);
            }
            conn.get_mut().write_all(&out)?;
            commands.iter().map(|_| read_reply(conn)).collect()
        })();
        match result {
            Ok(replies) => {
                state.failed_at = None;
                Ok(replies)
            }
            Err(e) => {
                state.conn = None;
                state.failed_at = Some(Instant::now());
                Err(self.unavailable(e.to_string()))
            }
        }
    }

    fn connect(&self) -> Result<BufReader<TcpStream>, String> {
        let addr = self
            .address
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.address))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.address))?;
        let stream = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        Ok(BufReader::new(stream))
    }
}

impl ScoreCache for RedisScoreCache {
    fn describe(&self) -> String {
        format!("redis://{}", self.address)
    }

    fn get_many(&self, keys: &[CacheKey]) -> Result<Vec<Option<CachedScore>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd: Vec<Vec<u8>> = vec![b"MGET".to_vec()];
        cmd.extend(keys.iter().map(|k| k.redis_key().into_bytes()));
        let reply = self.exchange(&[cmd])?.pop().expect("one reply");
        match reply {
            Reply::Array(items) if items.len() == keys.len() => Ok(items
                .into_iter()
                .map(|item| match item {
                    Reply::Bulk(Some(bytes)) => decode_score(&bytes),
                    _ => None,
                })
                .collect()),
            other => Err(self.unavailable(format!("MGET answered {other:?}, expected {} values", keys.len()))),
        }
    }

    fn put_many(&self, items: &[(CacheKey, CachedScore)]) -> Result<(), CacheError> {
        if items.is_empty() {
            return Ok(());
        }
        let ttl = self.ttl_seconds.to_string();
        let commands: Vec<Vec<Vec<u8>>> = items
            .iter()
            .map(|(k, v)| {
                vec![
                    b"SET".to_vec(),
                    k.redis_key().into_bytes(),
                    encode_score(v).into_bytes(),
                    b"EX".to_vec(),
                    ttl.clone().into_bytes(),
                ]
            })
            .collect();
        for reply in self.exchange(&commands)? {
            if let Reply::Error(e) = reply {
                return Err(self.unavailable(format!("SET failed: {e}")));
            }
        }
        Ok(())
    }
}

/// Exact round trip through the bit patterns: score, raw score and tokens as 8 hex digits each, then `t` or
/// `f` for truncated (25 characters).
fn encode_score(v: &CachedScore) -> String {
    format!("{:08x}{:08x}{:08x}{}", v.score.to_bits(), v.raw.to_bits(), v.tokens, if v.truncated { 't' } else { 'f' })
}

/// `None` for anything else, which the caller counts as a miss: an entry written by an older Sieve (score and
/// raw score only, 16 characters) is scored again and overwritten.
fn decode_score(bytes: &[u8]) -> Option<CachedScore> {
    let s = std::str::from_utf8(bytes).ok()?;
    if s.len() != 25 || !s.is_ascii() {
        return None;
    }
    let hex = |r: std::ops::Range<usize>| u32::from_str_radix(&s[r], 16).ok();
    let truncated = match &s[24..] {
        "t" => true,
        "f" => false,
        _ => return None,
    };
    Some(CachedScore {
        score: f32::from_bits(hex(0..8)?),
        raw: f32::from_bits(hex(8..16)?),
        tokens: hex(16..24)?,
        truncated,
    })
}

/// A RESP reply.
#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

fn encode(args: &[Vec<u8>], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
    let int = |s: &str| s.parse::<i64>().map_err(|_| bad(format!("expected a length, found {s:?}")));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(int(rest)?),
        "$" => {
            let n = int(rest)?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                std::io::Read::read_exact(r, &mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
        }
        "*" => {
            let n = int(rest)?;
            let mut items = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            Reply::Array(items)
        }
        other => return Err(bad(format!("expected a RESP reply, found {other:?}{rest:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_every_part() {
        let a = CacheKey::new("m", "i", "q", "doc");
        assert_eq!(a, CacheKey::new("m", "i", "q", "doc"));
        assert_ne!(a, CacheKey::new("m", "i", "qd", "oc"));
        assert_ne!(a, CacheKey::new("m2", "i", "q", "doc"));
        assert_ne!(a, CacheKey::new("m", "", "q", "doc"));
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let c = LruScoreCache::new(2);
        let (k1, k2, k3) = (CacheKey(1), CacheKey(2), CacheKey(3));
        let v = |s| CachedScore { score: s, raw: s * 2.0, tokens: 7, truncated: false };
        c.put_many(&[(k1.clone(), v(0.1)), (k2.clone(), v(0.2))]).unwrap();
        assert_eq!(c.get_many(std::slice::from_ref(&k1)).unwrap(), vec![Some(v(0.1))]); // k1 is now the most recent
        c.put_many(&[(k3.clone(), v(0.3))]).unwrap();
        assert_eq!(c.get_many(&[k1, k2, k3]).unwrap(), vec![Some(v(0.1)), None, Some(v(0.3))]);
    }

    #[test]
    fn scores_round_trip_bit_exactly_and_replies_parse() {
        let v = CachedScore { score: 0.123_456_79, raw: -3.5e-7, tokens: 4_000_000, truncated: true };
        assert_eq!(decode_score(encode_score(&v).as_bytes()), Some(v));
        let f = CachedScore { truncated: false, tokens: 0, ..v };
        assert_eq!(decode_score(encode_score(&f).as_bytes()), Some(f));
        assert_eq!(decode_score(b"garbage"), None);
        // an older Sieve's entry (score and raw only) is a miss, not a wrong token count
        assert_eq!(decode_score(b"3e8000003f800000"), None);
        assert_eq!(decode_score(b"3e8000003f80000000000010x"), None);
        let mut input: &[u8] = b"*3\r\n$4\r\nabcd\r\n$-1\r\n:7\r\n+OK\r\n-ERR no\r\n";
        assert_eq!(
            read_reply(&mut input).unwrap(),
            Reply::Array(vec![Reply::Bulk(Some(b"abcd".to_vec())), Reply::Bulk(None), Reply::Integer(7)])
        );
        assert_eq!(read_reply(&mut input).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(read_reply(&mut input).unwrap(), Reply::Error("ERR no".into()));
        let mut out = Vec::new();
        encode(&[b"GET".to_vec(), b"k".to_vec()], &mut out);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }

    #[test]
    fn an_unreachable_redis_is_an_error_not_a_hang() {
        // a port nothing listens on
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = RedisScoreCache::new(&format!("redis://{addr}"), Duration::from_millis(200), 60);
        let t = Instant::now();
        let err = c.get_many(&[CacheKey(1)]).unwrap_err().to_string();
        assert!(err.contains("unavailable"), "{err}");
        // the second call does not even try (retry back-off)
        let err = c.get_many(&[CacheKey(1)]).unwrap_err().to_string();
        assert!(err.contains("not retrying"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}

//! The news feed: the pipeline's recall, fusion and reranking, then the feed's own ranking
//! ([`sieve_feed::rank`]: relevance × freshness, near-duplicate clusters, MMR with a per-source cap), paged by
//! signed cursors.
//!
//! A feed pages through a **snapshot**: the first page pins the documents stored so far (`_seq` below the
//! index's next sequence number) and the origin ages are measured from; every later page searches only that
//! snapshot and leaves out every document already shown (as an item or a cluster member), so no item or story
//! appears twice and, since an unshown candidate stays a candidate, none is skipped while new articles arrive.
//! The cursor carries the snapshot, the origin, a fingerprint of the request (a cursor only continues the
//! request it came from) and the 64-bit hashes of the shown ids, signed with the index's key
//! ([`sieve_feed::cursor`]).
//!
//! Each page recalls [`FEED_POOL`] candidates plus as many as were shown (at most [`MAX_DEPTH`]), so a shown
//! candidate never pushes an unshown one out of the pool; a feed ends after the last candidate of that pool.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sieve_core::{DocId, Document, Filter, Lang, RangeField, RangeValue, ScoreBreakdown, StageTiming};
use sieve_feed::decay::{Decay, DecayShape};
use sieve_feed::{FeedCandidate, FeedParams, Thresholds};

use crate::engine::Engine;
use crate::request::{Mode, MAX_DEPTH};
use crate::stages::fuse::fuse_adapted;
use crate::stages::timing;
use crate::worker::CancelToken;
use crate::{PipelineError, SearchRequest};

/// Candidates a feed page ranks, beyond those already shown.
pub const FEED_POOL: usize = 500;
/// The largest page.
pub const MAX_FEED_LIMIT: usize = 100;
/// The freshness a request that names none gets: Gaussian, halving at one day.
pub const DEFAULT_DECAY: Decay = Decay { shape: DecayShape::Gauss, scale: 86_400.0, offset: 0.0, decay: 0.5 };

/// One feed request (one page).
#[derive(Debug, Clone)]
pub struct FeedRequest {
    /// The topic; may be blank when a profile is given.
    pub query: String,
    /// A reader's profile: documents they liked (their centroid becomes the dense query, their titles join
    /// the BM25 query, and they and their near-duplicates are left out of the feed, as seen) and keywords
    /// (joining both queries).
    pub liked: Vec<DocId>,
    pub keywords: Vec<String>,
    pub since: Option<sieve_core::Timestamp>,
    pub until: Option<sieve_core::Timestamp>,
    pub filters: Vec<Filter>,
    pub limit: usize,
    pub cursor: Option<String>,
    pub max_per_source: Option<usize>,
    /// MMR's trade-off, 0..=1.
    pub diversity: f64,
    /// `None`: no freshness at all.
    pub decay: Option<Decay>,
    /// Unix seconds ages are measured from (default: now, pinned by the cursor).
    pub origin: Option<i64>,
    pub collapse: bool,
    pub explain: bool,
    pub mode: Mode,
    pub lang: Option<Lang>,
    pub thresholds: Thresholds,
    pub cancel: Option<CancelToken>,
}

impl FeedRequest {
    /// A topic feed in `mode`: 20 items, the default decay, collapse on, diversity 0.3, no source cap.
    pub fn new(query: impl Into<String>, mode: Mode) -> FeedRequest {
        FeedRequest {
            query: query.into(),
            liked: Vec::new(),
            keywords: Vec::new(),
            since: None,
            until: None,
            filters: Vec::new(),
            limit: 20,
            cursor: None,
            max_per_source: None,
            diversity: 0.3,
            decay: Some(DEFAULT_DECAY),
            origin: None,
            collapse: true,
            explain: false,
            mode,
            lang: None,
            thresholds: Thresholds::default(),
            cancel: None,
        }
    }

    /// Checks the limits, naming the field.
    pub fn validate(&self) -> Result<(), PipelineError> {
        let bad = |field, expected, found: String| PipelineError::BadRequest { field, expected, found };
        if self.query.trim().is_empty() && self.liked.is_empty() && self.keywords.iter().all(|k| k.trim().is_empty()) {
            return Err(bad("query", "a topic, or a profile with liked ids or keywords", "none".into()));
        }
        if self.limit == 0 || self.limit > MAX_FEED_LIMIT {
            return Err(bad("limit", "1..=100", self.limit.to_string()));
        }
        if self.max_per_source == Some(0) {
            return Err(bad("max_per_source", "at least 1", "0".into()));
        }
        if !(0.0..=1.0).contains(&self.diversity) {
            return Err(bad("diversity", "a number in 0..=1", self.diversity.to_string()));
        }
        if let Some(d) = &self.decay {
            d.validate().map_err(|e| bad("decay", "scale > 0, offset >= 0 and 0 < decay < 1", e.to_string()))?;
        }
        if let (Some(s), Some(u)) = (self.since, self.until) {
            if s.unix_seconds() > u.unix_seconds() {
                return Err(bad("since", "a time before `until`", s.to_rfc3339()));
            }
        }
        Ok(())
    }

    /// A digest of everything that decides the feed's order: a cursor continues only the request it came from.
    fn fingerprint(&self) -> String {
        let mut filters: Vec<String> = self.filters.iter().map(|f| format!("{f:?}")).collect();
        filters.sort();
        let key = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{:?}|{}|{:?}|{}|{:?}|{:?}|{:?}",
            self.query,
            self.liked,
            self.keywords,
            self.since.map(|t| t.unix_seconds()),
            self.until.map(|t| t.unix_seconds()),
            filters,
            self.limit,
            self.max_per_source,
            self.diversity,
            self.decay,
            self.collapse,
            self.mode,
            self.lang,
            self.thresholds,
        );
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes()))
    }
}

/// What a cursor carries (see the module doc).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CursorState {
    v: u8,
    fp: String,
    origin: i64,
    snapshot: u64,
    /// Items on the pages so far (for ranks).
    before: usize,
    /// The shown ids' xxh3-64 hashes, little-endian, base64url.
    shown: String,
}

fn id_hash(id: &DocId) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_str().as_bytes())
}

/// A cluster as the feed shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedCluster {
    /// The id of the member stored first (the original post): the same on every page.
    pub id: DocId,
    pub size: usize,
    /// Every member, the item itself first.
    pub members: Vec<DocId>,
    /// The members' sources, as indexed (lowercased), each once, most frequent first.
    pub sources: Vec<String>,
}

/// Why an item is where it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedExplain {
    /// In 0..=1: the cross-encoder's probability, or the normalised fused score.
    pub relevance: f64,
    /// `rerank` or `fused`.
    pub relevance_from: &'static str,
    /// The decay factor of its age.
    pub freshness: f64,
    /// Seconds before the origin it was published (negative: after).
    pub age_secs: Option<i64>,
    /// MMR's penalty: `diversity · max similarity` to the items above it on this page.
    pub mmr_penalty: f64,
    /// It is here because the source cap held back an item of higher value (of a source already at the cap).
    pub promoted_by_cap: bool,
    /// The first stage's and the reranker's evidence.
    pub scores: ScoreBreakdown,
}

/// One item of a page.
#[derive(Debug, Clone, Serialize)]
pub struct FeedHit {
    pub id: DocId,
    /// Its place in the whole feed, from 1.
    pub rank: usize,
    /// `relevance · freshness`.
    pub score: f64,
    pub document: Option<Document>,
    pub cluster: FeedCluster,
    pub explain: Option<FeedExplain>,
}

/// One page of a feed.
#[derive(Debug, Clone)]
pub struct FeedResponse {
    pub items: Vec<FeedHit>,
    /// `None` at the feed's end.
    pub next_cursor: Option<String>,
    /// The pinned origin (unix seconds).
    pub origin: i64,
    /// The snapshot: documents with a sequence number below it.
    pub snapshot: u64,
    /// Candidates ranked and the clusters they formed.
    pub candidates: usize,
    pub clusters: usize,
    /// The stories the source cap kept off this page (their representatives' ids; later pages show them).
    pub held_back: Vec<DocId>,
    pub reranked: bool,
    pub timings: Vec<StageTiming>,
    pub reasons: Vec<String>,
    pub notes: Vec<String>,
}

impl Engine {
    /// The key feed cursors are signed with: `cursor.key` in the index's folder (32 random bytes, made on
    /// first use), or a random one per engine for an index in memory.
    fn cursor_key(&self) -> Result<&[u8], PipelineError> {
        if let Some(k) = self.cursor_key.get() {
            return Ok(k);
        }
        let random = || {
            let mut k = vec![0u8; 32];
            getrandom::fill(&mut k).expect("the system has a random source");
            k
        };
        let key = match self.dir() {
            None => random(),
            Some(dir) => {
                let path = dir.join("cursor.key");
                let io =
                    |e: std::io::Error| PipelineError::Io { path: path.display().to_string(), message: e.to_string() };
                match std::fs::read(&path) {
                    Ok(k) if k.len() == 32 => k,
                    _ => {
                        // written whole beside, then renamed: a reader never sees half a key
                        let k = random();
                        let tmp = dir.join(format!("cursor.key.{}", std::process::id()));
                        std::fs::write(&tmp, &k).map_err(io)?;
                        std::fs::rename(&tmp, &path).map_err(io)?;
                        std::fs::read(&path).map_err(io)?
                    }
                }
            }
        };
        Ok(self.cursor_key.get_or_init(|| key))
    }

    /// One page of a feed (see the module doc).
    pub fn feed(&self, req: &FeedRequest) -> Result<FeedResponse, PipelineError> {
        let started = Instant::now();
        let _span = tracing::debug_span!("feed", limit = req.limit).entered();
        req.validate()?;
        let fingerprint = req.fingerprint();
        let key = self.cursor_key()?.to_vec();
        let bad_cursor =
            |expected: &'static str, found: String| PipelineError::BadRequest { field: "cursor", expected, found };
        let state = match &req.cursor {
            Some(c) => {
                let s: CursorState = sieve_feed::cursor::decode(c, &key)
                    .map_err(|e| bad_cursor("a cursor this index issued, unaltered", e.to_string()))?;
                if s.fp != fingerprint {
                    return Err(bad_cursor(
                        "the cursor of this request's previous page",
                        "a cursor issued for a request with other parameters".into(),
                    ));
                }
                s
            }
            None => CursorState {
                v: 1,
                fp: fingerprint,
                origin: req.origin.unwrap_or_else(now_secs),
                snapshot: self.text().snapshot_seq()?,
                before: 0,
                shown: String::new(),
            },
        };
        let shown: HashSet<u64> = URL_SAFE_NO_PAD
            .decode(&state.shown)
            .map_err(|_| bad_cursor("a cursor this index issued", "shown ids that do not decode".into()))?
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let mut notes = Vec::new();

        // the search: the topic (or the profile) over the snapshot, as deep as the pool
        let depth = (FEED_POOL + shown.len()).min(MAX_DEPTH);
        let mut search = self.profile_request(req, &mut notes)?;
        search.k = depth;
        search.recall_k = Some(depth);
        search.with_documents = false;
        search.cancel = req.cancel.clone();
        search.lang = req.lang.clone();
        search.filters = req.filters.clone();
        search.filters.push(Filter::Range {
            field: RangeField::Seq,
            lower: std::ops::Bound::Unbounded,
            upper: std::ops::Bound::Excluded(RangeValue::Number(state.snapshot as f64)),
        });
        if req.since.is_some() || req.until.is_some() {
            let bound = |t: Option<sieve_core::Timestamp>, inclusive: bool| match t {
                Some(t) if inclusive => std::ops::Bound::Included(RangeValue::Time(t)),
                Some(t) => std::ops::Bound::Excluded(RangeValue::Time(t)),
                None => std::ops::Bound::Unbounded,
            };
            search.filters.push(Filter::Range {
                field: RangeField::PublishedAt,
                lower: bound(req.since, true),
                upper: bound(req.until, false),
            });
        }
        let search = self.with_index_settings(&search);
        let mut ranking = fuse_adapted(self.recall(&search)?, search.fusion_or_default(), search.adapt.unwrap_or(0.0));
        if search.rerank.is_some() {
            self.rerank(&search, &mut ranking)?;
        }

        // the feed's own ranking over the candidates' facts
        let t = Instant::now();
        let ids: Vec<DocId> = ranking.candidates.iter().map(|c| c.id.clone()).collect();
        let facts = self.text().story_facts(&ids)?;
        let dense_ran = ranking.dense.is_some();
        let vectors: Vec<Option<Vec<f32>>> = if dense_ran {
            self.with_graph(|g| {
                facts
                    .iter()
                    .map(|f| f.as_ref().and_then(|f| f.slot).and_then(|s| g.vector(s)).map(<[f32]>::to_vec))
                    .collect()
            })
            .unwrap_or_else(|| vec![None; ids.len()])
        } else {
            vec![None; ids.len()]
        };
        let fused: Vec<f64> = ranking.candidates.iter().map(|c| c.score as f64).collect();
        let probability: Vec<Option<f64>> =
            ranking.candidates.iter().map(|c| c.scores.rerank.as_ref().map(|r| r.score as f64)).collect();
        let relevance = sieve_feed::rank::relevance(&fused, &probability);
        let liked: HashSet<&DocId> = req.liked.iter().collect();
        let candidates: Vec<FeedCandidate> = facts
            .iter()
            .enumerate()
            .map(|(i, f)| FeedCandidate {
                relevance: relevance[i],
                published_at: f.as_ref().and_then(|f| f.published_at),
                seq: f.as_ref().map_or(u64::MAX, |f| f.seq),
                source: f.as_ref().and_then(|f| f.source.as_deref()),
                signature: f.as_ref().and_then(|f| f.signature.as_ref()),
                vector: vectors[i].as_deref(),
                // the liked documents count as seen: their stories (re-posts included) stay out of the feed
                shown: shown.contains(&id_hash(&ids[i])) || liked.contains(&ids[i]),
            })
            .collect();
        let params = FeedParams {
            origin: state.origin,
            decay: req.decay,
            collapse: req.collapse,
            diversity: req.diversity,
            max_per_source: req.max_per_source,
            limit: req.limit,
            thresholds: req.thresholds,
        };
        let page = sieve_feed::rank(&candidates, &params);
        let feed_took = t.elapsed();

        // the page's documents, clusters and the next cursor
        let t = Instant::now();
        let page_ids: Vec<DocId> = page.items.iter().map(|i| ids[i.representative].clone()).collect();
        let mut documents = HashMap::new();
        self.fetch_documents(&page_ids, &mut documents)?;
        let mut shown_now: Vec<u64> = Vec::new();
        let mut items = Vec::with_capacity(page.items.len());
        for (n, item) in page.items.iter().enumerate() {
            let id = ids[item.representative].clone();
            let members: Vec<DocId> = item.members.iter().map(|&m| ids[m].clone()).collect();
            shown_now.extend(members.iter().map(id_hash));
            let mut counts: Vec<(String, usize)> = Vec::new();
            for &m in &item.members {
                if let Some(s) = candidates[m].source {
                    match counts.iter_mut().find(|(k, _)| k == s) {
                        Some((_, c)) => *c += 1,
                        None => counts.push((s.to_owned(), 1)),
                    }
                }
            }
            counts.sort_by_key(|c| std::cmp::Reverse(c.1));
            let cluster = FeedCluster {
                id: ids[item.key].clone(),
                size: members.len(),
                members,
                sources: counts.into_iter().map(|(s, _)| s).collect(),
            };
            let c = &ranking.candidates[item.representative];
            let explain = req.explain.then(|| FeedExplain {
                relevance: item.relevance,
                relevance_from: if probability[item.representative].is_some() { "rerank" } else { "fused" },
                freshness: item.freshness,
                age_secs: candidates[item.representative].published_at.map(|p| state.origin - p),
                mmr_penalty: item.penalty,
                promoted_by_cap: item.promoted,
                scores: c.scores.clone(),
            });
            items.push(FeedHit {
                document: documents.remove(&id),
                id,
                rank: state.before + n + 1,
                score: item.score,
                cluster,
                explain,
            });
        }
        let next_cursor = (page.remaining > 0).then(|| {
            let mut bytes = URL_SAFE_NO_PAD.decode(&state.shown).unwrap_or_default();
            for h in &shown_now {
                bytes.extend_from_slice(&h.to_le_bytes());
            }
            let next = CursorState {
                shown: URL_SAFE_NO_PAD.encode(bytes),
                before: state.before + items.len(),
                ..state.clone()
            };
            sieve_feed::cursor::encode(&next, &key)
        });
        if ranking.candidates.len() >= depth && depth == MAX_DEPTH {
            notes.push(format!("the feed ranks at most {MAX_DEPTH} candidates; later pages end there"));
        }
        let mut timings = ranking.timings;
        timings.push(timing("feed", feed_took));
        timings.push(timing("fetch", t.elapsed()));
        timings.push(timing("total", started.elapsed()));
        notes.extend(ranking.notes);
        Ok(FeedResponse {
            items,
            next_cursor,
            origin: state.origin,
            snapshot: state.snapshot,
            candidates: candidates.len(),
            clusters: page.clusters,
            held_back: page.held_back.iter().map(|&i| ids[i].clone()).collect(),
            reranked: ranking.reranked,
            timings,
            reasons: ranking.reasons,
            notes,
        })
    }

    /// The search a feed request runs: its topic, or its profile's keywords and liked titles for BM25 and the
    /// centroid of the liked documents' vectors (with the keywords' embedding) for the dense leg.
    fn profile_request(&self, req: &FeedRequest, notes: &mut Vec<String>) -> Result<SearchRequest, PipelineError> {
        let keywords = req.keywords.iter().map(|k| k.trim()).filter(|k| !k.is_empty()).collect::<Vec<_>>().join(" ");
        let topic = [req.query.trim(), keywords.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let mut search = SearchRequest::in_mode(topic.clone(), req.mode);
        if req.liked.is_empty() {
            return Ok(search);
        }
        let liked: Vec<Document> = self.text().get_many(&req.liked)?.into_iter().flatten().collect();
        if liked.is_empty() {
            return Err(PipelineError::BadRequest {
                field: "profile.liked",
                expected: "ids of documents in the index",
                found: "none of them is".into(),
            });
        }
        // BM25: the topic, then each liked document's title (or the start of its body)
        let mut text = topic.clone();
        for d in &liked {
            let t = d.title.as_deref().filter(|t| !t.trim().is_empty()).or(d.body.as_deref()).unwrap_or("");
            text.push(' ');
            text.extend(t.chars().take(120));
        }
        search.query = text;
        // dense: the liked documents' centroid, with the topic's embedding as one more member
        if req.mode.dense() && self.dense_ready() {
            let facts = self.text().story_facts(&req.liked)?;
            let mut sum: Option<Vec<f32>> = None;
            let mut add = |v: &[f32]| match &mut sum {
                Some(s) => s.iter_mut().zip(v).for_each(|(a, b)| *a += b),
                None => sum = Some(v.to_vec()),
            };
            self.with_graph(|g| {
                for f in facts.iter().flatten() {
                    if let Some(v) = f.slot.and_then(|s| g.vector(s)) {
                        add(v);
                    }
                }
            });
            if !topic.is_empty() {
                if let Ok((v, _)) = self.embed_query(&topic, req.cancel.as_ref()) {
                    add(&v);
                }
            }
            if let Some(mut v) = sum {
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if n > 0.0 {
                    v.iter_mut().for_each(|x| *x /= n);
                    search.vector = Some(v);
                }
            }
        }
        // the cross-encoder scores a query against a document; a profile's query is documents
        if search.rerank.take().is_some() {
            notes.push("not reranked: a profile's query is its liked documents, not a question to score".into());
        }
        Ok(search)
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

//! The feed's paging contract as a property: for any page size, source cap, diversity, collapse setting and
//! any articles arriving between pages (new ones on the topic, re-posts of what was just shown), following
//! the cursors shows every article of the first page's snapshot that matches the topic exactly once (as an
//! item or in an item's cluster), no story twice, nothing that arrived later, and ends.

use std::collections::HashSet;

use proptest::prelude::*;
use sieve_core::{DocId, Document, Timestamp};
use sieve_pipeline::{Engine, EngineOptions, FeedRequest, Mode};
use sieve_text::{IndexSettings, TextIndex, WriterOptions};

const ORIGIN: i64 = 1_764_892_800;
const WORDS: [&str; 24] = [
    "river",
    "market",
    "council",
    "harbour",
    "winter",
    "theatre",
    "railway",
    "garden",
    "museum",
    "bridge",
    "orchard",
    "factory",
    "festival",
    "library",
    "station",
    "village",
    "courtyard",
    "lantern",
    "meadow",
    "quarry",
    "tunnel",
    "valley",
    "workshop",
    "vineyard",
];
const SOURCES: [&str; 5] = ["north", "south", "east", "west", "centre"];

fn doc(id: &str, body: &str, source: &str, hours_ago: i64) -> Document {
    let mut d = Document::new(DocId::parse(id, 64).unwrap(), "", body);
    d.source = Some(source.into());
    d.published_at = Timestamp::from_unix_seconds(ORIGIN - hours_ago * 3600);
    d
}

/// 120 articles, a pseudo-random half of them on the topic (`alpha`), a fifth re-posted by another outlet.
fn corpus(seed: u64) -> Vec<Document> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    for i in 0..120 {
        let mut words: Vec<&str> = (0..14).map(|_| WORDS[(next() % WORDS.len() as u64) as usize]).collect();
        if next() % 2 == 0 {
            words.insert((next() % 14) as usize, "alpha");
        }
        let body = format!("{} number {i}", words.join(" "));
        out.push(doc(&format!("a{i}"), &body, SOURCES[i % 5], (next() % 200) as i64 + 3));
        if next() % 5 == 0 {
            out.push(doc(&format!("a{i}-repost"), &format!("{body} reported"), SOURCES[(i + 1) % 5], 2));
        }
    }
    out
}

fn commit(engine: &Engine, docs: &[Document]) {
    let mut w = engine.text().writer(WriterOptions { threads: 1, memory_bytes: 30 << 20 }).unwrap();
    w.upsert_batch(docs).unwrap();
    w.commit(None).unwrap();
    w.finish().unwrap();
    engine.text().reload().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn following_the_cursors_shows_the_snapshot_once_while_articles_arrive(
        seed in 1u64..10_000,
        limit in 1usize..8,
        cap in proptest::option::of(1usize..3),
        diversity in 0.0f64..1.0,
        collapse in any::<bool>(),
        arrivals in proptest::collection::vec(0usize..3, 64),
    ) {
        let docs = corpus(seed);
        let expected: HashSet<String> = docs
            .iter()
            .filter(|d| d.body.as_deref().unwrap().split(' ').any(|w| w == "alpha"))
            .map(|d| d.id.as_str().to_owned())
            .collect();
        let text = TextIndex::in_memory(IndexSettings::default()).unwrap();
        let engine = Engine::from_parts(None, text, None, EngineOptions::default()).unwrap();
        commit(&engine, &docs);

        let mut req = FeedRequest::new("alpha", Mode::Bm25);
        req.limit = limit;
        req.max_per_source = cap;
        req.diversity = diversity;
        req.collapse = collapse;
        req.origin = Some(ORIGIN);
        let (mut seen, mut stories, mut arrived) = (HashSet::new(), HashSet::new(), Vec::new());
        let mut ended = false;
        for page in 0..400 {
            let res = engine.feed(&req).unwrap();
            prop_assert!(res.items.len() <= limit);
            let mut per_source = std::collections::HashMap::new();
            for item in &res.items {
                prop_assert!(stories.insert(item.cluster.id.clone()), "story {} twice", item.cluster.id.as_str());
                for m in &item.cluster.members {
                    prop_assert!(seen.insert(m.as_str().to_owned()), "{} twice", m.as_str());
                }
                let source = item.document.as_ref().and_then(|d| d.source.clone());
                *per_source.entry(source).or_insert(0usize) += 1;
            }
            if let Some(cap) = cap {
                prop_assert!(per_source.values().all(|&n| n <= cap), "{per_source:?}");
            }
            // articles arrive: new ones on the topic, and re-posts of what this page showed
            let mut new = Vec::new();
            for k in 0..arrivals[page % arrivals.len()] {
                let id = format!("late{page}-{k}");
                new.push(doc(&id, &format!("alpha breaking {id} river"), SOURCES[k % 5], 0));
                arrived.push(id);
            }
            if let Some(first) = res.items.first().and_then(|i| i.document.as_ref()) {
                let id = format!("late{page}-repost");
                new.push(doc(&id, &format!("{} again", first.body.as_deref().unwrap_or("")), "west", 0));
                arrived.push(id);
            }
            commit(&engine, &new);
            match res.next_cursor {
                Some(c) => req.cursor = Some(c),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        prop_assert!(ended, "the feed ends");
        for a in &arrived {
            prop_assert!(!seen.contains(a), "{a} arrived after the first page");
        }
        prop_assert_eq!(seen, expected);
    }
}

//! Tests of the BM25 index on small in-memory and on-disk indexes.

use serde_json::json;
use sieve_core::{Checkpoint, Document, Filter, Limits, SourceProgress};

use crate::{Bm25Params, Bm25Query, FieldBoosts, IndexSettings, TextError, TextIndex, WriterOptions};

fn doc(v: serde_json::Value) -> Document {
    Document::from_json(v, &Limits::default()).unwrap()
}

fn opts() -> WriterOptions {
    WriterOptions { threads: 1, memory_bytes: 20 << 20 }
}

fn catalog() -> TextIndex {
    let index = TextIndex::in_memory(IndexSettings::default()).unwrap();
    let mut w = index.writer(opts()).unwrap();
    for d in [
        json!({"id": "p1", "title": "Sony Turntable - PSLX350H", "body": "Belt drive turntable", "brand": "Sony", "category": "electronics/audio", "price": 149.0}),
        json!({"id": "p2", "title": "Bose Acoustimass 5 Speaker System - AM53BK", "body": "Speaker system", "brand": "Bose", "category": "electronics/audio", "price": 399.0}),
        json!({"id": "p3", "title": "Linksys EtherFast EZXS88W Ethernet Switch", "body": "8 port switch", "brand": "Linksys", "category": "computers/networking", "price": 49.99}),
        json!({"id": "p4", "title": "Sony Bravia 40\" LCD TV", "body": "Full HD television", "brand": "Sony", "category": "electronics/tv", "price": 899.0, "tags": ["sale"]}),
        json!({"id": "n1", "title": "苹果发布新款iPhone", "body": "苹果公司今天发布了新款手机", "source": "Sina", "published_at": "2024-05-01T08:00:00Z"}),
        json!({"id": "n2", "title": "電腦銷量上升", "body": "", "source": "Xinhua", "published_at": "2023-01-01T00:00:00Z", "lang": "zh-Hant"}),
    ] {
        w.upsert(&doc(d)).unwrap();
    }
    w.commit(None).unwrap();
    index.reload().unwrap();
    index
}

fn ids(index: &TextIndex, q: &str, filters: &[&str]) -> Vec<String> {
    let mut query = Bm25Query::new(q, 10);
    query.filters = filters.iter().map(|f| f.parse::<Filter>().unwrap()).collect();
    index.search(&query).unwrap().hits.into_iter().map(|h| h.id.to_string()).collect()
}

#[test]
fn finds_products_by_code_written_differently() {
    let index = catalog();
    assert_eq!(ids(&index, "PS-LX350H", &[])[0], "p1");
    assert_eq!(ids(&index, "PSLX350H", &[])[0], "p1");
    assert_eq!(ids(&index, "ezxs88w", &[])[0], "p3");
    assert_eq!(ids(&index, "AM-53BK", &[])[0], "p2");
}

#[test]
fn finds_chinese_including_traditional() {
    let index = catalog();
    assert_eq!(ids(&index, "苹果手机", &[])[0], "n1");
    assert_eq!(ids(&index, "电脑销量", &[])[0], "n2");
    assert_eq!(ids(&index, "電腦", &[])[0], "n2");
}

#[test]
fn filters_restrict_results() {
    let index = catalog();
    let mut sony = ids(&index, "sony", &[]);
    sony.sort();
    assert_eq!(sony, ["p1", "p4"]);
    assert_eq!(ids(&index, "sony", &["price<200"]), ["p1"]);
    assert_eq!(ids(&index, "sony", &["price>=200"]), ["p4"]);
    assert_eq!(ids(&index, "sony", &["category=electronics/tv"]), ["p4"]);
    assert_eq!(ids(&index, "sony speaker", &["category=Electronics"]).len(), 3);
    assert_eq!(ids(&index, "sony speaker", &["brand=bose"]), ["p2"]);
    assert_eq!(ids(&index, "sony speaker", &["brand!=Sony"]), ["p2"]);
    assert_eq!(ids(&index, "sony speaker switch", &["brand=Bose|Linksys", "price=40..100"]), ["p3"]);
    assert_eq!(ids(&index, "sony", &["tags=SALE"]), ["p4"]);
    assert_eq!(ids(&index, "苹果 电脑", &["published_at>=2024-01-01"]), ["n1"]);
    assert_eq!(ids(&index, "苹果 电脑", &["source=xinhua"]), ["n2"]);
    assert_eq!(ids(&index, "电脑", &["lang=zh"]), ["n2"]);
    assert!(ids(&index, "sony", &["price>10000"]).is_empty());
}

#[test]
fn hits_carry_rank_score_and_field_breakdown() {
    let index = catalog();
    let res = index.search(&Bm25Query::new("sony turntable", 10)).unwrap();
    let top = &res.hits[0];
    assert_eq!((top.id.as_str(), top.rank), ("p1", 1));
    let bm25 = top.scores.bm25.as_ref().unwrap();
    let sum: f32 = bm25.fields.iter().map(|(_, s)| s).sum();
    assert!((sum - top.score).abs() < 1e-4, "field parts {:?} must add up to {}", bm25.fields, top.score);
    assert_eq!(bm25.fields.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), ["title", "body"]);
    assert!(res.hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(res.matched, 2);
    assert_eq!(top.document.as_ref().unwrap().brand.as_deref(), Some("Sony"));
}

#[test]
fn scores_follow_the_bm25_formula() {
    // One field, one term: score = idf · tf·(k1+1)/(tf + k1·(1 − b + b·len/avgdl)).
    let index = TextIndex::in_memory(IndexSettings::default()).unwrap();
    let mut w = index.writer(opts()).unwrap();
    w.upsert(&doc(json!({"id": "a", "title": "apple apple banana"}))).unwrap();
    w.upsert(&doc(json!({"id": "b", "title": "cherry"}))).unwrap();
    w.commit(None).unwrap();
    index.reload().unwrap();
    let p = Bm25Params { k1: 1.2, b: 0.75 };
    let mut q = Bm25Query::new("apple", 10);
    q.params = Some(p);
    q.boosts = Some(FieldBoosts { title: 1.0, body: 1.0 });
    let got = index.search(&q).unwrap().hits[0].score;
    let (n, df, tf, len, avgdl) = (2.0f64, 1.0, 2.0, 3.0, 2.0);
    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
    let expected = idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / avgdl));
    assert!((got as f64 - expected).abs() < 1e-5, "{got} vs {expected}");
}

#[test]
fn bm25f_field_weights_combine_before_saturation() {
    // The same word in title and body counts once, with the title weighted: score = idf·sat(2·tf_t/n_t + tf_b/n_b).
    let index = TextIndex::in_memory(IndexSettings::default()).unwrap();
    let mut w = index.writer(opts()).unwrap();
    w.upsert(&doc(json!({"id": "a", "title": "kettle", "body": "steel kettle"}))).unwrap();
    w.upsert(&doc(json!({"id": "b", "title": "toaster", "body": "two slot toaster"}))).unwrap();
    w.commit(None).unwrap();
    index.reload().unwrap();
    let p = Bm25Params { k1: 1.2, b: 0.75 };
    let mut q = Bm25Query::new("kettle", 10);
    q.params = Some(p);
    let hit = index.search(&q).unwrap().hits.remove(0);
    let idf = (1.0f32 + (2.0 - 1.0 + 0.5) / (1.0 + 0.5)).ln();
    // title: len 1 = avg 1 → norm 1; body: len 2 = avg (2+3)/2 = 2.5 → norm 0.25 + 0.75·2/2.5 = 0.85
    let tt = 2.0 * 1.0 / 1.0 + 1.0 / (0.25 + 0.75 * 2.0 / 2.5);
    let expected = idf * tt * 2.2 / (tt + 1.2);
    assert!((hit.score - expected).abs() < 1e-4, "{} vs {expected}", hit.score);
    let parts = &hit.scores.bm25.as_ref().unwrap().fields;
    assert!((parts[0].1 / parts[1].1 - 2.0 / (1.0 / 0.85)).abs() < 1e-3, "parts split by field share: {parts:?}");
}

#[test]
fn upsert_replaces_and_delete_removes() {
    let index = catalog();
    let mut w = index.writer(opts()).unwrap();
    w.upsert(&doc(json!({"id": "p1", "title": "Technics SL-1200 turntable", "brand": "Technics"}))).unwrap();
    w.delete(&sieve_core::DocId::parse("p2", 64).unwrap());
    w.commit(None).unwrap();
    index.reload().unwrap();
    assert_eq!(index.num_docs(), 5);
    assert_eq!(index.get("p1").unwrap().unwrap().brand.as_deref(), Some("Technics"));
    assert!(index.get("p2").unwrap().is_none());
    assert!(ids(&index, "PSLX350H", &[]).is_empty());
    assert_eq!(ids(&index, "sl1200", &[]), ["p1"]);
}

#[test]
fn uncommitted_changes_are_invisible_and_rollback_discards_them() {
    let index = catalog();
    let mut w = index.writer(opts()).unwrap();
    w.upsert(&doc(json!({"id": "x", "title": "zebra"}))).unwrap();
    index.reload().unwrap();
    assert!(ids(&index, "zebra", &[]).is_empty());
    w.rollback().unwrap();
    w.commit(None).unwrap();
    index.reload().unwrap();
    assert!(ids(&index, "zebra", &[]).is_empty());
}

#[test]
fn checkpoint_is_committed_with_the_batch_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let settings = IndexSettings { bm25: Bm25Params { k1: 1.1, b: 0.6 }, ..IndexSettings::default() };
    {
        let index = TextIndex::create(dir.path(), settings).unwrap();
        let mut w = index.writer(opts()).unwrap();
        w.upsert(&doc(json!({"id": "a", "title": "hello world"}))).unwrap();
        let mut cp = Checkpoint::default();
        cp.upsert(SourceProgress {
            source: "/data/x.jsonl".into(),
            fingerprint: "f".into(),
            line: 1,
            byte_offset: 30,
            docs: 1,
            rejected: 0,
            complete: false,
        });
        w.commit(Some(cp)).unwrap();
        // A commit without a checkpoint keeps the previous one.
        w.upsert(&doc(json!({"id": "b", "title": "second"}))).unwrap();
        w.commit(None).unwrap();
        w.finish().unwrap();
    }
    let index = TextIndex::open(dir.path()).unwrap();
    assert_eq!(index.settings(), settings, "settings come from the manifest");
    assert_eq!(index.num_docs(), 2);
    assert_eq!(index.checkpoint().unwrap().get("/data/x.jsonl").unwrap().line, 1);
    // open_or_create keeps the existing settings.
    let again = TextIndex::open_or_create(dir.path(), IndexSettings::default()).unwrap();
    assert_eq!(again.settings(), settings);
}

#[test]
fn second_writer_is_refused_while_the_first_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let index = TextIndex::create(dir.path(), IndexSettings::default()).unwrap();
    let _w = index.writer(opts()).unwrap();
    let other = TextIndex::open(dir.path()).unwrap();
    assert!(matches!(other.writer(opts()), Err(TextError::Locked { .. })));
}

#[test]
fn creating_over_an_existing_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    TextIndex::create(dir.path(), IndexSettings::default()).unwrap();
    let other = IndexSettings { bm25: Bm25Params { k1: 2.0, b: 0.1 }, ..IndexSettings::default() };
    assert!(matches!(TextIndex::create(dir.path(), other), Err(TextError::AlreadyAnIndex { .. })));
    assert_eq!(TextIndex::open(dir.path()).unwrap().settings(), IndexSettings::default(), "settings unchanged");
}

#[test]
fn opening_a_non_index_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = TextIndex::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("not a Sieve index"), "{err}");
}

#[test]
fn empty_and_punctuation_queries_return_nothing() {
    let index = catalog();
    assert!(ids(&index, "", &[]).is_empty());
    assert!(ids(&index, "?!,", &[]).is_empty());
    assert!(ids(&index, "the of and", &[]).is_empty());
}

#[test]
fn reused_score_buffers_do_not_leak_between_queries_or_indexes() {
    // Searches on one thread share accumulators; alternate a larger and a smaller index and compare.
    let big = catalog();
    let small = TextIndex::in_memory(IndexSettings::default()).unwrap();
    let mut w = small.writer(opts()).unwrap();
    w.upsert(&doc(json!({"id": "s1", "title": "sony"}))).unwrap();
    w.commit(None).unwrap();
    small.reload().unwrap();
    let scores = |index: &TextIndex, q: &str| -> Vec<(String, f32)> {
        index.search(&Bm25Query::new(q, 10)).unwrap().hits.into_iter().map(|h| (h.id.to_string(), h.score)).collect()
    };
    let first = scores(&big, "sony turntable speaker");
    let lone = scores(&small, "sony");
    assert_eq!(scores(&big, "sony turntable speaker"), first);
    assert_eq!(scores(&small, "sony"), lone);
    assert_eq!(lone.len(), 1);
    // a query matching nothing in between leaves nothing behind either
    assert!(scores(&big, "zzz").is_empty());
    assert_eq!(scores(&big, "sony turntable speaker"), first);
}

#[test]
fn equal_scores_rank_by_id_whatever_the_segment_layout() {
    // Six documents that score the same for "shoe" and one that scores higher, written in two orders and
    // segment layouts: the top k, and the order within it, must not depend on either.
    let tied = ["t3", "t1", "t6", "t2", "t5", "t4"];
    let build = |order: &[&str], commit_every: usize| {
        let index = TextIndex::in_memory(IndexSettings::default()).unwrap();
        let mut w = index.writer(opts()).unwrap();
        w.upsert(&doc(json!({"id": "best", "title": "shoe shoe", "body": "running shoe"}))).unwrap();
        for (i, id) in order.iter().enumerate() {
            w.upsert(&doc(json!({"id": id, "title": "red shoe", "body": "leather"}))).unwrap();
            if (i + 1) % commit_every == 0 {
                w.commit(None).unwrap();
            }
        }
        w.commit(None).unwrap();
        index.reload().unwrap();
        index
    };
    let reversed: Vec<&str> = tied.iter().rev().copied().collect();
    let (a, b) = (build(&tied, 1), build(&reversed, 4));
    for k in [1, 2, 3, 7, 10] {
        for exhaustive in [false, true] {
            let mut q = Bm25Query::new("shoe", k);
            q.exhaustive = exhaustive;
            let hits = |index: &TextIndex| -> Vec<(String, f32)> {
                index.search(&q).unwrap().hits.into_iter().map(|h| (h.id.to_string(), h.score)).collect()
            };
            let (ha, hb) = (hits(&a), hits(&b));
            let want: Vec<&str> = ["best", "t1", "t2", "t3", "t4", "t5", "t6"].into_iter().take(k).collect();
            assert_eq!(ha.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(), want, "k {k}: {ha:?}");
            assert_eq!(ha, hb, "k {k}");
            if k > 2 {
                assert_eq!(ha[1].1, ha[2].1, "the test needs tied scores: {ha:?}");
            }
        }
    }
}

#[test]
fn pruned_top_k_equals_exhaustive_scoring() {
    // Zipf-like vocabulary, random documents and queries (a fixed-seed LCG keeps it deterministic).
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let words: Vec<String> = (0..300).map(|i| format!("w{i}x")).collect();
    let zipf = |next: &mut dyn FnMut(u64) -> u64| {
        // rank r with probability ~ 1/r: pick from a growing prefix
        let r = next(300) + 1;
        &words[next(r) as usize]
    };
    let index = TextIndex::in_memory(IndexSettings::default()).unwrap();
    let mut w = index.writer(opts()).unwrap();
    for i in 0..3000 {
        let title: Vec<&str> = (0..1 + next(4)).map(|_| zipf(&mut next).as_str()).collect();
        let body: Vec<&str> = (0..5 + next(60)).map(|_| zipf(&mut next).as_str()).collect();
        let price = next(1000) as f64;
        w.upsert(&doc(
            json!({"id": format!("d{i}"), "title": title.join(" "), "body": body.join(" "), "price": price}),
        ))
        .unwrap();
        if i % 700 == 699 {
            w.commit(None).unwrap(); // several segments
        }
    }
    for i in (0..3000).step_by(17) {
        w.delete(&sieve_core::DocId::parse(&format!("d{i}"), 64).unwrap());
    }
    w.commit(None).unwrap();
    index.reload().unwrap();

    let mut pruned_somewhere = false;
    for round in 0..200 {
        let terms: Vec<&str> = (0..1 + next(7)).map(|_| zipf(&mut next).as_str()).collect();
        let mut q = Bm25Query::new(terms.join(" "), [1, 3, 10, 50][round % 4]);
        q.with_documents = false;
        if round % 5 == 0 {
            q.filters = vec!["price<400".parse().unwrap()];
        }
        let fast = index.search(&q).unwrap();
        q.exhaustive = true;
        let full = index.search(&q).unwrap();
        pruned_somewhere |= fast.pruned;
        assert!(!full.pruned);
        let ids = |r: &crate::Bm25Results| r.hits.iter().map(|h| (h.id.to_string(), h.score)).collect::<Vec<_>>();
        let (a, b) = (ids(&fast), ids(&full));
        assert_eq!(a.len(), b.len(), "query {:?}", q.text);
        for ((ia, sa), (ib, sb)) in a.iter().zip(&b) {
            assert_eq!(ia, ib, "query {:?}: {a:?} vs {b:?}", q.text);
            assert!((sa - sb).abs() <= 1e-4 * sb.abs().max(1.0), "query {:?}: {sa} vs {sb}", q.text);
        }
        assert!(fast.matched <= full.matched);
        if !fast.pruned {
            assert_eq!(fast.matched, full.matched);
        }
    }
    assert!(pruned_somewhere, "the test corpus must exercise pruning");
}

#[test]
fn vectors_are_stored_with_their_documents_under_slots_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let index = TextIndex::create(dir.path(), IndexSettings::default()).unwrap();
    let docs: Vec<Document> = [
        json!({"id": "a", "title": "alpha", "brand": "Sony"}),
        json!({"id": "b", "title": "beta", "brand": "Bose"}),
        json!({"id": "c", "title": "gamma", "brand": "Sony"}),
    ]
    .into_iter()
    .map(doc)
    .collect();
    let vectors = vec![Some(vec![1.0, 0.0]), Some(vec![0.0, 1.0]), Some(vec![0.5, -0.25])];
    let mut w = index.writer(opts()).unwrap();
    w.upsert_batch_with_vectors(&docs, Some(&vectors)).unwrap();
    w.upsert(&doc(json!({"id": "plain", "title": "no vector"}))).unwrap();
    w.upsert_batch_with_vectors(&[doc(json!({"id": "empty"}))], Some(&[None])).unwrap();
    w.commit(None).unwrap();
    let first_generation = index.generation().unwrap();
    w.finish().unwrap();
    index.reload().unwrap();
    let entries = index.vector_entries(&|slot| slot == 2).unwrap();
    let got: Vec<(u64, &str, Option<&Vec<f32>>)> =
        entries.iter().map(|e| (e.slot, e.id.as_str(), e.vector.as_ref())).collect();
    assert_eq!(got, vec![(0, "a", None), (1, "b", None), (2, "c", Some(&vec![0.5, -0.25]))]);
    // what a graph that knows slot 0 and holds the vectors of 0 and 1 is told: every live slot, the ids of
    // the others, the vector it lacks
    let found = index.live_vectors(&|slot| slot == 0, &|slot| slot < 2).unwrap();
    assert_eq!(found.slots, vec![0, 1, 2]);
    let got: Vec<(u64, &str, Option<&Vec<f32>>)> =
        found.new.iter().map(|e| (e.slot, e.id.as_str(), e.vector.as_ref())).collect();
    assert_eq!(got, vec![(1, "b", None), (2, "c", Some(&vec![0.5, -0.25]))]);
    assert_eq!(index.filter_slots(&["brand=Sony".parse().unwrap()]).unwrap(), vec![0, 2]);

    // A new writer continues after the committed slots; replacing "a" retires slot 0, deleting "b" slot 1.
    let mut w = index.writer(opts()).unwrap();
    assert_eq!(w.next_slot(), 3);
    w.upsert_batch_with_vectors(&docs[..1], Some(&[Some(vec![0.0, 2.0])])).unwrap();
    w.delete(&docs[1].id);
    w.commit(None).unwrap();
    w.finish().unwrap();
    index.reload().unwrap();
    assert!(index.generation().unwrap() > first_generation);
    let entries = index.vector_entries(&|_| true).unwrap();
    let got: Vec<(u64, &str)> = entries.iter().map(|e| (e.slot, e.id.as_str())).collect();
    assert_eq!(got, vec![(2, "c"), (3, "a")]);
    let found = index.live_vectors(&|slot| slot <= 2, &|_| true).unwrap();
    assert_eq!(found.slots, vec![2, 3]);
    assert_eq!(
        found.new.iter().map(|e| (e.slot, e.id.as_str(), e.vector.is_some())).collect::<Vec<_>>(),
        vec![(3, "a", false)]
    );
    assert_eq!(entries[1].vector, Some(vec![0.0, 2.0]));

    // Slots handed out but never committed are not handed out again either way: the next writer starts
    // after the last committed slot.
    let mut w = index.writer(opts()).unwrap();
    w.upsert_batch_with_vectors(&docs[2..], Some(&[Some(vec![1.0, 1.0])])).unwrap();
    w.rollback().unwrap();
    drop(w);
    let w = index.writer(opts()).unwrap();
    assert_eq!(w.next_slot(), 4);
    let found = index.get_many(&[docs[2].id.clone(), docs[1].id.clone()]).unwrap();
    assert_eq!(found[0].as_ref().map(|d| d.id.as_str()), Some("c"));
    assert!(found[1].is_none());
}

/// A folder that holds other files is never turned into an index; an empty one, or one a create left without
/// its manifest, is.
#[test]
fn an_index_is_created_only_in_a_new_empty_or_half_created_folder() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("photos");
    std::fs::create_dir_all(foreign.join("2024")).unwrap();
    std::fs::write(foreign.join("a.jpg"), b"x").unwrap();
    let err = TextIndex::create(&foreign, IndexSettings::default()).unwrap_err().to_string();
    assert!(err.contains("expected a new or empty folder, or a Sieve index") && err.contains("2024, a.jpg"), "{err}");
    assert!(!foreign.join("sieve.json").exists() && !foreign.join("bm25").exists(), "nothing written");
    let err = TextIndex::open_or_create(&foreign, IndexSettings::default()).unwrap_err().to_string();
    assert!(err.contains("found a folder holding other files"), "{err}");

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(TextIndex::create(&empty, IndexSettings::default()).is_ok());
    let half = dir.path().join("half");
    std::fs::create_dir_all(half.join("bm25")).unwrap();
    assert!(TextIndex::create(&half, IndexSettings::default()).is_ok());
    assert!(TextIndex::create(&dir.path().join("new/deeper"), IndexSettings::default()).is_ok());
}

/// Two processes racing to create one new index both end up with it open (one creates it, the other opens
/// it); before, the loser failed with "sieve.json: No such file or directory" (both renamed one temporary file).
#[test]
fn racing_creates_of_one_index_both_succeed() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("idx{round}"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    TextIndex::open_or_create(&path, IndexSettings::default()).map(|t| t.num_docs())
                })
            })
            .collect();
        for r in racers {
            assert_eq!(r.join().unwrap().unwrap(), 0, "round {round}");
        }
        let left: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
}

fn search_with(index: &TextIndex, q: &str, tolerance: crate::Tolerance) -> crate::Bm25Results {
    let mut query = Bm25Query::new(q, 10);
    query.tolerance = Some(tolerance);
    index.search(&query).unwrap()
}

#[test]
fn a_word_that_matches_nothing_is_corrected_within_one_or_two_edits() {
    let index = catalog();
    let on = crate::Tolerance::default();
    // one edit in a word of 5+ letters: "turntabel" (swap) and "speeker" (substitution)
    for (typo, want) in [("turntabel ", "p1"), ("speeker ", "p2"), ("etherfsat ", "p3")] {
        let res = search_with(&index, typo, on);
        assert_eq!(res.hits.first().map(|h| h.id.as_str()), Some(want), "{typo}: {:?}", res.expansions);
        assert_eq!(res.expansions[0].kind, crate::ExpansionKind::Typo);
        assert!(search_with(&index, typo, crate::Tolerance::EXACT).hits.iter().all(|h| h.id.as_str() != want));
    }
    // two edits only from 9 characters on: "etherfsst" (9) is found, "spaekre" (7, two edits) is not
    assert_eq!(search_with(&index, "etherfsst ", on).hits[0].id.as_str(), "p3");
    assert!(search_with(&index, "spaekre ", on).hits.is_empty());
    // short words and codes are never corrected
    assert!(search_with(&index, "sany ", on).expansions.is_empty());
    assert!(search_with(&index, "pslx351h ", on).hits.is_empty(), "a code is not corrected into another");
    // per request, off
    assert!(search_with(&index, "turntabel ", crate::Tolerance { typos: false, ..on }).hits.is_empty());
}

#[test]
fn the_word_being_typed_and_codes_match_as_prefixes_and_exact_words_rank_first() {
    let index = catalog();
    let on = crate::Tolerance::default();
    let res = search_with(&index, "sony turnt", on);
    assert_eq!(res.hits[0].id.as_str(), "p1", "{:?}", res.expansions);
    assert_eq!(res.expansions[0].kind, crate::ExpansionKind::Prefix);
    assert!(search_with(&index, "sony turnt ", on).hits.iter().all(|h| h.id.as_str() != "p1" || h.score < 2.0),);
    // a half-typed code, anywhere in the query
    assert_eq!(search_with(&index, "PSLX35", on).hits[0].id.as_str(), "p1");
    assert_eq!(search_with(&index, "PS-LX35 sony", on).hits[0].id.as_str(), "p1");
    assert!(search_with(&index, "PSLX35", crate::Tolerance::EXACT).hits.is_empty());
    // "switch" exactly (p3) outranks a completion of "sw" elsewhere; the exact word keeps its full weight
    let exact = search_with(&index, "switch", on);
    let plain = search_with(&index, "switch", crate::Tolerance::EXACT);
    assert_eq!(exact.hits[0].id, plain.hits[0].id);
    assert!(exact.hits[0].score >= plain.hits[0].score);
}

#[test]
fn code_carriers_are_the_documents_with_the_code_in_any_spelling() {
    let index = catalog();
    for q in ["PSLX350H", "ps-lx350h turntable", "sony PS LX350H"] {
        let carriers = index.code_carriers(q, None, &[], 10).unwrap();
        assert_eq!(carriers.len(), 1, "{q}: {carriers:?}");
        assert_eq!(carriers[0].id.as_str(), "p1");
        assert!(carriers[0].codes.contains(&"pslx350h".to_owned()), "{carriers:?}");
    }
    assert!(index.code_carriers("sony turntable", None, &[], 10).unwrap().is_empty());
    // a space join of an ordinary word and a code names no product ("drive 350h" is not a code as written)
    assert!(index.code_carriers("belt drive 350h", None, &[], 10).unwrap().is_empty());
    let price: Filter = "price>500".parse().unwrap();
    assert!(index.code_carriers("PSLX350H", None, &[price], 10).unwrap().is_empty(), "filters hold");
}

fn browse_ids(res: &crate::BrowseResults) -> Vec<&str> {
    res.hits.iter().map(|h| h.id.as_str()).collect()
}

#[test]
fn a_blank_query_browses_every_live_document_in_the_asked_order() {
    let index = catalog();
    let mut q = crate::BrowseQuery { k: 2, facet_size: 10, ..Default::default() };
    // the index's default order (none set): by id
    let res = index.browse(&q).unwrap();
    assert_eq!(res.total, 6);
    assert_eq!(browse_ids(&res), ["n1", "n2"]);

    // Sony's products, cheapest first, page by page: no gaps, no repeats, and the facets count the whole set
    q.filters = vec!["brand=sony".parse().unwrap()];
    q.sort = Some("price:asc".parse().unwrap());
    q.k = 1;
    q.facets = vec![sieve_core::FacetField::Brand, sieve_core::FacetField::Category, sieve_core::FacetField::Price];
    let first = index.browse(&q).unwrap();
    assert_eq!((first.total, browse_ids(&first)), (2, vec!["p1"]));
    let f = &first.facets;
    assert_eq!(f["brand"], vec![sieve_core::FacetCount { value: "sony".into(), count: 2 }]);
    let cats: Vec<(&str, usize)> = f["category"].iter().map(|c| (c.value.as_str(), c.count)).collect();
    assert_eq!(cats, [("electronics", 2), ("electronics/audio", 1), ("electronics/tv", 1)]);
    q.offset = 1;
    assert_eq!(browse_ids(&index.browse(&q).unwrap()), ["p4"]);
    q.offset = 2;
    assert!(index.browse(&q).unwrap().hits.is_empty());

    // documents without the key go last; desc reverses only those with it
    let mut all = crate::BrowseQuery { k: 10, sort: Some("price:desc".parse().unwrap()), ..Default::default() };
    assert_eq!(browse_ids(&index.browse(&all).unwrap()), ["p4", "p2", "p1", "p3", "n1", "n2"]);
    all.sort = Some("published_at:desc".parse().unwrap());
    assert_eq!(&browse_ids(&index.browse(&all).unwrap())[..2], ["n1", "n2"]);
}

#[test]
fn a_sorted_query_orders_every_match_not_a_window() {
    let index = catalog();
    let mut q = crate::BrowseQuery {
        text: "sony speaker".into(),
        k: 10,
        sort: Some("price:asc".parse().unwrap()),
        ..Default::default()
    };
    let res = index.browse(&q).unwrap();
    assert_eq!(browse_ids(&res), ["p1", "p2", "p4"], "every document matching a word, cheapest first");
    assert!(res.hits.iter().all(|h| h.bm25 > 0.0));
    // a document in the set through its embedding only (none here has one) would join; ranked documents
    // settle ties first
    q.sort = None;
    q.ranked = vec![sieve_core::DocId::parse("p4", 64).unwrap()];
    assert_eq!(browse_ids(&index.browse(&q).unwrap())[0], "p4");
    // facets of a list of ids count the same way
    let f = index
        .facets_of(
            &[sieve_core::DocId::parse("p1", 64).unwrap(), sieve_core::DocId::parse("p4", 64).unwrap()],
            &[sieve_core::FacetField::Tags],
            5,
        )
        .unwrap();
    assert_eq!(f["tags"], vec![sieve_core::FacetCount { value: "sale".into(), count: 1 }]);
}

#[test]
fn suggestions_complete_the_typed_word_from_titles_codes_and_brands() {
    let index = catalog();
    let ask = |text: &str| {
        let q = crate::SuggestQuery { text: text.into(), limit: 5, ..Default::default() };
        index.suggest(&q).unwrap()
    };
    let texts = |s: &crate::Suggestions| s.completions.iter().map(|c| c.text.clone()).collect::<Vec<_>>();

    let s = ask("sony tur");
    assert_eq!(texts(&s)[0], "sony turntable");
    assert_eq!(s.completions[0].kind, crate::SuggestionKind::Word);
    assert_eq!(s.documents[0].id.as_str(), "p1");
    assert_eq!(s.documents[0].price, Some(149.0));

    // a half-typed code completes to the code as the title writes it
    let s = ask("PSLX35");
    assert_eq!(s.completions[0].text, "PSLX350H");
    assert_eq!(s.completions[0].kind, crate::SuggestionKind::Code);

    // a brand that begins with the query, counted over the index
    let s = ask("lin");
    let brand = s.completions.iter().find(|c| c.kind == crate::SuggestionKind::Brand).unwrap();
    assert_eq!((brand.text.as_str(), brand.count), ("linksys", 1));

    // after a space: the word titles put next
    assert_eq!(texts(&ask("ethernet "))[0], "ethernet switch");
    // filters hold for what is suggested
    let q = crate::SuggestQuery {
        text: "so".into(),
        limit: 5,
        filters: vec!["price>500".parse().unwrap()],
        ..Default::default()
    };
    let s = index.suggest(&q).unwrap();
    assert!(s.documents.iter().all(|d| d.id.as_str() == "p4"), "{:?}", s.documents);
    assert!(ask("   ").completions.is_empty());
}

//! What the news feed needs to know about each candidate, read from the index's columns rather than the stored
//! documents (a feed page weighs hundreds of candidates): its ingest sequence number (the snapshot a feed
//! pages through), publication time, source, embedding slot and MinHash signature.
//!
//! The signature is computed at ingest ([`signature`]) over the document's title and body with full-width
//! forms folded and Traditional characters folded to Simplified, so a re-post in Traditional script, or with
//! other punctuation, shingles like the original; the shingling and hashing are `sieve_feed::signature`'s.

use std::sync::LazyLock;

use sieve_core::{DocId, Document};
use sieve_feed::signature::{Signature, Signer, NUM_HASHES};

use crate::index::{engine, io_engine, TextError, TextIndex};

static SIGNER: LazyLock<Signer> = LazyLock::new(Signer::default);

/// Bits a stored signature value keeps of its minimum: the top 7 hold its position (0..64 for the minima, 64
/// for the shingle count).
const VALUE_BITS: u32 = 57;
const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;

/// The MinHash signature of `doc`'s title and body (see the module doc); `None` for a document without text.
pub fn signature(doc: &Document) -> Option<Signature> {
    let text = [doc.title.as_deref(), doc.body.as_deref()].into_iter().flatten().collect::<Vec<_>>().join("\n");
    let folded = fast2s::convert(&crate::analyzer::fold_width(&text));
    SIGNER.sign(&folded).map(|mut s| {
        s.minima.iter_mut().for_each(|v| *v &= VALUE_MASK);
        s
    })
}

/// A signature as column values: each minimum (cut to [`VALUE_BITS`]) with its position in the top bits, then
/// the shingle count at position [`NUM_HASHES`], so that sorting the values, as a column may, keeps them in
/// position order.
pub(crate) fn encode_signature(signature: &Signature) -> impl Iterator<Item = u64> + '_ {
    let minima = signature.minima.iter().enumerate().map(|(i, v)| ((i as u64) << VALUE_BITS) | (v & VALUE_MASK));
    minima.chain(std::iter::once(((NUM_HASHES as u64) << VALUE_BITS) | signature.shingles as u64))
}

fn decode_signature(values: impl Iterator<Item = u64>) -> Option<Signature> {
    let mut minima = vec![0u64; NUM_HASHES];
    let (mut seen, mut shingles) = (0, None);
    for v in values {
        let (i, value) = ((v >> VALUE_BITS) as usize, v & VALUE_MASK);
        if i < NUM_HASHES {
            minima[i] = value;
            seen += 1;
        } else if i == NUM_HASHES {
            shingles = Some(value as u32);
        }
    }
    (seen == NUM_HASHES).then_some(Signature { minima, shingles: shingles? })
}

/// One candidate's facts (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct StoryFacts {
    /// Its ingest sequence number: later stores have larger ones.
    pub seq: u64,
    /// Unix seconds.
    pub published_at: Option<i64>,
    /// As indexed: lowercased, the form filters and facets use.
    pub source: Option<String>,
    /// Its embedding's slot.
    pub slot: Option<u64>,
    pub signature: Option<Signature>,
}

impl TextIndex {
    /// The sequence number the next stored document will get, as this index's current view holds it: a
    /// snapshot bound, `_seq < snapshot_seq()` being exactly the documents stored so far.
    pub fn snapshot_seq(&self) -> Result<u64, TextError> {
        let searcher = self.reader.searcher();
        let mut next = 0;
        for segment in searcher.segment_readers() {
            let column = segment.fast_fields().u64("_seq").map_err(engine("read _seq"))?;
            if segment.num_docs() > 0 || segment.max_doc() > 0 {
                next = next.max(column.max_value() + 1);
            }
        }
        Ok(next)
    }

    /// The facts of the live documents with these ids, in the same order (`None` where there is none).
    pub fn story_facts(&self, ids: &[DocId]) -> Result<Vec<Option<StoryFacts>>, TextError> {
        let searcher = self.reader.searcher();
        struct Columns {
            seq: tantivy::columnar::Column<u64>,
            date: Option<tantivy::columnar::Column<tantivy::DateTime>>,
            source: Option<tantivy::columnar::StrColumn>,
            vid: Option<tantivy::columnar::Column<u64>>,
            sig: Option<tantivy::columnar::Column<u64>>,
        }
        let mut columns: Vec<Option<Columns>> = (0..searcher.segment_readers().len()).map(|_| None).collect();
        let mut out = Vec::with_capacity(ids.len());
        let mut text = String::new();
        for id in ids {
            let Some((seg, doc)) = self.address_of(&searcher, id.as_str())? else {
                out.push(None);
                continue;
            };
            let slot = &mut columns[seg as usize];
            if slot.is_none() {
                let ff = searcher.segment_reader(seg).fast_fields();
                *slot = Some(Columns {
                    seq: ff.u64("_seq").map_err(engine("read _seq"))?,
                    date: ff.date("published_at").ok(),
                    source: ff.str("source").ok().flatten(),
                    vid: ff.u64("_vid").ok(),
                    sig: ff.u64("_sig").ok(),
                });
            }
            let c = slot.as_ref().expect("opened above");
            let source = match &c.source {
                Some(col) => match col.term_ords(doc).next() {
                    Some(ord) => {
                        text.clear();
                        col.ord_to_str(ord, &mut text).map_err(io_engine("read source"))?;
                        Some(text.clone())
                    }
                    None => None,
                },
                None => None,
            };
            out.push(Some(StoryFacts {
                seq: c.seq.first(doc).unwrap_or(0),
                published_at: c.date.as_ref().and_then(|d| d.first(doc)).map(|d| d.into_timestamp_secs()),
                source,
                slot: c.vid.as_ref().and_then(|v| v.first(doc)),
                signature: c.sig.as_ref().and_then(|s| decode_signature(s.values_for_doc(doc))),
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_survives_the_column_in_any_order() {
        let doc =
            Document::new(DocId::parse("a", 64).unwrap(), "央行宣布降息", "中国人民银行今天宣布下调贷款市场报价利率。");
        let sig = signature(&doc).unwrap();
        let mut stored: Vec<u64> = encode_signature(&sig).collect();
        stored.reverse();
        stored.sort_unstable();
        assert!(sig.shingles > 10);
        assert_eq!(decode_signature(stored.into_iter()), Some(sig));
        assert_eq!(decode_signature([1u64, 2].into_iter()), None, "a partial signature is none");
    }

    #[test]
    fn traditional_script_and_full_width_forms_sign_like_the_original() {
        let id = DocId::parse("a", 64).unwrap();
        let simplified = Document::new(id.clone(), "", "国家统计局发布数据显示十月份居民消费价格同比上涨");
        let traditional = Document::new(id, "", "國家統計局發布數據顯示十月份居民消費價格同比上漲");
        assert_eq!(signature(&simplified), signature(&traditional));
    }
}

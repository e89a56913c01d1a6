//! `sieve-text`: text analysis and the BM25 first stage.
//!
//! It owns two things. The [`Analyzer`] turns text into index terms: per run of script, jieba search-mode
//! segmentation for Chinese (Traditional folded to Simplified), Snowball stemming and stopwords for English,
//! bigrams for Japanese/Korean, and product codes kept whole *and* joined across punctuation and spacing.
//! The [`TextIndex`] stores documents in tantivy and answers [`Bm25Query`]s with filters.
//!
//! Key design decision: tantivy stores postings, field lengths, fast fields and documents, but Sieve scores
//! BM25 itself, term at a time over the postings ([`bm25`] holds the math). That makes k1 and b real settings
//! (tantivy hard-codes them), lets every hit report each field's share of its score, and keeps analysis
//! entirely in [`Analyzer`]: documents are indexed pre-tokenized, with each document's own `lang`.
//!
//! No tantivy type appears in this crate's public API.
//!
//! ```
//! use sieve_core::{DocId, Document};
//! use sieve_text::{Bm25Query, IndexSettings, TextIndex, WriterOptions};
//!
//! let index = TextIndex::in_memory(IndexSettings::default()).unwrap();
//! let mut writer = index.writer(WriterOptions { threads: 1, memory_bytes: 20 << 20 }).unwrap();
//! writer.upsert(&Document::new(DocId::parse("abt-552", 64).unwrap(), "Sony Turntable - PSLX350H", "Belt drive")).unwrap();
//! writer.commit(None).unwrap();
//! index.reload().unwrap();
//! let found = index.search(&Bm25Query::new("sony PS-LX350H", 10)).unwrap();
//! assert_eq!(found.hits[0].id.as_str(), "abt-552");
//! ```

mod analyzer;
pub mod bm25;
mod browse;
mod expand;
mod filter;
mod html;
mod index;
mod schema;
mod slots;
mod story;
mod suggest;
mod topk;
mod writer;

pub use analyzer::{Analysis, Analyzer, Marker};
pub use bm25::{Bm25Params, ParamError};
pub use browse::{BrowseHit, BrowseQuery, BrowseResults};
pub use expand::{Expansion, ExpansionKind, Tolerance, PREFIX_WEIGHT, TYPO_WEIGHT};
pub use html::{clean_document, html_to_text, looks_like_html, HtmlSettings};
pub use index::{FieldBoosts, IndexSettings, TextError, TextIndex};
pub use schema::SCHEMA_VERSION;
pub use slots::{LiveVectors, VectorEntry};
pub use story::{signature, StoryFacts};
pub use suggest::{SuggestQuery, SuggestedDocument, Suggestion, SuggestionKind, Suggestions};
pub use topk::{is_product_code, Bm25Query, Bm25Results, CodeCarrier};
pub use writer::{TextWriter, WriterOptions};

#[cfg(test)]
mod index_tests;

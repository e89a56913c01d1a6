//! The tantivy schema: which document field becomes which index field.

use tantivy::schema::{
    DateOptions, DateTimePrecision, FacetOptions, Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing,
    TextOptions, STORED, STRING,
};

/// Bumped whenever the schema or the analysis changes incompatibly; an index records the version it was built
/// with and refuses to open under another.
pub const SCHEMA_VERSION: u32 = 3;

/// Handles to every field of the schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    /// Exact id, for upserts and deletes.
    pub id: Field,
    /// The whole document as JSON, returned untouched.
    pub source: Field,
    /// Analyzed text, pre-tokenized by [`crate::Analyzer`].
    pub title: Field,
    pub body: Field,
    /// Lowercased keywords for filters.
    pub brand: Field,
    pub source_name: Field,
    pub lang: Field,
    pub tags: Field,
    /// Lowercased category path as a facet: a filter on `/electronics` matches `/electronics/audio`.
    pub category: Field,
    pub price: Field,
    pub published_at: Field,
    /// The slot of the document's embedding (absent when it has none); slots are never reused.
    pub vid: Field,
    /// The embedding, little-endian f32, stored so that a graph rebuild never re-runs the model.
    pub vec: Field,
    /// The ingest sequence number: every stored document (and every new version of one) gets the next, so
    /// "stored before" is a range on it (the news feed's snapshot).
    pub seq: Field,
    /// The MinHash signature of the document's text ([`crate::story`]), one value per minimum with its
    /// position in the top bits, so the column's order within a document does not matter.
    pub sig: Field,
}

/// The analyzed fields BM25 scores, in the order of their boosts.
pub(crate) const TEXT_FIELDS: [&str; 2] = ["title", "body"];

pub(crate) fn build() -> (Schema, Fields) {
    let mut s = Schema::builder();
    let analyzed = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::WithFreqs)
            .set_fieldnorms(true),
    );
    let keyword = STRING | tantivy::schema::FAST;
    let numeric = NumericOptions::default().set_indexed().set_fast();
    let fields = Fields {
        id: s.add_text_field("id", STRING | tantivy::schema::FAST),
        source: s.add_text_field("_source", STORED),
        title: s.add_text_field("title", analyzed.clone()),
        body: s.add_text_field("body", analyzed),
        brand: s.add_text_field("brand", keyword.clone()),
        source_name: s.add_text_field("source", keyword.clone()),
        lang: s.add_text_field("lang", keyword.clone()),
        tags: s.add_text_field("tags", keyword),
        category: s.add_facet_field("category", FacetOptions::default()),
        price: s.add_f64_field("price", numeric),
        published_at: s.add_date_field(
            "published_at",
            DateOptions::default().set_indexed().set_fast().set_precision(DateTimePrecision::Seconds),
        ),
        vid: s.add_u64_field("_vid", NumericOptions::default().set_fast()),
        vec: s.add_bytes_field("_vec", STORED),
        seq: s.add_u64_field("_seq", NumericOptions::default().set_indexed().set_fast()),
        sig: s.add_u64_field("_sig", NumericOptions::default().set_fast()),
    };
    (s.build(), fields)
}

impl Fields {
    pub(crate) fn text_fields(&self) -> [Field; 2] {
        [self.title, self.body]
    }
}

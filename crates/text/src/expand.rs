//! Query expansion from the term dictionary: typo corrections and prefixes, the way shoppers type.
//!
//! - **Typos.** A query word that matches nothing is expanded to the indexed terms within Damerau–Levenshtein
//!   distance 1 (words of [`Tolerance::one_typo`] = 5 characters or more) or 2 ([`Tolerance::two_typos`] = 9 or
//!   more), the defaults of Meilisearch's typo tolerance. Distance 1 is tried first; 2 only when 1 finds
//!   nothing. Words with digits (codes, numbers) are never corrected, so `7737a001` cannot become `7737a007`.
//! - **Prefixes.** The word being typed (the last one, when the query does not end in a space) and every
//!   product code also match the indexed terms they begin: `PSLX35` finds `pslx350h`.
//!
//! Both walk tantivy's term dictionary (an FST) with an automaton: the Levenshtein DFA of
//! [`tantivy::query::FuzzyTermQuery::automaton`] for typos, a key range for prefixes. Nothing is scanned.
//!
//! An expansion scores as one query term whose postings are the union of its terms' (tf summed, as Lucene's
//! `SynonymQuery` does), with the idf of its most frequent term times a weight below 1 ([`TYPO_WEIGHT`],
//! [`PREFIX_WEIGHT`]), and never above the idf of the exact word when that word is indexed too. So a document
//! with the exact word outranks one that only has a correction or a completion of it, other things equal.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tantivy::query::FuzzyTermQuery;
use tantivy::schema::Field;
use tantivy::Term;

use crate::index::{engine, io_engine, TextError};

/// The weight of a typo correction's idf, against 1 for the word as typed.
pub const TYPO_WEIGHT: f32 = 0.6;
/// The weight of a prefix completion's idf.
pub const PREFIX_WEIGHT: f32 = 0.5;
/// Corrections kept per word (the most frequent terms at the smallest distance).
const MAX_CORRECTIONS: usize = 4;
/// Completions kept per prefix (the most frequent).
const MAX_COMPLETIONS: usize = 24;
/// Terms a prefix walk reads per segment and field before it stops (a one-letter prefix has thousands).
const MAX_PREFIX_SCAN: usize = 4096;

/// Typo tolerance and prefix matching, as index settings and per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tolerance {
    /// Correct words that match nothing.
    pub typos: bool,
    /// The shortest word (in characters) that may be corrected by one edit.
    pub one_typo: usize,
    /// The shortest word that may be corrected by two edits.
    pub two_typos: usize,
    /// Match the word being typed and product codes as prefixes.
    pub prefix: bool,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { typos: true, one_typo: 5, two_typos: 9, prefix: true }
    }
}

impl Tolerance {
    /// Nothing expanded: the query's words as typed.
    pub const EXACT: Tolerance = Tolerance { typos: false, one_typo: 5, two_typos: 9, prefix: false };
}

/// What an expansion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpansionKind {
    Typo,
    Prefix,
}

/// One query word and the indexed terms it was expanded to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expansion {
    /// The word as analyzed (or, for the word being typed, as typed, lowercased).
    pub word: String,
    pub kind: ExpansionKind,
    /// The indexed terms used, most frequent first.
    pub terms: Vec<String>,
}

/// The terms of `fields` matching an automaton or prefix, with their document frequency (max over fields).
pub(crate) struct Dictionary<'a> {
    pub searcher: &'a tantivy::Searcher,
    pub fields: [Field; 2],
}

impl Dictionary<'_> {
    /// Indexed terms within `distance` edits of `word` (transpositions cost one), with their df.
    fn within(&self, word: &str, distance: u8) -> Result<HashMap<String, u64>, TextError> {
        let mut found: [HashMap<String, u64>; 2] = Default::default();
        // the automaton depends on the word only: built once, walked over every field and segment
        let automaton = FuzzyTermQuery::new(Term::from_field_text(self.fields[0], word), distance, true)
            .automaton()
            .map_err(engine("build a typo automaton"))?;
        for (f, &field) in self.fields.iter().enumerate() {
            for segment in self.searcher.segment_readers() {
                let inverted = segment.inverted_index(field).map_err(engine("read terms"))?;
                let mut stream = inverted.terms().search(&automaton).into_stream().map_err(io_engine("read terms"))?;
                while stream.advance() {
                    if let Ok(term) = std::str::from_utf8(stream.key()) {
                        *found[f].entry(term.to_owned()).or_default() += stream.value().doc_freq as u64;
                    }
                }
            }
        }
        Ok(max_over_fields(found))
    }

    /// Indexed terms that begin with `prefix` (other than `prefix` itself), with their df.
    fn completions(&self, prefix: &str) -> Result<HashMap<String, u64>, TextError> {
        let [title, body] = self.fields;
        Ok(max_over_fields([
            terms_beginning(self.searcher, title, prefix, MAX_PREFIX_SCAN)?,
            terms_beginning(self.searcher, body, prefix, MAX_PREFIX_SCAN)?,
        ]))
    }
}

/// The terms of `field` that begin with `prefix` (other than `prefix` itself), with their df summed over the
/// segments: a range of the term dictionary, at most `max_scan` terms read per segment.
pub(crate) fn terms_beginning(
    searcher: &tantivy::Searcher,
    field: Field,
    prefix: &str,
    max_scan: usize,
) -> Result<HashMap<String, u64>, TextError> {
    let mut found = HashMap::new();
    let upper = successor(prefix.as_bytes());
    for segment in searcher.segment_readers() {
        let inverted = segment.inverted_index(field).map_err(engine("read terms"))?;
        let mut range = inverted.terms().range().gt(prefix.as_bytes());
        if let Some(upper) = &upper {
            range = range.lt(upper);
        }
        let mut stream = range.into_stream().map_err(io_engine("read terms"))?;
        let mut read = 0;
        while read < max_scan && stream.advance() {
            read += 1;
            if let Ok(term) = std::str::from_utf8(stream.key()) {
                *found.entry(term.to_owned()).or_default() += stream.value().doc_freq as u64;
            }
        }
    }
    Ok(found)
}

fn max_over_fields(found: [HashMap<String, u64>; 2]) -> HashMap<String, u64> {
    let [mut a, b] = found;
    for (term, df) in b {
        let e = a.entry(term).or_default();
        *e = (*e).max(df);
    }
    a
}

/// The smallest byte string greater than every string that begins with `prefix` (None: there is none).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// The `keep` most frequent of `found`, most frequent first (ties by term), without `exclude`d terms.
fn most_frequent(found: HashMap<String, u64>, keep: usize, exclude: &[String]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = found.into_iter().filter(|(t, df)| *df > 0 && !exclude.contains(t)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(keep);
    v
}

/// A letter of a script written with words (Latin, Greek, Cyrillic, …): below the CJK blocks. Chinese,
/// Japanese and Korean have no typos of this kind (and no spaces to type a prefix by).
fn is_word_letter(c: char) -> bool {
    c.is_alphabetic() && (c as u32) < 0x2E80
}

/// A word with digits: a code or a number, never corrected.
pub(crate) fn has_digit(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_digit())
}

pub(crate) use crate::analyzer::is_code;

/// Typo corrections of `word` (which matches nothing), or none.
pub(crate) fn corrections(
    dict: &Dictionary<'_>,
    word: &str,
    tolerance: &Tolerance,
    query_terms: &[String],
) -> Result<Vec<(String, u64)>, TextError> {
    let chars = word.chars().count();
    if !tolerance.typos || has_digit(word) || chars < tolerance.one_typo || !word.chars().all(is_word_letter) {
        return Ok(Vec::new());
    }
    let mut found = most_frequent(dict.within(word, 1)?, MAX_CORRECTIONS, query_terms);
    if found.is_empty() && chars >= tolerance.two_typos {
        found = most_frequent(dict.within(word, 2)?, MAX_CORRECTIONS, query_terms);
    }
    Ok(found)
}

/// Prefix completions of `prefix`, or none.
pub(crate) fn completions(
    dict: &Dictionary<'_>,
    prefix: &str,
    query_terms: &[String],
) -> Result<Vec<(String, u64)>, TextError> {
    Ok(most_frequent(dict.completions(prefix)?, MAX_COMPLETIONS, query_terms))
}

/// The word being typed: the query's last word when the query does not end in a space, lowercased, if it is
/// letters and digits only (not CJK) and at least two characters long.
pub(crate) fn typed_word(query: &str) -> Option<String> {
    if query.ends_with(char::is_whitespace) {
        return None;
    }
    let last = query.split_whitespace().last()?;
    let word: String = last.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    let latin = word.chars().all(|c| c.is_ascii_digit() || is_word_letter(c));
    (word.chars().count() >= 2 && latin).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_word_is_the_last_one_while_it_is_typed() {
        assert_eq!(typed_word("sony PSLX35").as_deref(), Some("pslx35"));
        assert_eq!(typed_word("sony PS-LX35").as_deref(), Some("pslx35"));
        assert_eq!(typed_word("sony tv ").as_deref(), None, "a space ends the word");
        assert_eq!(typed_word("s"), None, "one character is too little");
        assert_eq!(typed_word("索尼电视"), None, "CJK has no prefix here");
        assert_eq!(typed_word(""), None);
    }

    #[test]
    fn a_prefix_range_ends_at_the_successor() {
        assert_eq!(successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
    }

    #[test]
    fn codes_and_numbers_are_never_corrected() {
        assert!(has_digit("7737a001") && is_code("7737a001") && !is_code("2024") && !is_code("samsung"));
    }
}

//! Suggestions for a search box, fast enough for every keystroke: completions of what the shopper is typing,
//! drawn from the titles of the products that match it (words and product codes as the titles write them) and
//! from the brand names, plus the best-matching products themselves.
//!
//! One BM25 search over the titles does the matching, with the index's typo tolerance and prefix matching on
//! (so `sony bra` matches `Bravia` titles), then the top titles are read for words that begin with the word
//! being typed (or, after a space, for the word that follows the query's last one).

use sieve_core::{DocId, Filter, Lang};

use crate::expand::{self, Tolerance};
use crate::index::{FieldBoosts, TextError, TextIndex};
use crate::topk::{is_product_code, Bm25Query};

/// How many matching products are read for completions.
const READ_HITS: usize = 20;

/// Brand names read per segment for one prefix, at most (a one-letter prefix could otherwise walk them all).
const MAX_BRAND_SCAN: usize = 2_000;

/// What a search box has typed so far.
#[derive(Debug, Clone, Default)]
pub struct SuggestQuery {
    pub text: String,
    pub lang: Option<Lang>,
    /// Every filter must hold for the products (and so for the completions drawn from them).
    pub filters: Vec<Filter>,
    /// Completions and products to return, each.
    pub limit: usize,
}

/// Where a completion comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuggestionKind {
    /// A title word that completes the word being typed, or the word titles put after the query.
    Word,
    /// A product code from a title (`PSLX350H`), as the title writes it.
    Code,
    /// A brand name that begins with the query.
    Brand,
}

impl SuggestionKind {
    pub fn name(self) -> &'static str {
        match self {
            SuggestionKind::Word => "word",
            SuggestionKind::Code => "code",
            SuggestionKind::Brand => "brand",
        }
    }
}

/// One completion of the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// The whole query as completed (`sony bravia`).
    pub text: String,
    pub kind: SuggestionKind,
    /// Documents that carry it: among the matching products read, for words and codes; in the whole index,
    /// for brands.
    pub count: u64,
}

/// A product offered beside the completions.
#[derive(Debug, Clone, PartialEq)]
pub struct SuggestedDocument {
    pub id: DocId,
    pub title: String,
    pub brand: Option<String>,
    pub price: Option<f64>,
}

/// The answer to a [`SuggestQuery`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Suggestions {
    pub completions: Vec<Suggestion>,
    pub documents: Vec<SuggestedDocument>,
}

impl TextIndex {
    /// Completions of `query.text` and the products that match it best (see the module doc). A blank query
    /// gets nothing.
    pub fn suggest(&self, query: &SuggestQuery) -> Result<Suggestions, TextError> {
        let text = query.text.trim_start();
        if text.trim().is_empty() || query.limit == 0 {
            return Ok(Suggestions::default());
        }
        let typed = expand::typed_word(text);
        // the query before the word being typed (all of it after a space), as the shopper wrote it, lowercased
        let head = match &typed {
            Some(_) => text.rsplit_once(char::is_whitespace).map_or("", |(h, _)| h.trim_end()).to_lowercase(),
            None => text.trim_end().to_lowercase(),
        };
        let last_word = head.split_whitespace().last().map(str::to_owned);

        let mut q = Bm25Query::new(text.to_owned(), READ_HITS.max(query.limit));
        q.filters = query.filters.clone();
        q.lang = query.lang.clone();
        q.boosts = Some(FieldBoosts { title: 1.0, body: 0.0 });
        q.tolerance = Some(Tolerance { prefix: true, ..self.settings.tolerance });
        let found = self.search(&q)?;

        // (text, kind, weight, count), in the order first seen
        let mut words: Vec<(String, SuggestionKind, f32, u64)> = Vec::new();
        let mut add = |text: String, kind: SuggestionKind, weight: f32| match words.iter_mut().find(|w| w.0 == text) {
            Some(w) => {
                w.2 += weight;
                w.3 += 1;
            }
            None => words.push((text, kind, weight, 1)),
        };
        let join = |word: &str| if head.is_empty() { word.to_owned() } else { format!("{head} {word}") };
        for hit in &found.hits {
            let Some(title) = hit.document.as_ref().and_then(|d| d.title.as_deref()) else { continue };
            let raw: Vec<&str> = title
                .split_whitespace()
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
                .filter(|w| !w.is_empty())
                .collect();
            let mut seen_in_title: Vec<String> = Vec::new();
            for (i, w) in raw.iter().enumerate() {
                let lower = w.to_lowercase();
                let joined: String = lower.chars().filter(|c| c.is_alphanumeric()).collect();
                let suggestion = match (&typed, &last_word) {
                    (Some(t), _) if joined.starts_with(t.as_str()) && joined != *t => {
                        if is_product_code(&joined) {
                            Some((join(w), SuggestionKind::Code))
                        } else if lower.chars().all(char::is_alphanumeric) {
                            Some((join(&lower), SuggestionKind::Word))
                        } else {
                            None
                        }
                    }
                    (None, Some(last)) if lower == *last => raw.get(i + 1).map(|next| {
                        let next_joined: String = next.to_lowercase().chars().filter(|c| c.is_alphanumeric()).collect();
                        if is_product_code(&next_joined) {
                            (join(next), SuggestionKind::Code)
                        } else {
                            (join(&next.to_lowercase()), SuggestionKind::Word)
                        }
                    }),
                    _ => None,
                };
                if let Some((s, kind)) = suggestion {
                    if !seen_in_title.contains(&s) {
                        seen_in_title.push(s.clone());
                        add(s, kind, hit.score);
                    }
                }
            }
        }
        words.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        let mut completions: Vec<Suggestion> = words
            .into_iter()
            .take(query.limit)
            .map(|(text, kind, _, count)| Suggestion { text, kind, count })
            .collect();

        // brands that begin with what is typed (the whole query: brands have several words)
        if typed.is_some() {
            let prefix = text.trim().to_lowercase();
            for (brand, df) in self.brands_starting(&prefix, query.limit)? {
                // a title word that is a brand's whole name is that brand
                match completions.iter_mut().find(|c| c.text == brand) {
                    Some(c) => (c.kind, c.count) = (SuggestionKind::Brand, df),
                    None => completions.push(Suggestion { text: brand, kind: SuggestionKind::Brand, count: df }),
                }
            }
        }

        let documents = found
            .hits
            .into_iter()
            .take(query.limit)
            .filter_map(|h| {
                let d = h.document?;
                Some(SuggestedDocument { id: h.id, title: d.title.unwrap_or_default(), brand: d.brand, price: d.price })
            })
            .collect();
        Ok(Suggestions { completions, documents })
    }

    /// The brand names (as indexed: lowercased) that begin with `prefix` (longer than it), most documents first, with their
    /// document frequency (deleted documents included until a merge drops them).
    fn brands_starting(&self, prefix: &str, limit: usize) -> Result<Vec<(String, u64)>, TextError> {
        let found = expand::terms_beginning(&self.reader.searcher(), self.fields.brand, prefix, MAX_BRAND_SCAN)?;
        let mut out: Vec<(String, u64)> = found.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out)
    }
}

//! Snippets for hits that only the dense leg found: the document's sentence closest to the query by the
//! embedder. Such a hit shares no term with the query, so a highlighted window of its body would show
//! nothing that explains it; the sentence the model scores highest does.
//!
//! The cost is bounded per page: at most [`SnippetLimits::sentences_per_doc`] sentences from the start of
//! each document (each cut to [`SnippetLimits::chars_per_sentence`] characters) and
//! [`SnippetLimits::total_sentences`] in all, embedded in one batch beside the query, under the engine's
//! embedding time limit.

use std::ops::Range;

use unicode_segmentation::UnicodeSegmentation;

use crate::engine::Engine;
use crate::models::EmbedJob;
use crate::PipelineError;

/// How much of a page's documents the sentence snippets may embed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnippetLimits {
    /// Sentences read from the start of each document.
    pub sentences_per_doc: usize,
    /// Characters kept of each sentence.
    pub chars_per_sentence: usize,
    /// Sentences embedded for the whole page.
    pub total_sentences: usize,
}

impl Default for SnippetLimits {
    /// A page of 10 hits: 4 sentences of at most 200 characters from each of the first 6 documents, fewer from
    /// more. With MiniLM on 2 cores, 8 sentences of 300 characters for 6 documents took 104 ms (p50) a page of
    /// 10 dense-only hits, 10× the search (BENCHMARKS.md, "Closest-sentence snippets").
    fn default() -> Self {
        SnippetLimits { sentences_per_doc: 4, chars_per_sentence: 200, total_sentences: 24 }
    }
}

/// A document's sentence closest to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct BestSentence {
    /// Byte range of the sentence in the document's text (trimmed, on character boundaries).
    pub range: Range<usize>,
    /// Cosine similarity of the sentence and the query by the embedder.
    pub similarity: f32,
}

/// The sentences of `text` (UAX #29 sentence boundaries), trimmed, at most `max` of them from the start, each
/// cut to `max_chars` characters; sentences with no letter or digit are skipped. Byte ranges of `text`.
pub fn sentences(text: &str, max: usize, max_chars: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for (start, s) in text.split_sentence_bound_indices() {
        if out.len() >= max {
            break;
        }
        // lines are sentences too: a product's bullet list has no full stops
        for (offset, line) in line_pieces(s) {
            if out.len() >= max {
                break;
            }
            let trimmed = line.trim();
            if !trimmed.chars().any(char::is_alphanumeric) {
                continue;
            }
            let from = start + offset + (line.len() - line.trim_start().len());
            let end = trimmed.char_indices().nth(max_chars).map_or(trimmed.len(), |(b, _)| b);
            out.push(from..from + end);
        }
    }
    out
}

/// `s` split at line breaks, with each piece's byte offset in `s`.
fn line_pieces(s: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut at = 0;
    s.split('\n').map(move |piece| {
        let offset = at;
        at += piece.len() + 1;
        (offset, piece)
    })
}

/// The index of the largest value, the first of equals; `None` for an empty slice.
pub fn argmax(values: &[f32]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .fold(None, |best: Option<(usize, f32)>, (i, &v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
        .map(|(i, _)| i)
}

/// Cosine of two L2-normalised vectors: their dot product.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Engine {
    /// For each of `texts`, its sentence closest to `query` by the embedder ([module docs](self)), or `None`
    /// for a text with no sentence, or past the page's budget of sentences. Fails when no embedder is loaded
    /// or it does not answer within the engine's embedding time limit.
    pub fn best_sentences(
        &self,
        query: &str,
        texts: &[&str],
        limits: SnippetLimits,
    ) -> Result<Vec<Option<BestSentence>>, PipelineError> {
        if self.embedder().is_none() {
            return Err(PipelineError::DenseUnavailable { reason: "no embedding model is loaded".into() });
        }
        let mut budget = limits.total_sentences;
        let per_text: Vec<Vec<Range<usize>>> = texts
            .iter()
            .map(|t| {
                let s = sentences(t, limits.sentences_per_doc.min(budget), limits.chars_per_sentence);
                budget -= s.len();
                s
            })
            .collect();
        let batch: Vec<String> =
            per_text.iter().zip(texts).flat_map(|(ranges, t)| ranges.iter().map(|r| t[r.clone()].to_owned())).collect();
        if batch.is_empty() {
            return Ok(vec![None; texts.len()]);
        }
        let (query_vector, _) = self.embed_query(query, None)?;
        let handle = self.embedder().expect("checked above");
        let job = EmbedJob { texts: batch, query: false, instruction: None, options: self.embed_options() };
        let (embedded, _) = handle.embed(job, Some(self.embed_timeout()), None)?;
        let similarities: Vec<f32> = embedded.vectors.iter().map(|v| dot(&query_vector, v)).collect();
        let mut at = 0;
        Ok(per_text
            .into_iter()
            .map(|ranges| {
                let mine = &similarities[at..at + ranges.len()];
                at += ranges.len();
                argmax(mine).map(|i| BestSentence { range: ranges[i].clone(), similarity: mine[i] })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str, max: usize, max_chars: usize) -> Vec<&str> {
        sentences(text, max, max_chars).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn sentences_are_trimmed_cut_and_counted() {
        let text = "Fast charger.  Works with phones!\nFits a laptop bag\n\n--\nWhy? Because.";
        assert_eq!(
            texts(text, 10, 100),
            ["Fast charger.", "Works with phones!", "Fits a laptop bag", "Why?", "Because."]
        );
        assert_eq!(texts(text, 2, 100), ["Fast charger.", "Works with phones!"]);
        assert_eq!(texts(text, 1, 4), ["Fast"]);
        assert!(sentences("", 5, 10).is_empty() && sentences(" -- ", 5, 10).is_empty());
    }

    #[test]
    fn chinese_sentences_end_at_their_stops_and_cut_on_characters() {
        let text = "央行宣布降息。市场反应积极！股市上涨";
        assert_eq!(texts(text, 10, 100), ["央行宣布降息。", "市场反应积极！", "股市上涨"]);
        assert_eq!(texts(text, 10, 3), ["央行宣", "市场反", "股市上"]);
    }

    #[test]
    fn argmax_takes_the_first_of_equals() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), Some(1));
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[-1.0]), Some(0));
    }
}

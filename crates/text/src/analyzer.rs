//! Text analysis: text in, index terms out. Pure and deterministic; the same code runs at index and at
//! query time, so a query can only miss a document through a difference in words, never in analysis.
//!
//! The text is cut into runs of one script and each run gets the treatment its script needs:
//!
//! - **Han** (Chinese characters): full-width forms folded, Traditional folded to Simplified (so `電腦`
//!   finds `电脑`), then jieba in search mode (`中华人民共和国` → `中华`, `华人`, `人民`, `共和`, `共和国`,
//!   `中华人民共和国`). With `lang = ja` or `ko`, Han runs get overlapping character bigrams instead.
//! - **Kana / Hangul**: overlapping character bigrams (single characters stay as they are).
//! - **everything else**: Unicode word boundaries (UAX #29), lowercase, English stopwords dropped, Snowball
//!   English stemming of purely alphabetic words. Words with digits are kept whole and unstemmed.
//! - **product codes**: words joined by connector punctuation (`PS-LX350H`, `7737A-001`) also yield their
//!   concatenation (`pslx350h`), and a space-separated word with letters followed by one with digits yields
//!   the join too (`PS LX350H` → `pslx350h`, `iPhone 15` → `iphone15`). So a code matches across
//!   punctuation and spacing in both directions, while the parts stay searchable on their own.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use jieba_rs::Jieba;
use rust_stemmers::{Algorithm, Stemmer};
use unicode_segmentation::UnicodeSegmentation;

/// Which analysis a text gets, chosen from a document's or query's `lang` (see [`Analysis::for_lang`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Analysis {
    /// Script detection: Han runs are treated as Chinese.
    #[default]
    Auto,
    /// Japanese or Korean: Han runs as bigrams, not jieba words.
    CjkBigram,
}

impl Analysis {
    /// `ja*` and `ko*` select bigrams; every other tag (or none) uses script detection, in which Chinese,
    /// English and mixed text are all handled per run of script.
    pub fn for_lang(primary_subtag: Option<&str>) -> Analysis {
        match primary_subtag {
            Some("ja") | Some("ko") => Analysis::CjkBigram,
            _ => Analysis::Auto,
        }
    }
}

/// Longest accepted term, in bytes (longer words are dropped, like tantivy's `RemoveLongFilter`).
const MAX_TERM_BYTES: usize = 64;
/// Longest part that takes part in a space-separated code join (`PS LX350H`).
const MAX_JOIN_PART_CHARS: usize = 10;
/// Longest first word of a space join that still names a code as written (`PS`, `KX`, `DSC`).
const MAX_CODE_PREFIX_CHARS: usize = 3;

/// English stopwords (the Snowball list's most frequent function words).
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "ought",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// The analyzer. Cheap to clone (the jieba dictionary is shared and loaded once per process).
#[derive(Clone)]
pub struct Analyzer {
    jieba: Arc<Jieba>,
    stopwords: Arc<HashSet<&'static str>>,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer").finish_non_exhaustive()
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::shared()
    }
}

impl Analyzer {
    /// The process-wide analyzer (the jieba dictionary takes ~100 ms to load; it is loaded once).
    pub fn shared() -> Analyzer {
        static SHARED: OnceLock<Analyzer> = OnceLock::new();
        SHARED
            .get_or_init(|| Analyzer {
                jieba: Arc::new(Jieba::new()),
                stopwords: Arc::new(STOPWORDS.iter().copied().collect()),
            })
            .clone()
    }

    /// Analyzes `text` into index terms, in text order.
    pub fn terms(&self, text: &str, analysis: Analysis) -> Vec<String> {
        let mut out = Vec::new();
        self.analyze_into(text, analysis, &mut out);
        out
    }

    /// Appends the terms of `text` to `out`.
    pub fn analyze_into(&self, text: &str, analysis: Analysis, out: &mut Vec<String>) {
        self.analyze_with(text, analysis, MAX_JOIN_PART_CHARS, out);
    }

    /// The terms of `text` with only the space joins whose first word is a code prefix of at most
    /// [`MAX_CODE_PREFIX_CHARS`] characters (`PS LX350H` → `pslx350h`): the codes as written, for telling which
    /// product a query names (a join of two words, like `player dvpfx820` or `ratio 5ms`, names none).
    pub fn written_terms(&self, text: &str, analysis: Analysis) -> Vec<String> {
        let mut out = Vec::new();
        self.analyze_with(text, analysis, MAX_CODE_PREFIX_CHARS, &mut out);
        out
    }

    /// Where `text` holds the terms of `query`, as byte ranges of `text` (on character boundaries, sorted,
    /// not overlapping): the spans whose analysis yields a query term, found by the analysis that indexing runs,
    /// so a highlight marks what matched. `PS-LX350H` in a title is marked for the query `PSLX350H` (the code
    /// join), `running` for `run` (the stem), `電腦` for `电脑` (the Traditional fold), and a Han word where
    /// jieba cuts it. To mark many texts for one query, analyse the query once with [`Analyzer::marker`].
    pub fn marks(&self, text: &str, query: &str, analysis: Analysis) -> Vec<std::ops::Range<usize>> {
        self.marker(query, analysis).marks(text)
    }

    /// The query's terms, analysed once, for marking many texts ([`Marker::marks`]).
    pub fn marker(&self, query: &str, analysis: Analysis) -> Marker {
        let wanted: HashSet<String, foldhash::fast::RandomState> = self.terms(query, analysis).into_iter().collect();
        let longest = wanted.iter().map(String::len).max().unwrap_or(0);
        let mut firsts: Vec<char> = wanted.iter().filter_map(|t| t.chars().next()).collect();
        firsts.sort_unstable();
        firsts.dedup();
        let ascii_starts = AsciiStarts::of(&wanted);
        Marker { analyzer: self.clone(), analysis, wanted, longest, firsts: Some(firsts), ascii_starts }
    }
}

/// How an ASCII word may start a wanted term, looked up: its first two bytes. The term of an ASCII word (or
/// of a join of words) starts with the word's own first two characters, lowercased:
/// - Snowball English stems only suffixes, and its regions R1 and R2, where most suffixes go, start after the
///   second letter;
/// - a word with digits is its own term, and a join starts with its first word;
/// - the exceptions are Snowball's exceptional forms `dying`, `lying` and `tying` (`die`, `lie`, `tie`), and
///   words whose stem is one letter (`aed` → `a`).
///
/// Checked on 970k distinct words, those of the evaluation corpora and generated ones; the test
/// `stems_keep_the_first_two_letters_of_their_words` keeps 50k generated ones.
#[derive(Debug)]
struct AsciiStarts {
    /// Whether a byte is an ASCII character whose lowercase starts a wanted term.
    first: [bool; 256],
    /// For a lowercase first byte, the lowercase second bytes a wanted term may follow it with, as bits
    /// (every byte when a wanted term is that one character).
    second: [u128; 128],
}

impl AsciiStarts {
    fn of(wanted: &HashSet<String, foldhash::fast::RandomState>) -> AsciiStarts {
        let mut starts = AsciiStarts { first: [false; 256], second: [0; 128] };
        for term in wanted.iter().map(String::as_bytes).filter(|t| t.first().is_some_and(u8::is_ascii)) {
            let first = term[0];
            starts.first[first as usize] = true;
            starts.first[first.to_ascii_uppercase() as usize] = true;
            match term.get(1) {
                None => starts.second[first as usize] = u128::MAX,
                Some(&c) if c.is_ascii() => {
                    starts.second[first as usize] |= 1 << c;
                    if c == b'i' && matches!(first, b'd' | b'l' | b't') {
                        starts.second[first as usize] |= 1 << b'y';
                    }
                }
                Some(_) => {}
            }
        }
        starts
    }

    /// Whether an ASCII word that starts with `first` and then `second` (`None`: a one-byte word) may start a
    /// wanted term or a join that is one.
    #[inline]
    fn may_start(&self, first: u8, second: Option<u8>) -> bool {
        self.first[first as usize]
            && second.is_none_or(|c| {
                self.second[(first.to_ascii_lowercase() & 0x7f) as usize] >> (c.to_ascii_lowercase() & 0x7f) & 1 != 0
            })
    }
}

/// A query's terms ready to mark texts with ([`Analyzer::marker`]): a page of hits analyses its query once.
#[derive(Debug)]
pub struct Marker {
    analyzer: Analyzer,
    analysis: Analysis,
    wanted: HashSet<String, foldhash::fast::RandomState>,
    /// The longest wanted term in bytes: a join longer than it cannot be wanted.
    longest: usize,
    /// The first characters of the wanted terms. A word's term starts with the word's own first character
    /// (lowercased): Snowball English stems only suffixes, a word with digits is its own term, and a join
    /// starts with its first word. So a word whose first character is not here is neither stemmed nor
    /// looked up, and no join starts at it: most of a text's words cost only their splitting. `None`
    /// checks every word (the reference the tests compare with).
    firsts: Option<Vec<char>>,
    /// The first two bytes an ASCII word that may start a wanted term can have: for [`Marker::may_start`] on
    /// ASCII words, and for [`AsciiWords::skipping`].
    ascii_starts: AsciiStarts,
}

impl Marker {
    /// [`Analyzer::marks`] of `text` for this marker's query.
    pub fn marks(&self, text: &str) -> Vec<std::ops::Range<usize>> {
        let wanted = &self.wanted;
        if wanted.is_empty() || text.is_empty() {
            return Vec::new();
        }
        // the reference (`firsts: None`) takes the general path below, so the tests hold this one to it too
        if text.is_ascii() && self.firsts.is_some() {
            // one run of words, nothing to fold, and a character index is a byte index
            let mut spans: Vec<(usize, usize)> = Vec::with_capacity(8);
            let words = AsciiWords::skipping(text, &self.ascii_starts);
            self.word_marks(words, true, 0, &Stemmer::create(Algorithm::English), &mut spans);
            return merge_spans(spans).into_iter().map(|(a, b)| a..b).collect();
        }
        // fold_width maps character to character, so a character index is the same in both texts
        let offsets: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        let folded = fold_width(text);
        let mut char_at = vec![0usize; folded.len() + 1];
        let mut n = 0;
        for (i, (b, _)) in folded.char_indices().enumerate() {
            char_at[b] = i;
            n = i + 1;
        }
        char_at[folded.len()] = n;
        let mut spans: Vec<(usize, usize)> = Vec::new(); // character ranges
        let stemmer = Stemmer::create(Algorithm::English);
        for (script, run) in script_runs(&folded) {
            let base = char_at[run.as_ptr() as usize - folded.as_ptr() as usize];
            match (script, self.analysis) {
                (Script::Han, Analysis::Auto) => {
                    let simplified = fast2s::convert(run);
                    if simplified.chars().count() != run.chars().count() {
                        continue; // not a character-for-character fold: no reliable positions
                    }
                    for token in self.analyzer.jieba.cut_for_search(&simplified, true) {
                        if wanted.contains(token.word.trim()) {
                            spans.push((base + token.start, base + token.end));
                        }
                    }
                }
                (Script::Han, Analysis::CjkBigram) | (Script::OtherCjk, _) => {
                    let chars: Vec<char> = run.chars().collect();
                    let mut pair = String::new();
                    for i in 0..chars.len() {
                        pair.clear();
                        pair.push(chars[i]);
                        if chars.len() == 1 && wanted.contains(pair.as_str()) {
                            spans.push((base + i, base + i + 1));
                        }
                        if i + 1 < chars.len() {
                            pair.push(chars[i + 1]);
                            if wanted.contains(pair.as_str()) {
                                spans.push((base + i, base + i + 2));
                            }
                        }
                    }
                }
                (Script::Other, _) => {
                    let ascii = run.is_ascii();
                    self.word_marks(word_pieces(run, ascii).into_iter(), ascii, base, &stemmer, &mut spans)
                }
            }
        }
        merge_spans(spans).into_iter().map(|(a, b)| offsets[a]..offsets[b.min(n)]).collect()
    }

    /// Whether a word can start a wanted term or join (see [`Marker::firsts`], and [`AsciiStarts`] for ASCII
    /// words).
    fn may_start(&self, piece: &str, ascii: bool) -> bool {
        let Some(firsts) = &self.firsts else { return true };
        if ascii {
            let b = piece.as_bytes();
            b.first().is_some_and(|&first| self.ascii_starts.may_start(first, b.get(1).copied()))
        } else {
            piece.chars().next().and_then(|c| c.to_lowercase().next()).is_some_and(|c| firsts.contains(&c))
        }
    }

    /// [`Marker::marks`] for a run's words ([`MarkWords`]: from [`word_pieces`] or [`AsciiWords`]): each word
    /// whose term (lowercased, stemmed) is wanted, and each code joined across connectors or a space whose
    /// join is. One pass, no list: a join across connectors grows word by word, and is dropped once its first
    /// word cannot start a term or it is longer than any wanted term. After a word that neither may start a
    /// term nor continues a live join, nothing before the next word that may start a term can be marked, and
    /// the words are told so ([`MarkWords::quiet`]).
    fn word_marks<'a>(
        &self,
        mut words: impl MarkWords<'a>,
        ascii: bool,
        base: usize,
        stemmer: &Stemmer,
        spans: &mut Vec<(usize, usize)>,
    ) {
        let wanted = &self.wanted;
        // the previous word (start, end, as written, whether it may start a term), and the current chunk of
        // words joined by connectors: its start, its join so far (lowercased), whether it may still be wanted
        let mut prev: Option<(usize, usize, &str, bool)> = None;
        let (mut chunk_start, mut chunk, mut chunk_live) = (0, String::new(), false);
        let mut word = String::new();
        let mut joined = String::new();
        while let Some((a, b, piece, gap)) = words.next() {
            let (start, end) = (base + a, base + b);
            let starts = self.may_start(piece, ascii);
            if starts {
                word.clear();
                push_lowercase(&mut word, piece, ascii);
                let alphabetic = if ascii {
                    word.bytes().all(|b| b.is_ascii_alphabetic())
                } else {
                    word.chars().all(char::is_alphabetic)
                };
                let wanted_term = if alphabetic {
                    with_stem(stemmer, &word, |stem| wanted.contains(stem))
                } else {
                    wanted.contains(word.as_str())
                };
                if wanted_term && !self.analyzer.stopwords.contains(word.as_str()) {
                    spans.push((start, end));
                }
            }
            if gap != Gap::Connector {
                chunk_start = start;
                chunk_live = starts;
                if starts {
                    chunk.clear();
                    chunk.push_str(&word);
                }
            } else if chunk_live {
                // a code joined across connectors, from the chunk's first word to this one
                push_lowercase(&mut chunk, piece, ascii);
                if chunk.len() > self.longest {
                    chunk_live = false;
                } else if wanted.contains(chunk.as_str()) {
                    spans.push((chunk_start, end));
                }
            }
            if let (Gap::Space, Some((prev_start, _, prev_piece, true))) = (gap, prev) {
                // lowercasing keeps an ASCII word's length: a join longer than every term is none of them
                if !ascii || prev_piece.len() + piece.len() <= self.longest {
                    joined.clear();
                    push_lowercase(&mut joined, prev_piece, ascii);
                    push_lowercase(&mut joined, piece, ascii);
                    if joined.len() <= self.longest && wanted.contains(joined.as_str()) {
                        spans.push((prev_start, end));
                    }
                }
            }
            prev = Some((start, end, piece, starts));
            if !starts && !chunk_live {
                words.quiet();
            }
        }
    }
}

/// The words [`Marker::word_marks`] reads: `(first char, end char, the word as written, what came before it)`,
/// in order.
trait MarkWords<'a>: Iterator<Item = (usize, usize, &'a str, Gap)> {
    /// Marking needs none of the words before the next one that may start a wanted term: the last word
    /// given does not, and no join it belongs to may still be wanted. Leaving them out is optional.
    fn quiet(&mut self) {}
}

impl<'a> MarkWords<'a> for std::vec::IntoIter<(usize, usize, &'a str, Gap)> {}

/// Sorted spans with the overlapping ones merged, in place.
fn merge_spans(mut spans: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    spans.sort_unstable();
    let mut kept = 0;
    for i in 0..spans.len() {
        let (a, b) = spans[i];
        if kept > 0 && a <= spans[kept - 1].1 {
            spans[kept - 1].1 = spans[kept - 1].1.max(b);
        } else {
            spans[kept] = (a, b);
            kept += 1;
        }
    }
    spans.truncate(kept);
    spans
}

/// Appends `piece` lowercased: the one lowercasing of words, for indexing ([`split_words`]) and marking.
fn push_lowercase(out: &mut String, piece: &str, ascii: bool) {
    if ascii {
        let at = out.len();
        out.push_str(piece);
        out[at..].make_ascii_lowercase();
    } else {
        out.push_str(&piece.to_lowercase());
    }
}

impl Analyzer {
    /// `space_joins`: the longest first word of a space join (`MAX_JOIN_PART_CHARS` for every join).
    fn analyze_with(&self, text: &str, analysis: Analysis, space_joins: usize, out: &mut Vec<String>) {
        let folded = fold_width(text);
        let stemmer = Stemmer::create(Algorithm::English);
        for (script, run) in script_runs(&folded) {
            match (script, analysis) {
                (Script::Han, Analysis::Auto) => self.chinese(run, out),
                (Script::Han, Analysis::CjkBigram) | (Script::OtherCjk, _) => bigrams(run, out),
                (Script::Other, _) => self.words(run, &stemmer, space_joins, out),
            }
        }
    }

    fn chinese(&self, run: &str, out: &mut Vec<String>) {
        let simplified = fast2s::convert(run);
        for token in self.jieba.cut_for_search(&simplified, true) {
            let word = token.word.trim();
            if !word.is_empty() && word.chars().any(char::is_alphanumeric) {
                out.push(word.to_owned());
            }
        }
    }

    fn words(&self, run: &str, stemmer: &Stemmer, space_joins: usize, out: &mut Vec<String>) {
        // Words with what separates each from the previous one.
        let words: Vec<(String, Gap)> = split_words(run).into_iter().map(|(_, _, w, g)| (w, g)).collect();
        let mut chunk: Vec<&str> = Vec::new();
        for (i, (word, gap)) in words.iter().enumerate() {
            if *gap != Gap::Connector {
                push_chunk_join(&chunk, out);
                chunk.clear();
            }
            chunk.push(word);
            if word.len() <= MAX_TERM_BYTES && !self.stopwords.contains(word.as_str()) {
                if word.chars().all(char::is_alphabetic) {
                    out.push(stem_cached(stemmer, word));
                } else {
                    out.push(word.clone());
                }
            }
            if *gap == Gap::Space && i > 0 {
                let prev = &words[i - 1].0;
                let joined = format!("{prev}{word}");
                if prev.chars().count() <= space_joins
                    && word.chars().count() <= MAX_JOIN_PART_CHARS
                    && prev.chars().any(char::is_alphabetic)
                    && word.chars().any(|c| c.is_ascii_digit())
                {
                    out.push(joined);
                }
            }
        }
        push_chunk_join(&chunk, out);
    }
}

/// Stems through a per-thread cache: word frequencies are Zipfian, so most words were stemmed before.
fn stem_cached(stemmer: &Stemmer, word: &str) -> String {
    with_stem(stemmer, word, str::to_owned)
}

/// `f` of `word`'s stem, through the cache [`stem_cached`] reads, without copying the stem out of it: marking
/// only asks whether the stem is wanted.
fn with_stem<R>(stemmer: &Stemmer, word: &str, f: impl FnOnce(&str) -> R) -> R {
    use std::cell::RefCell;
    use std::collections::HashMap;
    const CAPACITY: usize = 200_000;
    thread_local! {
        // foldhash: several times faster than SipHash on short words, and still seeded per process
        static STEMS: RefCell<HashMap<String, String, foldhash::fast::RandomState>> = RefCell::new(HashMap::default());
    }
    STEMS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(stem) = cache.get(word) {
            return f(stem);
        }
        let stem = stemmer.stem(word).into_owned();
        if cache.len() >= CAPACITY {
            cache.clear();
        }
        let r = f(&stem);
        cache.insert(word.to_owned(), stem);
        r
    })
}

/// The words of a run (UAX #29 word boundaries), lowercased, each with its character range in the run and
/// what separates it from the word before: what indexing ([`Analyzer::analyze_into`]) reads, and
/// highlighting ([`Analyzer::marks`]) reads before lowercasing ([`word_pieces`]).
fn split_words(run: &str) -> Vec<(usize, usize, String, Gap)> {
    let ascii = run.is_ascii();
    let lower = |w: &str| {
        let mut out = String::with_capacity(w.len());
        push_lowercase(&mut out, w, ascii);
        out
    };
    word_pieces(run, ascii).into_iter().map(|(a, b, w, g)| (a, b, lower(w), g)).collect()
}

/// [`split_words`] before lowercasing: each word as written. `ascii`: the run is ASCII, so a character is a
/// byte and the splitting takes the same rules without the Unicode tables' lookups.
fn word_pieces(run: &str, ascii: bool) -> Vec<(usize, usize, &str, Gap)> {
    if ascii {
        pieces_of(AsciiWordBounds { text: run, at: 0 }, true)
    } else {
        pieces_of(run.split_word_bounds(), false)
    }
}

fn pieces_of<'a>(pieces: impl Iterator<Item = &'a str>, ascii: bool) -> Vec<(usize, usize, &'a str, Gap)> {
    let mut words = Vec::new();
    let mut gap = Gap::Start;
    let mut at = 0;
    for piece in pieces {
        let len = if ascii { piece.len() } else { piece.chars().count() };
        if piece.chars().any(char::is_alphanumeric) {
            words.push((at, at + len, piece, gap));
            gap = Gap::Connector;
        } else if piece.chars().all(char::is_whitespace) {
            gap = if gap == Gap::Start { Gap::Start } else { Gap::Space };
        } else if gap == Gap::Connector && piece.chars().all(is_connector) {
            // stays a connector: `PS-LX350H`, `1/3`, `a.b`
        } else {
            gap = Gap::Other;
        }
        at += len;
    }
    words
}

/// The words of an ASCII text with what came before each, as [`word_pieces`] gives them, in one pass over its
/// bytes: what marking ASCII reads ([`Marker::marks`]). Only a word piece (letters, digits, `_`, joined by
/// [`AsciiWordBounds`]'s rules) spans several bytes and holds a letter or digit: a run of spaces or `\r\n` is
/// whitespace throughout, and every other piece is one byte, because a `.` `:` `'` `,` `;` that joins is
/// taken into its word. So the bytes between words are classified one at a time, with no piece made of them.
///
/// Made by [`AsciiWords::skipping`], it leaves out the words marking does not need when told
/// ([`MarkWords::quiet`]; see there).
struct AsciiWords<'a> {
    text: &'a str,
    at: usize,
    /// What came since the last word (the gap rules of [`pieces_of`]).
    gap: Gap,
    /// How a wanted term may start (`None`: give every word).
    starts: Option<&'a AsciiStarts>,
    /// The last search for a word that may start a term found none before this byte.
    searched_to: usize,
}

impl<'a> AsciiWords<'a> {
    /// Every word of `text`.
    fn new(text: &'a str) -> AsciiWords<'a> {
        AsciiWords { text, at: 0, gap: Gap::Start, starts: None, searched_to: 0 }
    }

    /// The words of `text`, for a query whose terms may start as `starts` says. When marking needs no words
    /// before the next that may start a term ([`MarkWords::quiet`]), the text is searched a byte at a time for
    /// that word's start: a byte that may start a term, with the byte after it, not preceded by a letter,
    /// digit or `_` (no word starts after one). Scanning resumes at the last whitespace before it: no word
    /// spans a whitespace, and after one the gap before the next word is a space (or still the text's
    /// start).
    fn skipping(text: &'a str, starts: &'a AsciiStarts) -> AsciiWords<'a> {
        AsciiWords { starts: Some(starts), ..AsciiWords::new(text) }
    }

    /// Moves past the words before the next one that may start a term (see [`AsciiWords::skipping`]).
    fn skip(&mut self, starts: &AsciiStarts) {
        let bytes = self.text.as_bytes();
        let from = self.at;
        let word_byte = |b: u8| ALNUM[b as usize] || b == b'_';
        let mut j = from;
        // a letter, digit or `_` after a word's first byte is its second (WB5, WB8-WB10, WB13)
        let may_start = |j: usize| {
            let second = bytes.get(j + 1).copied().filter(|&b| word_byte(b));
            starts.may_start(bytes[j], second)
        };
        while j < bytes.len()
            && !(starts.first[bytes[j] as usize] && (j == 0 || !word_byte(bytes[j - 1])) && may_start(j))
        {
            j += 1;
        }
        self.searched_to = j;
        if j == bytes.len() {
            // nothing further can start a term, and nothing before can be joined: no more marks
            self.at = j;
            return;
        }
        let space = |b: &u8| matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ');
        if let Some(w) = bytes[from..j].iter().rposition(space).map(|w| from + w) {
            let start = self.gap == Gap::Start && bytes[from..w].iter().all(space);
            self.gap = if start { Gap::Start } else { Gap::Space };
            self.at = w + 1;
        }
    }
}

impl<'a> MarkWords<'a> for AsciiWords<'a> {
    fn quiet(&mut self) {
        if let Some(starts) = self.starts.filter(|_| self.at >= self.searched_to) {
            self.skip(starts);
        }
    }
}

impl<'a> Iterator for AsciiWords<'a> {
    type Item = (usize, usize, &'a str, Gap);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.text.as_bytes();
        while self.at < bytes.len() {
            let b = bytes[self.at];
            if !(ALNUM[b as usize] || b == b'_') {
                self.gap = match b {
                    b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' if self.gap == Gap::Start => Gap::Start,
                    b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => Gap::Space,
                    b'-' | b'/' | b'.' | b':' | b'+' | b'#' | b'\'' if self.gap == Gap::Connector => Gap::Connector,
                    _ => Gap::Other,
                };
                self.at += 1;
                continue;
            }
            let (start, mut end) = (self.at, self.at + 1);
            loop {
                end += bytes[end..].iter().position(|&b| !ALNUM[b as usize]).unwrap_or(bytes.len() - end);
                // after letters, digits or `_`, only these may continue a word (WB6, WB7, WB11-WB13b)
                let joins = |b: u8| matches!(b, b'.' | b'\'' | b':' | b',' | b';' | b'_');
                if end >= bytes.len() || !joins(bytes[end]) && !joins(bytes[end - 1]) || ascii_word_break(bytes, end) {
                    break;
                }
                end += 1;
            }
            self.at = end;
            let piece = &self.text[start..end];
            if !piece.bytes().any(|b| b.is_ascii_alphanumeric()) {
                // underscores only: a connector
                if self.gap != Gap::Connector {
                    self.gap = Gap::Other;
                }
                continue;
            }
            return Some((start, end, piece, std::mem::replace(&mut self.gap, Gap::Connector)));
        }
        None
    }
}

/// UAX #29 word boundaries for ASCII text: the pieces `unicode_segmentation`'s `split_word_bounds` gives for
/// it (tested against it), without its table lookups. In ASCII the rules that apply are WB3–WB3d (line breaks,
/// runs of spaces), WB5–WB12 (letters and digits joined, also across `.` `'` `:` between letters and `.` `'`
/// `,` `;` between digits) and WB13a/b (`_`); everything else breaks (WB999).
struct AsciiWordBounds<'a> {
    text: &'a str,
    at: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wb {
    Cr,
    Lf,
    Newline,
    Space,
    Letter,
    Digit,
    Underscore,
    /// `:`
    MidLetter,
    /// `.` and `'` (MidNumLet and Single_Quote, which act alike here)
    MidNumLetQ,
    /// `,` and `;`
    MidNum,
    Other,
}

#[inline]
fn wb(b: u8) -> Wb {
    WB[b as usize]
}

/// Whether a byte is an ASCII letter or digit, looked up: [`AsciiWords`] asks it of every byte.
static ALNUM: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    t
};

/// [`Wb`] of every byte (only ASCII reaches it), looked up rather than matched: it runs 3 times a byte.
static WB: [Wb; 256] = {
    let mut t = [Wb::Other; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'\r' => Wb::Cr,
            b'\n' => Wb::Lf,
            0x0b | 0x0c => Wb::Newline,
            b' ' => Wb::Space,
            b'a'..=b'z' | b'A'..=b'Z' => Wb::Letter,
            b'0'..=b'9' => Wb::Digit,
            b'_' => Wb::Underscore,
            b':' => Wb::MidLetter,
            b'.' | b'\'' => Wb::MidNumLetQ,
            b',' | b';' => Wb::MidNum,
            _ => Wb::Other,
        };
        b += 1;
    }
    t
};

/// Whether UAX #29 breaks between `bytes[i - 1]` and `bytes[i]`.
#[inline]
fn ascii_word_break(bytes: &[u8], i: usize) -> bool {
    use Wb::*;
    let (l, r) = (wb(bytes[i - 1]), wb(bytes[i]));
    let before = if i >= 2 { Some(wb(bytes[i - 2])) } else { None };
    let after = bytes.get(i + 1).map(|&b| wb(b));
    match (l, r) {
        (Cr, Lf) => false,                                                                 // WB3
        (Cr | Lf | Newline, _) | (_, Cr | Lf | Newline) => true,                           // WB3a, WB3b
        (Space, Space) => false,                                                           // WB3d
        (Letter, Letter) => false,                                                         // WB5
        (Letter, MidLetter | MidNumLetQ) if after == Some(Letter) => false,                // WB6
        (MidLetter | MidNumLetQ, Letter) if before == Some(Letter) => false,               // WB7
        (Digit, Digit) | (Letter, Digit) | (Digit, Letter) => false,                       // WB8, WB9, WB10
        (MidNum | MidNumLetQ, Digit) if before == Some(Digit) => false,                    // WB11
        (Digit, MidNum | MidNumLetQ) if after == Some(Digit) => false,                     // WB12
        (Letter | Digit | Underscore, Underscore) | (Underscore, Letter | Digit) => false, // WB13a, WB13b
        _ => true,                                                                         // WB999
    }
}

impl<'a> Iterator for AsciiWordBounds<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        if self.at >= bytes.len() {
            return None;
        }
        let start = self.at;
        let mut end = start + 1;
        loop {
            // letters and digits never break between them (WB5, WB8-WB10): a run of them takes one test a byte
            if bytes[end - 1].is_ascii_alphanumeric() {
                while end < bytes.len() && bytes[end].is_ascii_alphanumeric() {
                    end += 1;
                }
            }
            if end >= bytes.len() || ascii_word_break(bytes, end) {
                break;
            }
            end += 1;
        }
        self.at = end;
        Some(&self.text[start..end])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    Start,
    Space,
    Connector,
    Other,
}

fn is_connector(c: char) -> bool {
    matches!(c, '-' | '/' | '.' | '_' | ':' | '+' | '#' | '\'' | '‐' | '‑' | '–')
}

/// A code mixes letters and digits: `pslx350h`, `7737a001`, `iphone15`.
pub(crate) fn is_code(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit()) && s.chars().any(char::is_alphabetic)
}

fn push_chunk_join(chunk: &[&str], out: &mut Vec<String>) {
    if chunk.len() >= 2 {
        let joined: String = chunk.concat();
        if is_code(&joined) && joined.len() <= MAX_TERM_BYTES {
            out.push(joined);
        }
    }
}

fn bigrams(run: &str, out: &mut Vec<String>) {
    let chars: Vec<char> = run.chars().filter(|c| c.is_alphanumeric()).collect();
    match chars.len() {
        0 => {}
        1 => out.push(chars[0].to_string()),
        _ => out.extend(chars.windows(2).map(|w| w.iter().collect::<String>())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Han,
    OtherCjk,
    Other,
}

fn script_of(c: char) -> Script {
    match c as u32 {
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F | 0x3007 => Script::Han,
        0x3040..=0x30FF | 0x31F0..=0x31FF | 0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F => Script::OtherCjk,
        _ => Script::Other,
    }
}

/// Maximal runs of one script. Spaces and punctuation belong to the `Other` runs, so a Han run never
/// contains them (jieba never sees a space).
fn script_runs(text: &str) -> Vec<(Script, &str)> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut current: Option<Script> = None;
    for (i, c) in text.char_indices() {
        let s = script_of(c);
        match current {
            Some(cur) if cur == s => {}
            Some(cur) => {
                runs.push((cur, &text[start..i]));
                start = i;
                current = Some(s);
            }
            None => current = Some(s),
        }
    }
    if let Some(cur) = current {
        runs.push((cur, &text[start..]));
    }
    runs
}

/// Folds full-width ASCII (`ＡＢＣ１２３`) and the ideographic space to their ASCII forms.
pub(crate) fn fold_width(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| ('\u{FF01}'..='\u{FF5E}').contains(&c) || c == '\u{3000}') {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        Analyzer::shared().terms(text, Analysis::Auto)
    }

    fn has_all(text: &str, expected: &[&str]) {
        let got = terms(text);
        for e in expected {
            assert!(got.iter().any(|t| t == e), "{text:?}: expected term {e:?} in {got:?}");
        }
    }

    #[test]
    fn ascii_word_bounds_are_unicode_segmentations() {
        // every pair and triple of the classes that matter, then random strings of them
        let alphabet: &[u8] = b"aZ09_.',:;\" -\t\n\r\x0b\x0c/#$%";
        let same = |text: &str| {
            let fast: Vec<&str> = AsciiWordBounds { text, at: 0 }.collect();
            let reference: Vec<&str> = text.split_word_bounds().collect();
            assert_eq!(fast, reference, "{text:?}");
        };
        for &a in alphabet {
            for &b in alphabet {
                for &c in alphabet {
                    same(std::str::from_utf8(&[a, b, c]).unwrap());
                }
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let text: Vec<u8> =
                (0..len).map(|i| alphabet[((x >> (i * 2)) as usize ^ (i * 7)) % alphabet.len()]).collect();
            same(std::str::from_utf8(&text).unwrap());
        }
        for text in [
            "Sony PS-LX350H turntable, 33 1/3 rpm; 1,000.50 USD",
            "a.b.c 1.2.3 a'b 'a b' x_1 __ 1_a e.g. U.S.A.",
            "  \r\n\n x  y\t\tz",
        ] {
            same(text);
        }
    }

    #[test]
    fn english_is_lowercased_stemmed_and_stopworded() {
        assert_eq!(terms("The Running Dogs of the world"), ["run", "dog", "world"]);
    }

    #[test]
    fn product_codes_match_across_punctuation_and_spacing() {
        // the document writes the code one way, the query another; both must share a term
        let cases = [
            ("Sony Turntable - PS-LX350H", "PSLX350H"),
            ("Sony Turntable - PSLX350H", "PS-LX350H"),
            ("Sony Turntable - PSLX350H", "PS LX350H"),
            ("Linksys EtherFast EZXS88W Ethernet Switch", "EZXS88W"),
            ("Canon KP-36IP Print Cartridge", "kp36ip"),
            ("Canon Print Cartridge 7737A001", "7737A-001"),
        ];
        for (doc, query) in cases {
            let d: HashSet<String> = terms(doc).into_iter().collect();
            let q = terms(query);
            assert!(q.iter().any(|t| d.contains(t)), "{query:?} {q:?} shares no term with {doc:?} {d:?}");
        }
        has_all("PS-LX350H", &["ps", "lx350h", "pslx350h"]);
    }

    #[test]
    fn codes_are_not_stemmed_and_plain_words_do_not_join() {
        assert_eq!(terms("Series III speakers"), ["seri", "iii", "speaker"]);
        assert_eq!(terms("iPhone 15 cases"), ["iphon", "15", "iphone15", "case"]);
    }

    #[test]
    fn chinese_uses_jieba_search_mode() {
        has_all("中华人民共和国成立", &["中华", "人民", "共和国", "中华人民共和国", "成立"]);
    }

    #[test]
    fn marks_fall_on_what_the_analysis_matched() {
        let a = Analyzer::shared();
        let marked = |text: &str, query: &str| -> Vec<String> {
            a.marks(text, query, Analysis::Auto).into_iter().map(|r| text[r].to_owned()).collect()
        };
        assert_eq!(marked("Sony Turntable - PS-LX350H", "pslx350h"), ["PS-LX350H"]);
        assert_eq!(marked("Sony PS LX350H turntable", "PSLX350H"), ["PS LX350H"]);
        assert_eq!(marked("Running shoes for runners", "run"), ["Running"]);
        assert_eq!(marked("The cat and the hat", "the cat"), ["cat"], "stopwords are not marked");
        // Chinese: jieba's words, Traditional folded, offsets on character boundaries
        assert_eq!(marked("苹果发布新款智能手机", "智能手机"), ["智能手机"]);
        assert_eq!(marked("蘋果發佈新款電腦，售價不變", "电脑"), ["電腦"]);
        assert_eq!(marked("ＰＳ－ＬＸ３５０Ｈ 唱机", "PSLX350H"), ["ＰＳ－ＬＸ３５０Ｈ"], "full-width forms");
        assert!(marked("nothing here", "sony").is_empty());
        assert!(a.marks("", "sony", Analysis::Auto).is_empty());
        // Japanese and Korean: bigrams
        assert_eq!(a.marks("東京タワー", "タワー", Analysis::CjkBigram).len(), 1);
    }

    #[test]
    fn marks_skipping_words_that_cannot_start_a_term_are_the_marks_of_every_word() {
        let a = Analyzer::shared();
        let texts = [
            "Sony Turntable - PS-LX350H/ Belt Drive System/ 33-1/3 and 45 RPM Speeds/ Servo Speed Control",
            "Sony PS LX350H turntable, sonys and SONY's turntables; iPhone 15 cases for the iphone15",
            "Running shoes for runners who run: ran, runs, running-shoes, RUN_FAST x-run",
            "Yellow yachts, skies and dying lying tying; the news of the innings, gently ugly early only",
            "Éclair écrans ÉCOLE, İstanbul straße STRASSE, ﬁne ﬂat, Ωmega 7737A-001 7737a001",
            "苹果发布iPhone15手机，售价5999元 ＰＳ－ＬＸ３５０Ｈ 唱机 Sony",
            "a.b.c 1,000.50 don't won't can't _under_score__ 12:30 x.y:z",
        ];
        let queries = [
            "sony turntable",
            "pslx350h",
            "PS LX350H",
            "iphone 15",
            "iphone15",
            "run",
            "sky die lie tie news inning gentl ugli earli",
            "yellow yacht",
            "éclair école istanbul strasse straße fine",
            "7737a001 7737A-001",
            "手机 sony 5999",
            "under_score dont 12 a.b.c",
            "ωmega",
        ];
        for q in queries {
            let fast = a.marker(q, Analysis::Auto);
            let mut every = a.marker(q, Analysis::Auto);
            every.firsts = None;
            for text in texts {
                assert_eq!(fast.marks(text), every.marks(text), "{q:?} in {text:?}");
            }
        }
        // the fast path found what it should
        let m = a.marker("pslx350h sony", Analysis::Auto);
        let t = texts[0];
        assert_eq!(m.marks(t).into_iter().map(|r| &t[r]).collect::<Vec<_>>(), ["Sony", "PS-LX350H"]);
    }

    #[test]
    fn ascii_marks_in_one_pass_are_the_marks_of_every_word_on_random_texts() {
        // texts glued from pieces that exercise every rule of the one-pass scanner: joins across `.` `:` `'`
        // between letters and `,` `;` `.` between digits, underscores, connectors, every ASCII whitespace
        // and control characters that are not whitespace. Marking skips words (`AsciiWords::skipping`), and
        // the reference marks every word
        let pieces = [
            "sony",
            "Sony",
            "SONY's",
            "turn",
            "table",
            "turntables",
            "PS",
            "LX350H",
            "ps",
            "lx",
            "350h",
            // Snowball's exceptional forms, and words whose stem is one letter
            "dying",
            "Tying",
            "aed",
            "ued",
            // codes of three words and more, joined across connectors: skipping must not cut them
            "PS-",
            "lx-",
            "-350H",
            "x1",
            "y2",
            "a",
            "b",
            "12",
            "3",
            "don",
            "t",
            "the",
            "running",
            "_",
            "__",
            "-",
            "/",
            ".",
            ":",
            "'",
            ",",
            ";",
            "+",
            "#",
            "!",
            "(",
            " ",
            "  ",
            "\t",
            "\r\n",
            "\n",
            "\r",
            "\x0b",
            "\x0c",
            "\x1c",
            "\x00",
        ];
        let queries = [
            "sony turntable",
            "pslx350h",
            "PS LX350H",
            "a_b x1",
            "12 3",
            "don't",
            "a.b",
            "run",
            "ps lx 350h",
            "die tie",
            "u",
        ];
        let a = Analyzer::shared();
        let markers: Vec<(Marker, Marker)> = queries
            .iter()
            .map(|q| {
                let mut every = a.marker(q, Analysis::Auto);
                every.firsts = None;
                (a.marker(q, Analysis::Auto), every)
            })
            .collect();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // and texts that skipping words must read right: a code of three words, a term after a join or `_`
        let fixed = ["PS-LX-350H sony", "the PS-lx--350H, 12,3", "a.sony (x).sony", "x_sony __sony", "end. Sony 12 3"];
        let random = (0..6000).map(|_| {
            let len = 1 + next() % 14;
            (0..len).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect::<String>()
        });
        for text in fixed.into_iter().map(str::to_owned).chain(random) {
            let words: Vec<_> = AsciiWords::new(&text).collect();
            assert_eq!(words, word_pieces(&text, true), "words of {text:?}");
            for (q, (fast, every)) in queries.iter().zip(&markers) {
                assert_eq!(fast.marks(&text), every.marks(&text), "{q:?} in {text:?}");
            }
        }
    }

    #[test]
    fn stems_keep_the_first_two_letters_of_their_words() {
        // what `AsciiStarts` relies on, over every word of up to three letters from a set that covers vowels, `y`
        // and doubling consonants, with the suffixes Snowball English's steps take off or rewrite
        let stemmer = Stemmer::create(Algorithm::English);
        let letters = b"aeiouybdlstnrgx";
        let suffixes = ["", "s", "es", "ies", "ied", "sses", "ed", "edly", "eed", "eedly", "ing", "ingly", "ly", "y"];
        let mut words: Vec<String> =
            ["dying", "lying", "tying", "skies", "skis", "idly", "gently", "ugly", "news"].map(str::to_owned).to_vec();
        let mut stems: Vec<Vec<u8>> = letters.iter().map(|&c| vec![c]).collect();
        while let Some(stem) = stems.pop() {
            for suffix in suffixes {
                words.push(format!("{}{suffix}", String::from_utf8_lossy(&stem)));
            }
            if stem.len() < 3 {
                stems.extend(letters.iter().map(|&c| [stem.as_slice(), &[c]].concat()));
            }
        }
        let mut exceptions = Vec::new();
        for word in words.iter().filter(|w| w.len() >= 2) {
            let stem = stemmer.stem(word);
            if stem.len() >= 2 && stem.as_bytes()[..2] != word.as_bytes()[..2] {
                exceptions.push(format!("{word} -> {stem}"));
            }
        }
        exceptions.sort_unstable();
        exceptions.dedup();
        assert_eq!(exceptions, ["dying -> die", "lying -> lie", "tying -> tie"]);
        // and the marker takes the exceptions and one-letter stems
        let starts = AsciiStarts::of(&["die", "u"].map(str::to_owned).into_iter().collect());
        assert!(
            starts.may_start(b'D', Some(b'Y')) && starts.may_start(b'u', Some(b'e')) && starts.may_start(b'd', None)
        );
        assert!(!starts.may_start(b'd', Some(b'o')) && !starts.may_start(b'x', None));
    }

    #[test]
    fn traditional_chinese_folds_to_simplified() {
        let trad: HashSet<String> = terms("電腦軟體").into_iter().collect();
        let simp: HashSet<String> = terms("电脑软体").into_iter().collect();
        assert!(trad.contains("电脑"), "{trad:?}");
        assert_eq!(trad, simp);
    }

    #[test]
    fn mixed_script_is_handled_per_run() {
        has_all("苹果发布iPhone15手机，售价5999元", &["苹果", "发布", "iphone15", "手机", "售价", "5999"]);
        has_all("小米SU7 Ultra正式上市", &["小米", "su7", "ultra", "正式", "上市"]);
    }

    #[test]
    fn full_width_forms_fold_to_ascii() {
        has_all("ＳＯＮＹ　ＰＳ－ＬＸ３５０Ｈ", &["soni", "pslx350h"]);
    }

    #[test]
    fn punctuation_only_and_empty_text_give_no_terms() {
        assert!(terms("").is_empty());
        assert!(terms(" -- ，。！ ").is_empty());
    }

    #[test]
    fn japanese_and_korean_get_bigrams() {
        let a = Analyzer::shared();
        assert_eq!(a.terms("東京都", Analysis::CjkBigram), ["東京", "京都"]);
        assert_eq!(a.terms("한국어", Analysis::Auto), ["한국", "국어"]);
    }
}

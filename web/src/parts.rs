//! View pieces the pages share: the degraded banner, notes, the stage-timing bars, ages and snippets.

use leptos::prelude::*;
use sieve_core::StageTiming;
use sieve_text::{Analysis, Analyzer, Marker};

/// The banner a degraded answer gets, with the reasons (nothing when there are none).
pub fn degraded(reasons: &[String]) -> impl IntoView {
    (!reasons.is_empty()).then(|| {
        let items = reasons.iter().map(|r| view! { <li>{r.clone()}</li> }).collect_view();
        view! {
            <div class="banner degraded" role="alert">
                <strong>"Degraded answer: "</strong>
                "the best order available is shown, but a stage did not run as asked."
                <ul>{items}</ul>
            </div>
        }
    })
}

/// What the engine noted without anything having failed.
pub fn notes(notes: &[String]) -> impl IntoView {
    (!notes.is_empty()).then(|| {
        let items = notes.iter().map(|n| view! { <li>{n.clone()}</li> }).collect_view();
        view! { <ul class="notes" aria-label="Notes">{items}</ul> }
    })
}

/// The request's stages as bars against its total time. The rows are written as one HTML string, as
/// "why here?" is: stage names escaped as Leptos escapes text and attributes, times with [`push_fixed`].
pub fn timings(timings: &[StageTiming]) -> impl IntoView {
    let total = timings.iter().find(|t| t.stage == "total").map(|t| t.micros).unwrap_or(0);
    let max = timings.iter().filter(|t| t.stage != "total").map(|t| t.micros).max().unwrap_or(0).max(total).max(1);
    let mut rows = String::with_capacity(200 * timings.len());
    let mut digits = itoa::Buffer::new();
    for t in timings.iter().filter(|t| t.stage != "total") {
        let ms = t.micros as f64 / 1000.0;
        rows.push_str("<li><span class=\"stage\">");
        push_text(&mut rows, &t.stage);
        rows.push_str("</span><meter min=\"0\" max=\"");
        rows.push_str(digits.format(max));
        rows.push_str("\" value=\"");
        rows.push_str(digits.format(t.micros));
        rows.push_str("\" aria-label=\"");
        html_escape::encode_double_quoted_attribute_to_string(&t.stage, &mut rows);
        rows.push_str(": ");
        push_fixed(&mut rows, ms, 2);
        rows.push_str(" ms\"></meter><span class=\"ms\">");
        push_fixed(&mut rows, ms, 2);
        rows.push_str(" ms</span></li>");
    }
    view! {
        <details class="timings">
            <summary>{fixed("Took ", total as f64 / 1000.0, 2) + " ms"}</summary>
            <ul inner_html=rows></ul>
        </details>
    }
}

/// Appends `x` with `decimals` digits after the point: exactly what `format!("{x:.decimals$}")` writes
/// (tested against it), for the scores a page shows by the dozen. The standard formatter expands the float's
/// exact binary value in decimal, about a thousand instructions a number; this rounds `|x| · 10^decimals` to
/// an integer, which decides the same digits whenever the product is not within 1e-6 of a tie (its rounding
/// error is below 2⁻⁵² of it, under 1e-6 for products below 1e9). Ties, huge and non-finite values go to the
/// standard formatter.
pub fn push_fixed(out: &mut String, x: f64, decimals: u32) {
    use std::fmt::Write;
    const POW10: [u64; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];
    let scaled = x.abs() * POW10[decimals.min(6) as usize] as f64;
    let frac = scaled - scaled.floor();
    if decimals > 6 || !x.is_finite() || scaled >= 1e9 || (frac - 0.5).abs() <= 1e-6 {
        let _ = write!(out, "{x:.*}", decimals as usize);
        return;
    }
    let n = scaled.floor() as u64 + u64::from(frac > 0.5);
    if x.is_sign_negative() {
        out.push('-');
    }
    let pow = POW10[decimals as usize];
    let mut digits = itoa::Buffer::new();
    out.push_str(digits.format(n / pow));
    if decimals > 0 {
        out.push('.');
        let fraction = digits.format(n % pow);
        for _ in fraction.len()..decimals as usize {
            out.push('0');
        }
        out.push_str(fraction);
    }
}

/// Appends `text` escaped exactly as Leptos escapes a text node (`html_escape::encode_text`: `&`, `<` and `>`;
/// tested against it). `memchr3` finds the three bytes, so a text with none of them is one copy: a page
/// escapes about 3,000 characters of titles, snippets and facet values this way, at a tenth of the cost of
/// classifying every byte.
pub fn push_text(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let mut at = 0;
    for i in memchr::memchr3_iter(b'&', b'<', b'>', bytes) {
        out.push_str(&text[at..i]);
        out.push_str(match bytes[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            _ => "&gt;",
        });
        at = i + 1;
    }
    out.push_str(&text[at..]);
}

/// `prefix` then [`push_fixed`]'s `x`.
pub fn fixed(prefix: &str, x: f64, decimals: u32) -> String {
    let mut out = String::with_capacity(prefix.len() + 12);
    out.push_str(prefix);
    push_fixed(&mut out, x, decimals);
    out
}

/// "3 h ago" for an age in seconds (negative: in the future).
pub fn age(secs: i64) -> String {
    let a = secs.abs();
    let text = if a < 3600 {
        format!("{} min", a / 60)
    } else if a < 48 * 3600 {
        format!("{} h", a / 3600)
    } else {
        format!("{} days", a / 86_400)
    };
    if secs >= 0 {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

/// A page's query, analysed once for all the texts it marks: the analysis by script (every document but
/// Japanese and Korean ones), and the bigram analysis, made the first time a Japanese or Korean document asks.
pub struct QueryMarks {
    query: String,
    auto: Marker,
    bigram: std::cell::OnceCell<Marker>,
}

impl QueryMarks {
    pub fn new(query: &str) -> QueryMarks {
        QueryMarks {
            query: query.to_owned(),
            auto: Analyzer::shared().marker(query, Analysis::Auto),
            bigram: std::cell::OnceCell::new(),
        }
    }

    /// The marker for a document in `lang` (its primary subtag).
    pub fn for_lang(&self, lang: Option<&str>) -> &Marker {
        match Analysis::for_lang(lang) {
            Analysis::Auto => &self.auto,
            Analysis::CjkBigram => {
                self.bigram.get_or_init(|| Analyzer::shared().marker(&self.query, Analysis::CjkBigram))
            }
        }
    }
}

/// Where the window of `max_chars` characters starts (in characters) when the first mark is at `first`: a
/// little before it, so a match deep in a long body shows; at the start when the match is near it.
fn window_start(first: usize, max_chars: usize) -> usize {
    let lead = max_chars / 4;
    if first > max_chars.saturating_sub(lead) {
        first - lead
    } else {
        0
    }
}

/// Positions in a text by character, cheap when the text is ASCII (a character is a byte).
#[derive(Clone, Copy)]
struct Chars<'a> {
    text: &'a str,
    ascii: bool,
}

impl<'a> Chars<'a> {
    fn new(text: &'a str) -> Chars<'a> {
        Chars { text, ascii: text.is_ascii() }
    }

    /// The byte where character `c` starts (from byte `from`), or the text's end.
    fn byte_at(self, from: usize, c: usize) -> Option<usize> {
        if self.ascii {
            Some(from + c).filter(|&b| b < self.text.len())
        } else {
            self.text[from..].char_indices().nth(c).map(|(b, _)| from + b)
        }
    }

    /// How many characters the text's first `bytes` bytes hold.
    fn count(self, bytes: usize) -> usize {
        if self.ascii {
            bytes
        } else {
            self.text[..bytes].chars().count()
        }
    }
}

/// The marks [`marked_html`] needs. A long text is marked over a prefix first, cut at a space so its last
/// word is whole: one window and a margin, then four windows. The whole text is marked only when the prefix
/// has no mark or the window would reach past it. A page's cost stays bounded by its windows, not by its
/// documents' lengths.
fn window_marks(text: Chars, marker: &Marker, max_chars: usize) -> Vec<std::ops::Range<usize>> {
    for prefix_chars in [max_chars + 40, max_chars * 4] {
        let Some(limit) = text.byte_at(0, prefix_chars) else {
            return marker.marks(text.text);
        };
        let cut = text.text[..limit].rfind(char::is_whitespace).filter(|&b| b > limit / 2).unwrap_or(limit);
        let prefix = marker.marks(&text.text[..cut]);
        if let Some(first) = prefix.first() {
            let end = window_start(text.count(first.start), max_chars) + max_chars;
            // a margin, so a word cut at the prefix's end never decides what the window shows
            if end + 8 <= text.count(cut) {
                return prefix;
            }
        }
    }
    marker.marks(text.text)
}

/// `text` (at most `max_chars` characters of it, and the rest of a mark the limit would cut), escaped, with
/// the query's terms in `<mark>`: the analyzer's own matches ([`Marker::marks`]), cut on character
/// boundaries. The window starts a little before the first mark, so a match deep in a long body shows. The
/// result is HTML for an element's `inner_html`: every piece of the text goes through the escaping Leptos uses
/// for text ([`push_text`]), and the only markup is `<mark>`; writing it as one string rather than a view per
/// piece keeps a page's cards cheap (BENCHMARKS.md, "The web UI's search page").
pub fn marked_html(text: &str, marker: &Marker, max_chars: usize) -> String {
    let chars = Chars::new(text);
    let ranges = window_marks(chars, marker, max_chars);
    let from_char = window_start(ranges.first().map_or(0, |r| chars.count(r.start)), max_chars);
    let from = chars.byte_at(0, from_char).unwrap_or(text.len());
    let to = chars.byte_at(from, max_chars).unwrap_or(text.len());
    // a mark the window's end would cut shows whole (`央行`, not `央…`): the window ends after it
    let to = ranges.iter().find(|r| r.start < to && to < r.end).map_or(to, |r| r.end);
    let mut out = String::with_capacity(to - from + 16 * ranges.len() + 8);
    if from > 0 {
        out.push('…');
    }
    let mut at = from;
    for r in ranges.iter().filter(|r| r.end > from && r.start < to) {
        let (a, b) = (r.start.max(from), r.end.min(to));
        push_text(&mut out, &text[at..a]);
        out.push_str("<mark>");
        push_text(&mut out, &text[a..b]);
        out.push_str("</mark>");
        at = b;
    }
    push_text(&mut out, &text[at..to]);
    if to < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_writes_what_the_standard_formatter_writes() {
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut values: Vec<f64> = vec![
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            0.125,
            0.375,
            -0.125,
            0.0005,
            0.00049,
            0.9995,
            0.99949,
            1e-7,
            -1e-7,
            20.628716,
            16.178652,
            999.9995,
            123_456.789,
            999_999.999_5,
            1e9,
            3e15,
            -4e20,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for _ in 0..20_000 {
            let bits = next();
            // scores' magnitudes (0.0001 to 10^6), both signs, and raw f32 values of every exponent
            let magnitude = 10f64.powi((bits % 11) as i32 - 4);
            values.push((bits >> 11) as f64 / (1u64 << 53) as f64 * magnitude * if bits & 1 == 0 { 1.0 } else { -1.0 });
            values.push(f64::from(f32::from_bits((bits >> 32) as u32)));
            // numbers of cents and thousandths, which sit on or next to ties
            values.push((bits % 2_000_000) as f64 / 2000.0);
        }
        for x in values {
            for d in 0..=7u32 {
                let mut out = String::new();
                push_fixed(&mut out, x, d);
                assert_eq!(out, format!("{x:.*}", d as usize), "{x:e} with {d} decimals");
            }
            let f = x as f32;
            assert_eq!(fixed("s ", f64::from(f), 3), format!("s {f:.3}"), "{f:e} as f32");
        }
    }

    #[test]
    fn text_is_escaped_as_leptos_escapes_it() {
        let pieces = ["&", "<", ">", "\"", "'", "a", "sony ", "手机", "&amp;", "é", "\u{1F600}", "<mark>", "\n", ""];
        for text in crate::testing::random_texts(&pieces, 5_000, 11, 0x2545_f491_4f6c_dd1d) {
            let mut out = String::from("kept ");
            push_text(&mut out, &text);
            assert_eq!(out, format!("kept {}", html_escape::encode_text(&text)), "{text:?}");
            if !text.is_empty() {
                // (Leptos writes an empty text node as a space, so it is not compared)
                assert_eq!(out[5..], leptos::tachys::view::RenderHtml::to_html(text.clone()), "{text:?}");
            }
        }
    }

    #[test]
    fn timings_are_bars_against_the_total() {
        let t = |stage: &str, micros| StageTiming { stage: stage.into(), micros };
        let html = RenderHtml::to_html(timings(&[t("bm25", 1500), t("<x> & \"y\"", 250), t("total", 2000)]));
        let html = scraper::Html::parse_fragment(&html);
        let all = |css: &str| crate::testing::texts(&html, css);
        let attr = |name: &str| crate::testing::attrs(&html, "meter", name);
        assert_eq!(all("summary"), ["Took 2.00 ms"]);
        assert_eq!(all(".stage"), ["bm25", "<x> & \"y\""]);
        assert_eq!(all(".ms"), ["1.50 ms", "0.25 ms"]);
        assert_eq!(attr("max"), ["2000", "2000"]);
        assert_eq!(attr("value"), ["1500", "250"]);
        assert_eq!(attr("aria-label"), ["bm25: 1.50 ms", "<x> & \"y\": 0.25 ms"]);
        assert!(all("x").is_empty());
    }

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(age(90), "1 min ago");
        assert_eq!(age(5 * 3600), "5 h ago");
        assert_eq!(age(3 * 86_400), "3 days ago");
        assert_eq!(age(-7200), "in 2 h");
    }

    #[test]
    fn marks_are_the_analyzers_and_text_stays_escaped() {
        let html = |text: &str, q: &str, n: usize| marked_html(text, QueryMarks::new(q).for_lang(None), n);
        assert_eq!(html("Sony Turntable PS-LX350H", "pslx350h", 100), "Sony Turntable <mark>PS-LX350H</mark>");
        assert_eq!(html("<b>智能手机</b>市场", "智能手机", 100), "&lt;b&gt;<mark>智能手机</mark>&lt;/b&gt;市场");
        // escaped as Leptos escapes a text node, inside and outside the marks
        let text = "Tom & Jerry's <script>alert(1)</script> \"sony\" & co";
        let leptos_text = leptos::tachys::view::RenderHtml::to_html(text.to_owned());
        assert_eq!(html(text, "nothing", 100), leptos_text);
        assert_eq!(html(text, "sony", 100), leptos_text.replace("sony", "<mark>sony</mark>"));
        assert_eq!(html("<sony>", "sony", 100), "&lt;<mark>sony</mark>&gt;");
        // a match deep in a long text: the window moves to it, with ellipses
        let long = format!("{}央行宣布降息{}", "前".repeat(300), "后".repeat(300));
        let out = html(&long, "央行", 40);
        assert!(out.starts_with('…') && out.ends_with('…') && out.contains("<mark>央行</mark>"), "{out}");
        assert_eq!(out.chars().filter(|c| *c == '前' || *c == '后').count() + 6, 40);
        // a mark across the window's end is not cut: the window ends after it
        let cut = html("央行表示互联网金融央行健康", "央行", 10);
        assert_eq!(cut, "<mark>央行</mark>表示互联网金融<mark>央行</mark>…");
        assert_eq!(html("sony turntable", "sony turntable", 8), "<mark>sony</mark> <mark>turntable</mark>");
    }

    #[test]
    fn a_long_text_marked_over_its_prefix_shows_what_marking_it_whole_shows() {
        // where the window starts and the marked words inside it, from a text's marks
        let shown = |text: &str, ranges: Vec<std::ops::Range<usize>>, n: usize| {
            let first = ranges.first().map_or(0, |r| text[..r.start].chars().count());
            let from = window_start(first, n);
            let in_window: Vec<String> = ranges
                .iter()
                .map(|r| (text[..r.start].chars().count(), &text[r.clone()]))
                .filter(|(c, _)| *c >= from && *c < from + n)
                .map(|(_, t)| t.to_owned())
                .collect();
            (from, in_window)
        };
        // the reference marks the whole text
        let whole = |text: &str, q: &str, n: usize| shown(text, QueryMarks::new(q).for_lang(None).marks(text), n);
        let windowed = |text: &str, q: &str, n: usize| {
            shown(text, window_marks(Chars::new(text), QueryMarks::new(q).for_lang(None), n), n)
        };
        let filler = "a plain sentence about nothing in particular. ".repeat(40);
        let texts = [
            format!("Sony turntable PS-LX350H. {filler} sony again at the end"),
            format!("{filler} the turntable only comes late, then Sony"),
            format!("{} Sony turntable", "x".repeat(2000)),
            format!("{}央行宣布降息{}", "前".repeat(900), "后".repeat(900)),
            format!("央行宣布降息{}央行", "后".repeat(900)),
        ]
        .into_iter()
        // the first mark before, across and after the end of the first prefix (one window and a margin)
        .chain((0..60).step_by(3).map(|k| format!("{}Sony PS LX350H turntable {filler}", "word ".repeat(k))))
        .chain((0..90).step_by(7).map(|k| format!("{}央行宣布降息{}", "前".repeat(k), "后".repeat(900))))
        .collect::<Vec<_>>();
        for text in &texts {
            for (q, n) in
                [("sony turntable", 220), ("pslx350h", 200), ("央行", 80), ("nothing", 40), ("turntable", 120)]
            {
                assert_eq!(windowed(text, q, n), whole(text, q, n), "{q} in {}…", &text[..40]);
            }
        }
    }
}

//! View pieces the pages share: the degraded banner, notes, the stage-timing bars, ages and snippets.

use leptos::prelude::*;
use sieve_core::StageTiming;
use sieve_text::{Analysis, Analyzer};

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

/// The request's stages as bars against its total time.
pub fn timings(timings: &[StageTiming]) -> impl IntoView {
    let total = timings.iter().find(|t| t.stage == "total").map(|t| t.micros).unwrap_or(0);
    let max = timings.iter().filter(|t| t.stage != "total").map(|t| t.micros).max().unwrap_or(0).max(total).max(1);
    let rows = timings
        .iter()
        .filter(|t| t.stage != "total")
        .map(|t| {
            let ms = format!("{:.2} ms", t.micros as f64 / 1000.0);
            let label = format!("{}: {ms}", t.stage);
            view! {
                <li>
                    <span class="stage">{t.stage.clone()}</span>
                    <meter min="0" max=max.to_string() value=t.micros.to_string() aria-label=label></meter>
                    <span class="ms">{ms.clone()}</span>
                </li>
            }
        })
        .collect_view();
    view! {
        <details class="timings">
            <summary>{format!("Took {:.2} ms", total as f64 / 1000.0)}</summary>
            <ul>{rows}</ul>
        </details>
    }
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

/// `text` (at most `max_chars` characters of it) with the query's terms in `<mark>`: the analyzer's own
/// matches ([`Analyzer::marks`]), cut on character boundaries. The window starts a little before the first
/// mark, so a match deep in a long body shows.
pub fn marked(text: &str, query: &str, lang: Option<&str>, max_chars: usize) -> impl IntoView {
    let ranges = Analyzer::shared().marks(text, query, Analysis::for_lang(lang));
    let first = ranges.first().map_or(0, |r| text[..r.start].chars().count());
    let lead = max_chars / 4;
    let from_char = first.saturating_sub(lead).min(first);
    let from_char = if first > max_chars.saturating_sub(lead) { from_char } else { 0 };
    let byte_at = |c: usize| text.char_indices().nth(c).map_or(text.len(), |(b, _)| b);
    let (from, to) = (byte_at(from_char), byte_at(from_char + max_chars));
    let mut pieces: Vec<AnyView> = Vec::new();
    if from > 0 {
        pieces.push("…".into_any());
    }
    let mut at = from;
    for r in ranges.iter().filter(|r| r.end > from && r.start < to) {
        let (a, b) = (r.start.max(from), r.end.min(to));
        if a > at {
            pieces.push(text[at..a].to_owned().into_any());
        }
        pieces.push(view! { <mark>{text[a..b].to_owned()}</mark> }.into_any());
        at = b;
    }
    if at < to {
        pieces.push(text[at..to].to_owned().into_any());
    }
    if to < text.len() {
        pieces.push("…".into_any());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(age(90), "1 min ago");
        assert_eq!(age(5 * 3600), "5 h ago");
        assert_eq!(age(3 * 86_400), "3 days ago");
        assert_eq!(age(-7200), "in 2 h");
    }

    #[test]
    fn marks_are_the_analyzers_and_text_stays_escaped() {
        use leptos::tachys::view::RenderHtml;
        // Leptos marks a list's end with an empty comment (`<!>`), which a browser ignores
        let html = |text: &str, q: &str, n: usize| marked(text, q, None, n).to_html().replace("<!>", "");
        assert_eq!(html("Sony Turntable PS-LX350H", "pslx350h", 100), "Sony Turntable <mark>PS-LX350H</mark>");
        assert_eq!(html("<b>智能手机</b>市场", "智能手机", 100), "&lt;b&gt;<mark>智能手机</mark>&lt;/b&gt;市场");
        // a match deep in a long text: the window moves to it, with ellipses
        let long = format!("{}央行宣布降息{}", "前".repeat(300), "后".repeat(300));
        let out = html(&long, "央行", 40);
        assert!(out.starts_with('…') && out.ends_with('…') && out.contains("<mark>央行</mark>"), "{out}");
        assert_eq!(out.chars().filter(|c| *c == '前' || *c == '后').count() + 6, 40);
    }
}

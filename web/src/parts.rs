//! View pieces the pages share: the degraded banner, notes, the stage-timing bars, ages and snippets.

use leptos::prelude::*;
use sieve_core::StageTiming;

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

/// The first `chars` characters of `text` (cut on a character boundary), with an ellipsis when cut.
pub fn snippet(text: &str, chars: usize) -> String {
    let mut out: String = text.chars().take(chars).collect();
    if text.chars().nth(chars).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_snippets_read_as_people_write_them() {
        assert_eq!(age(90), "1 min ago");
        assert_eq!(age(5 * 3600), "5 h ago");
        assert_eq!(age(3 * 86_400), "3 days ago");
        assert_eq!(age(-7200), "in 2 h");
        assert_eq!(snippet("智能手机市场", 4), "智能手机…");
        assert_eq!(snippet("short", 10), "short");
    }
}

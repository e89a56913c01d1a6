//! What the unit tests share: random texts glued from pieces, and reading rendered HTML back.

/// `n` texts of up to `max_pieces` pieces each, drawn by a xorshift generator from `seed` (the same texts
/// every run).
pub fn random_texts(pieces: &[&str], n: usize, max_pieces: u64, seed: u64) -> Vec<String> {
    let mut next = xorshift(seed);
    (0..n)
        .map(|_| (0..next() % (max_pieces + 1)).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect())
        .collect()
}

/// A xorshift64 generator: repeatable numbers for tests, with no crate behind them.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// The text of every element matching `selector`.
pub fn texts(html: &scraper::Html, selector: &str) -> Vec<String> {
    let selector = scraper::Selector::parse(selector).unwrap();
    html.select(&selector).map(|e| e.text().collect::<String>()).collect()
}

/// An attribute of every element matching `selector` (`(none)` where it is missing).
pub fn attrs(html: &scraper::Html, selector: &str, attr: &str) -> Vec<String> {
    let selector = scraper::Selector::parse(selector).unwrap();
    html.select(&selector).map(|e| e.value().attr(attr).unwrap_or("(none)").to_owned()).collect()
}

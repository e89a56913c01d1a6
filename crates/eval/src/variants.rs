//! Query variants for measuring typo tolerance and as-you-type search: the dev queries of a dataset rewritten
//! the way shoppers type them, deterministically (the same query always gets the same variant).
//!
//! - **Typo** ([`typo`]): one character edit in each word of 5 letters or more (two edits in words of 9 or
//!   more), never in a word with a digit (codes and numbers stay as they are). The edit (deletion, insertion of
//!   a neighbour letter, substitution by one, or a swap of two adjacent letters) and its position come from a
//!   hash of the query's id and the word's position, never from the first letter (which shoppers rarely miss).
//! - **Prefix** ([`prefix`]): the last word cut to its first 3 or 4 characters (by the hash), as if the shopper
//!   were still typing it; a last word of 4 characters or fewer is left whole.
//!
//! A query that neither rewrites is kept as it is, so the variant set has the same queries and judgments.

/// FNV-1a over the query id and a salt: the generator's only source of choice.
fn hash(id: &str, salt: u64) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ salt.wrapping_mul(0x100000001b3);
    for b in id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A letter near `c` on a QWERTY keyboard row (or `c`'s successor when it is not on one).
fn neighbour(c: char, pick: u64) -> char {
    const ROWS: [&str; 3] = ["qwertyuiop", "asdfghjkl", "zxcvbnm"];
    for row in ROWS {
        let letters: Vec<char> = row.chars().collect();
        if let Some(i) = letters.iter().position(|&l| l == c.to_ascii_lowercase()) {
            let j = if (pick.is_multiple_of(2) && i > 0) || i + 1 == letters.len() { i - 1 } else { i + 1 };
            return letters[j];
        }
    }
    char::from_u32(c as u32 + 1).unwrap_or(c)
}

/// One edit in `word` (at least 2 letters long), never at its first letter.
fn edit(word: &str, h: u64) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    let at = 1 + (h >> 8) as usize % (chars.len() - 1);
    match h % 4 {
        0 => {
            chars.remove(at);
        }
        1 => chars.insert(at, neighbour(chars[at], h >> 20)),
        2 => chars[at] = neighbour(chars[at], h >> 20),
        _ => {
            let j = if at + 1 < chars.len() { at + 1 } else { at - 1 };
            if chars[at] == chars[j] {
                chars[at] = neighbour(chars[at], h >> 20);
            } else {
                chars.swap(at, j);
            }
        }
    }
    chars.into_iter().collect()
}

/// The query with typos in its long words (see the module doc), or `None` when no word qualifies.
pub fn typo(id: &str, text: &str) -> Option<String> {
    let mut changed = false;
    let words: Vec<String> = text
        .split(' ')
        .enumerate()
        .map(|(i, w)| {
            let letters = w.chars().filter(|c| c.is_alphabetic()).count();
            if letters < 5 || w.chars().any(|c| c.is_ascii_digit()) || !w.chars().all(char::is_alphabetic) {
                return w.to_owned();
            }
            changed = true;
            let once = edit(w, hash(id, 2 * i as u64));
            if letters >= 9 {
                edit(&once, hash(id, 2 * i as u64 + 1))
            } else {
                once
            }
        })
        .collect();
    changed.then(|| words.join(" "))
}

/// The query with its last word cut to 3 or 4 characters, or `None` when the last word is that short already.
pub fn prefix(id: &str, text: &str) -> Option<String> {
    let trimmed = text.trim_end();
    let start = trimmed.rfind(' ').map_or(0, |i| i + 1);
    let last: Vec<char> = trimmed[start..].chars().collect();
    let keep = 3 + (hash(id, 99) % 2) as usize;
    (last.len() > keep).then(|| format!("{}{}", &trimmed[..start], last[..keep].iter().collect::<String>()))
}

/// Which rewrite a query set gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    #[default]
    Clean,
    Typo,
    Prefix,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Clean => "clean",
            Variant::Typo => "typo",
            Variant::Prefix => "prefix",
        }
    }

    /// The query rewritten (or as it is, where this variant leaves it).
    pub fn apply(self, id: &str, text: &str) -> String {
        let rewritten = match self {
            Variant::Clean => None,
            Variant::Typo => typo(id, text),
            Variant::Prefix => prefix(id, text),
        };
        rewritten.unwrap_or_else(|| text.to_owned())
    }
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Variant, String> {
        match s {
            "clean" => Ok(Variant::Clean),
            "typo" => Ok(Variant::Typo),
            "prefix" => Ok(Variant::Prefix),
            other => Err(format!("expected clean, typo or prefix, found {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_touch_long_words_only_and_never_codes() {
        let q = "samsung 7737A001 toner cartridge for printers";
        let t = typo("q1", q).unwrap();
        assert_eq!(t, typo("q1", q).unwrap(), "deterministic");
        let (a, b): (Vec<&str>, Vec<&str>) = (q.split(' ').collect(), t.split(' ').collect());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            let long = x.chars().count() >= 5 && x.chars().all(char::is_alphabetic);
            assert_eq!(x != y, long, "{x} -> {y}");
            assert_eq!(x.chars().next(), y.chars().next(), "the first letter stays");
        }
        assert_eq!(typo("q2", "tv 4k"), None);
    }

    #[test]
    fn prefixes_cut_the_last_word() {
        let p = prefix("q1", "sony turntable").unwrap();
        assert!(p == "sony tur" || p == "sony turn", "{p}");
        assert_eq!(prefix("q1", "sony tv"), None);
        assert_eq!(Variant::Prefix.apply("q1", "sony tv"), "sony tv");
    }
}

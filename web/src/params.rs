//! A page's state, read from its URL: repeated keys (`brand=sony&brand=bose`) kept in order, and the URL of
//! the same page with one thing changed.

/// The query string's pairs, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Parses a query string; a malformed one reads as empty rather than failing the page.
    pub fn parse(query: Option<&str>) -> Params {
        Params(query.and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default())
    }

    /// The first non-blank value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, v)| k == key && !v.trim().is_empty()).map(|(_, v)| v.as_str())
    }

    /// Every non-blank value of `key`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, v)| k == key && !v.trim().is_empty()).map(|(_, v)| v.as_str()).collect()
    }

    pub fn has(&self, key: &str, value: &str) -> bool {
        self.0.iter().any(|(k, v)| k == key && v == value)
    }

    /// These params with `key` set to `value` (every other value of it removed; `None` removes it).
    pub fn with(&self, key: &str, value: Option<&str>) -> Params {
        let mut out: Vec<(String, String)> = self.0.iter().filter(|(k, _)| k != key).cloned().collect();
        if let Some(v) = value {
            out.push((key.to_owned(), v.to_owned()));
        }
        Params(out)
    }

    /// These params with `key=value` added, or removed if present (a facet link).
    pub fn toggle(&self, key: &str, value: &str) -> Params {
        if self.has(key, value) {
            Params(self.0.iter().filter(|(k, v)| !(k == key && v == value)).cloned().collect())
        } else {
            let mut out = self.0.clone();
            out.push((key.to_owned(), value.to_owned()));
            Params(out)
        }
    }

    /// `path?query`, with blank values left out.
    pub fn url(&self, path: &str) -> String {
        let pairs: Vec<&(String, String)> = self.0.iter().filter(|(_, v)| !v.is_empty()).collect();
        if pairs.is_empty() {
            return path.to_owned();
        }
        format!("{path}?{}", serde_urlencoded::to_string(pairs).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_toggle_and_round_trip() {
        let p = Params::parse(Some("q=sony+tv&brand=sony&brand=bose&page=2&empty="));
        assert_eq!(p.get("q"), Some("sony tv"));
        assert_eq!(p.all("brand"), ["sony", "bose"]);
        assert_eq!(p.get("empty"), None);
        let off = p.toggle("brand", "sony").with("page", None);
        assert_eq!(off.url("/"), "/?q=sony+tv&brand=bose");
        let on = off.toggle("brand", "lg");
        assert_eq!(on.all("brand"), ["bose", "lg"]);
        let _ = Params::parse(Some("%zz=1&&q=%FF")); // malformed: read as far as it goes, never a panic
        assert_eq!(Params::default().url("/feed"), "/feed");
        assert_eq!(Params::parse(Some("q=%E6%89%8B%E6%9C%BA")).get("q"), Some("手机"));
    }
}

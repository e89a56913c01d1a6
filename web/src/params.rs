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

    /// The same page's URL with some things changed: see [`Link`].
    pub fn link(&self) -> Link<'_> {
        Link(self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
    }

    /// [`Link::with`] on these params.
    pub fn with<'a>(&'a self, key: &'a str, value: Option<&'a str>) -> Link<'a> {
        self.link().with(key, value)
    }

    /// [`Link::toggle`] on these params.
    pub fn toggle<'a>(&'a self, key: &'a str, value: &'a str) -> Link<'a> {
        self.link().toggle(key, value)
    }
}

/// A page's params with some things changed, borrowed from the [`Params`] and the changes: a page builds
/// dozens of these (a facet value's link each), so none copies a pair, and the URL is encoded once.
#[derive(Debug, Clone, PartialEq)]
pub struct Link<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Link<'a> {
    /// `key` set to `value` (every other value of it removed; `None` removes it).
    pub fn with(mut self, key: &'a str, value: Option<&'a str>) -> Link<'a> {
        self.0.retain(|(k, _)| *k != key);
        if let Some(v) = value {
            self.0.push((key, v));
        }
        self
    }

    /// `key=value` added, or removed if present (a facet link).
    pub fn toggle(mut self, key: &'a str, value: &'a str) -> Link<'a> {
        if self.0.contains(&(key, value)) {
            self.0.retain(|p| *p != (key, value));
        } else {
            self.0.push((key, value));
        }
        self
    }

    /// `path?query` (`application/x-www-form-urlencoded`), with blank values left out.
    pub fn url(&self, path: &str) -> String {
        let mut pairs = self.0.iter().filter(|(_, v)| !v.is_empty()).peekable();
        if pairs.peek().is_none() {
            return path.to_owned();
        }
        let mut out = String::with_capacity(path.len() + 96);
        out.push_str(path);
        out.push('?');
        let mut query = form_urlencoded::Serializer::for_suffix(out, path.len() + 1);
        query.extend_pairs(pairs);
        query.finish()
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
        assert_eq!(off.clone().toggle("brand", "lg").url("/"), "/?q=sony+tv&brand=bose&brand=lg");
        assert_eq!(off.toggle("brand", "bose").with("q", Some("a&b=c 手")).url("/"), "/?q=a%26b%3Dc+%E6%89%8B");
        assert_eq!(p.with("q", None).with("brand", None).with("page", None).url("/x"), "/x");
        let _ = Params::parse(Some("%zz=1&&q=%FF")); // malformed: read as far as it goes, never a panic
        assert_eq!(Params::default().link().url("/feed"), "/feed");
        assert_eq!(Params::parse(Some("q=%E6%89%8B%E6%9C%BA")).get("q"), Some("手机"));
    }
}

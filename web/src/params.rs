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
        let mut out = String::with_capacity(path.len() + 96);
        self.push_url(&mut out, path, "&");
        out
    }

    /// [`Link::url`] written into an attribute value, escaped as HTML escapes it: the query's encoding leaves
    /// only letters, digits, `*-._+%` and `=` in keys and values, so the pairs' `&` separators, written as
    /// `&amp;`, are all there is to escape. A page writes a link per facet value this way, in one pass.
    pub fn push_attr_url(&self, out: &mut String, path: &str) {
        html_escape::encode_double_quoted_attribute_to_string(path, out);
        self.push_url(out, "", "&amp;");
    }

    fn push_url(&self, out: &mut String, path: &str, separator: &str) {
        out.push_str(path);
        let mut first = true;
        for (k, v) in self.0.iter().filter(|(_, v)| !v.is_empty()) {
            out.push_str(if first { "?" } else { separator });
            first = false;
            push_form_encoded(out, k);
            out.push('=');
            push_form_encoded(out, v);
        }
    }
}

/// Appends `s` encoded as `application/x-www-form-urlencoded` encodes it: what
/// `form_urlencoded::byte_serialize` writes (tested against it), `*-._` letters and digits kept, a space as
/// `+`, every other byte as `%XX`. A page writes a few dozen links of the same pairs; this copies each run of
/// kept bytes at once instead of going through an iterator of pieces.
fn push_form_encoded(out: &mut String, s: &str) {
    static KEPT: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = matches!(b as u8, b'*' | b'-' | b'.' | b'_' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z');
            b += 1;
        }
        t
    };
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = s.as_bytes();
    let mut at = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if KEPT[b as usize] {
            continue;
        }
        // a run of kept bytes is ASCII, so it starts and ends on character boundaries (an empty one may not)
        if at < i {
            out.push_str(&s[at..i]);
        }
        if b == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
        at = i + 1;
    }
    if at < bytes.len() {
        out.push_str(&s[at..]);
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

    #[test]
    fn a_link_in_an_attribute_is_its_url_escaped() {
        let p = Params::parse(Some("q=a%26b%3D%22c%22+%3Cx%3E+%E6%89%8B&brand=sony&brand=b%26o&empty=&x%3Dy=1*-._~"));
        for link in [p.link(), p.toggle("brand", "sony"), p.with("q", None), p.with("q", None).with("brand", None)] {
            for path in ["/", "/feed"] {
                let mut attr = String::new();
                link.push_attr_url(&mut attr, path);
                let url = link.url(path);
                assert_eq!(attr, html_escape::encode_double_quoted_attribute(&url), "{url}");
                assert_eq!(url, reference_url(&link, path));
            }
        }
    }

    #[test]
    fn form_encoding_is_form_urlencodeds() {
        let pieces = ["a", "Z", "0", "*-._", " ", "+", "&", "=", "%", "~", "/", "手", "é", "\u{1F600}", "\n", "\"<>'"];
        for s in crate::testing::random_texts(&pieces, 5_000, 8, 0x853c_49e6_748f_ea9b) {
            let mut out = String::from("x=");
            push_form_encoded(&mut out, &s);
            assert_eq!(
                out,
                format!("x={}", form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()),
                "{s:?}"
            );
        }
    }

    /// The URL as `form_urlencoded`'s own serializer writes it.
    fn reference_url(link: &Link, path: &str) -> String {
        let pairs: Vec<_> = link.0.iter().filter(|(_, v)| !v.is_empty()).collect();
        if pairs.is_empty() {
            return path.to_owned();
        }
        format!("{path}?{}", form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish())
    }
}

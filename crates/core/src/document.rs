//! The document model and its validation.
//!
//! A document arrives as a JSON object (a JSONL line, a CSV row turned into an object, a request body) and
//! goes through [`Document::from_json`] exactly once. Known fields are typed and checked; every other field
//! is kept verbatim in [`Document::extra`] and returned untouched.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Limits applied while validating a document. A row over a limit is rejected, never silently cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted `id`, in bytes.
    pub max_id_bytes: usize,
    /// Largest accepted document (its serialized JSON), in bytes.
    pub max_document_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_id_bytes: 512, max_document_bytes: 1024 * 1024 }
    }
}

/// Why a document was rejected. Each variant names the field, what was expected and what was found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DocumentError {
    #[error("expected a JSON object for a document, found {found}")]
    NotAnObject { found: String },
    #[error("missing required field `{field}` (expected {expected})")]
    MissingField { field: &'static str, expected: &'static str },
    #[error("field `{field}`: expected {expected}, found {found}")]
    Invalid { field: String, expected: &'static str, found: String },
    #[error("document is {found} bytes, over the limit of {limit} bytes")]
    TooLarge { found: usize, limit: usize },
}

/// A document identifier: a non-empty string, unique within an index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DocId(String);

impl DocId {
    /// Validates an identifier: 1..=`max_bytes` bytes, not blank, no control characters.
    pub fn parse(raw: &str, max_bytes: usize) -> Result<DocId, DocumentError> {
        let invalid = |expected| DocumentError::Invalid { field: "id".into(), expected, found: render_str(raw) };
        if raw.trim().is_empty() {
            return Err(invalid("a non-empty string"));
        }
        if raw.len() > max_bytes {
            return Err(DocumentError::Invalid {
                field: "id".into(),
                expected: "a string of at most the id byte limit",
                found: format!("{} bytes (limit {max_bytes})", raw.len()),
            });
        }
        if raw.chars().any(char::is_control) {
            return Err(invalid("a string without control characters"));
        }
        if raw.chars().any(invisible_or_bidi) {
            return Err(invalid(
                "a string without zero-width or bidirectional-control characters (two ids that differ only by \
                 them would look the same)",
            ));
        }
        Ok(DocId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Characters that change how an id looks without being seen, or reorder it: zero-width characters and joiners,
/// the word joiner and BOM, and the bidirectional marks, embeddings, overrides and isolates (Unicode's
/// Bidi_Control plus the zero-width format characters). An id holding one could display exactly as another id.
fn invisible_or_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' // zero-width space, non-joiner, joiner; left-to-right and right-to-left marks
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner and invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{061C}' // Arabic letter mark
            | '\u{FEFF}' // zero-width no-break space (BOM)
    )
}

/// A BCP 47-style language tag (`en`, `zh`, `zh-Hant`, `en-US`), lowercased.
///
/// Any well-formed tag is accepted; analysis picks a tokenizer from its primary subtag and falls back to
/// script detection for languages it has no dedicated analyzer for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lang(String);

impl Lang {
    pub fn parse(raw: &str) -> Result<Lang, DocumentError> {
        let tag = raw.trim();
        let mut parts = tag.split(['-', '_']);
        let primary = parts.next().unwrap_or("");
        let primary_ok = (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_alphabetic());
        let rest_ok = parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
        if !primary_ok || !rest_ok {
            return Err(DocumentError::Invalid {
                field: "lang".into(),
                expected: "a language tag such as \"en\", \"zh\" or \"zh-Hant\"",
                found: render_str(raw),
            });
        }
        Ok(Lang(tag.replace('_', "-").to_ascii_lowercase()))
    }

    /// The primary subtag: `zh` for `zh-hant-tw`.
    pub fn primary(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A category path such as `electronics/audio`: non-empty segments separated by `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Category(Vec<String>);

impl Category {
    pub fn parse(raw: &str) -> Result<Category, DocumentError> {
        let trimmed = raw.trim().trim_matches('/');
        let segments: Vec<String> = trimmed.split('/').map(|s| s.trim().to_owned()).collect();
        if trimmed.is_empty() || segments.iter().any(String::is_empty) {
            return Err(DocumentError::Invalid {
                field: "category".into(),
                expected: "a path of non-empty segments such as \"electronics/audio\"",
                found: render_str(raw),
            });
        }
        Ok(Category(segments))
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The path as written in documents: `electronics/audio`.
    pub fn path(&self) -> String {
        self.0.join("/")
    }
}

/// A point in time parsed from RFC 3339 (`2024-05-01T08:30:00+08:00`); keeps its offset for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn parse_rfc3339(raw: &str) -> Option<Timestamp> {
        OffsetDateTime::parse(raw.trim(), &Rfc3339).ok().map(Timestamp)
    }

    /// What documents and filters accept: an RFC 3339 date-time, or a date `YYYY-MM-DD`, meaning midnight UTC.
    pub fn parse(raw: &str) -> Option<Timestamp> {
        let raw = raw.trim();
        Timestamp::parse_rfc3339(raw).or_else(|| {
            let date_only = raw.len() == 10 && raw.as_bytes()[4] == b'-' && raw.as_bytes()[7] == b'-';
            date_only.then(|| Timestamp::parse_rfc3339(&format!("{raw}T00:00:00Z"))).flatten()
        })
    }

    pub fn from_unix_seconds(secs: i64) -> Option<Timestamp> {
        OffsetDateTime::from_unix_timestamp(secs).ok().map(Timestamp)
    }

    pub fn unix_seconds(&self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn unix_nanos(&self) -> i128 {
        self.0.unix_timestamp_nanos()
    }

    pub fn to_rfc3339(&self) -> String {
        self.0.format(&Rfc3339).unwrap_or_else(|_| self.0.to_string())
    }
}

/// A validated document. Construct it with [`Document::from_json`]; serialize it with [`Document::to_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: DocId,
    pub title: Option<String>,
    pub body: Option<String>,
    pub url: Option<String>,
    pub lang: Option<Lang>,
    pub brand: Option<String>,
    pub category: Option<Category>,
    pub price: Option<f64>,
    pub tags: Vec<String>,
    pub source: Option<String>,
    pub published_at: Option<Timestamp>,
    /// Every field the model does not know, kept exactly as given.
    pub extra: Map<String, Value>,
}

/// The fields the model knows, in the order [`Document::to_json`] writes them.
pub const KNOWN_FIELDS: [&str; 11] =
    ["id", "title", "body", "url", "lang", "brand", "category", "price", "tags", "source", "published_at"];

impl Document {
    /// Validates a JSON value into a document. `null` means "absent" for every optional field.
    ///
    /// Text fields accept strings; `price` accepts a number or a numeric string (CSV cells are strings) and
    /// must be finite and ≥ 0; `tags` accepts an array of strings or one string of `|`-separated tags;
    /// `published_at` must be an RFC 3339 date-time or a date `YYYY-MM-DD` (midnight UTC, as in filters).
    pub fn from_json(value: Value, limits: &Limits) -> Result<Document, DocumentError> {
        let Value::Object(mut obj) = value else {
            return Err(DocumentError::NotAnObject { found: render_value(&value) });
        };
        let id = match obj.remove("id") {
            None | Some(Value::Null) => {
                return Err(DocumentError::MissingField { field: "id", expected: "a non-empty string" })
            }
            Some(Value::String(s)) => DocId::parse(&s, limits.max_id_bytes)?,
            Some(other) => return Err(invalid("id", "a non-empty string", &other)),
        };
        let title = take_string(&mut obj, "title")?;
        let body = take_string(&mut obj, "body")?;
        let url = take_string(&mut obj, "url")?;
        let lang =
            take_string(&mut obj, "lang")?.filter(|s| !s.trim().is_empty()).map(|s| Lang::parse(&s)).transpose()?;
        let brand = take_string(&mut obj, "brand")?.filter(|s| !s.trim().is_empty());
        let category = take_string(&mut obj, "category")?
            .filter(|s| !s.trim().is_empty())
            .map(|s| Category::parse(&s))
            .transpose()?;
        let price = take_price(&mut obj)?;
        let tags = take_tags(&mut obj)?;
        let source = take_string(&mut obj, "source")?.filter(|s| !s.trim().is_empty());
        let published_at = match take_string(&mut obj, "published_at")? {
            None => None,
            Some(s) if s.trim().is_empty() => None,
            Some(s) => Some(Timestamp::parse(&s).ok_or_else(|| DocumentError::Invalid {
                field: "published_at".into(),
                expected: "an RFC 3339 date-time such as \"2024-05-01T08:30:00Z\", or a date YYYY-MM-DD (midnight UTC)",
                found: render_str(&s),
            })?),
        };
        let doc =
            Document { id, title, body, url, lang, brand, category, price, tags, source, published_at, extra: obj };
        let size = doc.json_size();
        if size > limits.max_document_bytes {
            return Err(DocumentError::TooLarge { found: size, limit: limits.max_document_bytes });
        }
        Ok(doc)
    }

    /// A document with only an id and a title and body; the rest empty.
    pub fn new(id: DocId, title: impl Into<String>, body: impl Into<String>) -> Document {
        Document {
            id,
            title: Some(title.into()),
            body: Some(body.into()),
            url: None,
            lang: None,
            brand: None,
            category: None,
            price: None,
            tags: Vec::new(),
            source: None,
            published_at: None,
            extra: Map::new(),
        }
    }

    /// The document as a JSON object: known fields first (absent ones omitted), then `extra` untouched.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("id".into(), Value::String(self.id.0.clone()));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                obj.insert(k.into(), v);
            }
        };
        put("title", self.title.clone().map(Value::String));
        put("body", self.body.clone().map(Value::String));
        put("url", self.url.clone().map(Value::String));
        put("lang", self.lang.as_ref().map(|l| Value::String(l.0.clone())));
        put("brand", self.brand.clone().map(Value::String));
        put("category", self.category.as_ref().map(|c| Value::String(c.path())));
        put("price", self.price.and_then(serde_json::Number::from_f64).map(Value::Number));
        if !self.tags.is_empty() {
            put("tags", Some(Value::Array(self.tags.iter().cloned().map(Value::String).collect())));
        }
        put("source", self.source.clone().map(Value::String));
        put("published_at", self.published_at.map(|t| Value::String(t.to_rfc3339())));
        for (k, v) in self.extra.iter().filter(|(k, _)| !KNOWN_FIELDS.contains(&k.as_str())) {
            obj.insert(k.clone(), v.clone());
        }
        Value::Object(obj)
    }

    /// The document as a JSON string, serialized from borrowed fields (no intermediate [`Value`]).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).expect("a document always serializes")
    }

    /// The length of [`Document::to_json_string`], counted without building the string.
    pub fn json_size(&self) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        serde_json::to_writer(&mut count, self).expect("counting never fails");
        count.0
    }

    /// Title and body joined with a newline, skipping absent parts: the text a dense model sees.
    pub fn text(&self) -> String {
        match (&self.title, &self.body) {
            (Some(t), Some(b)) if !t.is_empty() && !b.is_empty() => format!("{t}\n{b}"),
            (Some(t), _) if !t.is_empty() => t.clone(),
            (_, Some(b)) => b.clone(),
            _ => String::new(),
        }
    }
}

impl Serialize for Document {
    /// The same object as [`Document::to_json`] (known fields first, absent ones omitted, then `extra`),
    /// written straight from the fields.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", self.id.as_str())?;
        if let Some(v) = &self.title {
            map.serialize_entry("title", v)?;
        }
        if let Some(v) = &self.body {
            map.serialize_entry("body", v)?;
        }
        if let Some(v) = &self.url {
            map.serialize_entry("url", v)?;
        }
        if let Some(v) = &self.lang {
            map.serialize_entry("lang", v.as_str())?;
        }
        if let Some(v) = &self.brand {
            map.serialize_entry("brand", v)?;
        }
        if let Some(v) = &self.category {
            map.serialize_entry("category", &v.path())?;
        }
        if let Some(v) = self.price.and_then(serde_json::Number::from_f64) {
            map.serialize_entry("price", &v)?;
        }
        if !self.tags.is_empty() {
            map.serialize_entry("tags", &self.tags)?;
        }
        if let Some(v) = &self.source {
            map.serialize_entry("source", v)?;
        }
        if let Some(v) = &self.published_at {
            map.serialize_entry("published_at", &v.to_rfc3339())?;
        }
        for (k, v) in &self.extra {
            if !KNOWN_FIELDS.contains(&k.as_str()) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Document::from_json(value, &Limits::default()).map_err(serde::de::Error::custom)
    }
}

fn take_string(obj: &mut Map<String, Value>, field: &'static str) -> Result<Option<String>, DocumentError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(field, "a string", &other)),
    }
}

fn take_price(obj: &mut Map<String, Value>) -> Result<Option<f64>, DocumentError> {
    const EXPECTED: &str = "a finite number >= 0";
    let value = match obj.remove("price") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let parsed = match &value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(p) if p.is_finite() && p >= 0.0 => Ok(Some(p)),
        _ => Err(invalid("price", EXPECTED, &value)),
    }
}

fn take_tags(obj: &mut Map<String, Value>) -> Result<Vec<String>, DocumentError> {
    const EXPECTED: &str = "an array of strings or a \"|\"-separated string";
    match obj.remove("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => {
            Ok(s.split('|').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
        }
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                other => Err(invalid("tags", EXPECTED, &other)),
            })
            .collect(),
        Some(other) => Err(invalid("tags", EXPECTED, &other)),
    }
}

fn invalid(field: &str, expected: &'static str, found: &Value) -> DocumentError {
    DocumentError::Invalid { field: field.to_owned(), expected, found: render_value(found) }
}

/// A short, readable rendering of a found value for error messages: its JSON type and a clipped excerpt.
pub(crate) fn render_value(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(s) => return render_str(s),
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("{kind} {}", clip(&v.to_string(), 60))
}

pub(crate) fn render_str(s: &str) -> String {
    format!("string {:?}", clip(s, 60))
}

fn clip(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        let head: String = s.chars().take(max_chars).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Document, DocumentError> {
        Document::from_json(v, &Limits::default())
    }

    #[test]
    fn full_document_round_trips_with_extra_fields_untouched() {
        let v = json!({
            "id": "abt-552", "title": "Sony Turntable - PSLX350H", "body": "Belt drive",
            "url": "https://shop.example/552", "lang": "en", "brand": "Sony",
            "category": "electronics/audio", "price": 149.5, "tags": ["turntable", "audio"],
            "source": "abt.com", "published_at": "2024-05-01T08:30:00+08:00",
            "rating": {"stars": 4.5, "count": 12}, "sku": "PS-LX350H"
        });
        let doc = parse(v.clone()).unwrap();
        assert_eq!(doc.id.as_str(), "abt-552");
        assert_eq!(doc.category.as_ref().unwrap().segments(), ["electronics", "audio"]);
        assert_eq!(doc.published_at.unwrap().unix_seconds(), 1714523400);
        assert_eq!(doc.extra["rating"], json!({"stars": 4.5, "count": 12}));
        assert_eq!(doc.to_json(), v);
    }

    #[test]
    fn nulls_and_empty_strings_mean_absent() {
        let doc = parse(json!({"id": "x", "brand": null, "price": null, "category": "", "published_at": ""})).unwrap();
        assert_eq!(doc.brand, None);
        assert_eq!(doc.price, None);
        assert_eq!(doc.category, None);
        assert_eq!(doc.published_at, None);
    }

    #[test]
    fn errors_name_field_expected_and_found() {
        let cases = [
            (json!({"title": "no id"}), "missing required field `id` (expected a non-empty string)"),
            (json!({"id": 7}), "field `id`: expected a non-empty string, found number 7"),
            (json!({"id": "  "}), "field `id`: expected a non-empty string, found string \"  \""),
            (json!({"id": "a", "price": -1}), "field `price`: expected a finite number >= 0, found number -1"),
            (json!({"id": "a", "price": "NaN"}), "field `price`: expected a finite number >= 0, found string \"NaN\""),
            (json!({"id": "a", "price": "abc"}), "field `price`: expected a finite number >= 0, found string \"abc\""),
            (
                json!({"id": "a", "published_at": "yesterday"}),
                "field `published_at`: expected an RFC 3339 date-time such as \"2024-05-01T08:30:00Z\", or a date YYYY-MM-DD (midnight UTC), found string \"yesterday\"",
            ),
            (json!({"id": "a", "title": ["x"]}), "field `title`: expected a string, found array [\"x\"]"),
            (json!({"id": "a", "tags": [1]}), "field `tags`: expected an array of strings or a \"|\"-separated string, found number 1"),
            (json!({"id": "a", "category": "a//b"}), "field `category`: expected a path of non-empty segments such as \"electronics/audio\", found string \"a//b\""),
            (json!({"id": "a", "lang": "english!"}), "field `lang`: expected a language tag such as \"en\", \"zh\" or \"zh-Hant\", found string \"english!\""),
            (json!([1, 2]), "expected a JSON object for a document, found array [1,2]"),
        ];
        for (input, message) in cases {
            let err = parse(input.clone()).expect_err(&input.to_string());
            assert_eq!(err.to_string(), message, "input {input}");
        }
    }

    #[test]
    fn price_accepts_numeric_strings_from_csv() {
        assert_eq!(parse(json!({"id": "a", "price": " 19.99 "})).unwrap().price, Some(19.99));
        assert_eq!(parse(json!({"id": "a", "price": 0})).unwrap().price, Some(0.0));
    }

    #[test]
    fn tags_accept_pipe_separated_strings() {
        let doc = parse(json!({"id": "a", "tags": "red| blue ||green"})).unwrap();
        assert_eq!(doc.tags, ["red", "blue", "green"]);
    }

    #[test]
    fn oversize_document_is_rejected_with_its_size() {
        let limits = Limits { max_document_bytes: 100, ..Limits::default() };
        let err = Document::from_json(json!({"id": "a", "body": "x".repeat(200)}), &limits).unwrap_err();
        assert!(matches!(err, DocumentError::TooLarge { limit: 100, found } if found > 200), "{err}");
    }

    #[test]
    fn direct_serialization_equals_the_json_value() {
        let v = json!({"id": "a", "title": "t", "lang": "zh-Hant", "category": "a/b", "price": 2.5, "tags": ["x"],
                       "published_at": "2024-05-01T08:30:00+08:00", "z": 1, "nested": {"k": [1, null]}});
        let doc = parse(v.clone()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&doc.to_json_string()).unwrap(), doc.to_json());
        assert_eq!(doc.to_json_string(), doc.to_json().to_string(), "same key order too");
    }

    #[test]
    fn json_size_is_the_serialized_length() {
        let doc = parse(json!({"id": "a", "title": "t\u{e9}\"q\"", "price": 1.5, "x": [1, {"y": null}]})).unwrap();
        assert_eq!(doc.json_size(), doc.to_json_string().len());
    }

    #[test]
    fn id_limits() {
        assert!(DocId::parse(&"x".repeat(513), 512).is_err());
        assert!(DocId::parse("tab\tinside", 512).is_err());
        assert_eq!(DocId::parse("buy-1", 512).unwrap().as_str(), "buy-1");
        assert_eq!(DocId::parse("新闻-1", 512).unwrap().as_str(), "新闻-1");
    }

    /// Two ids that would display identically are refused, with the reason and the character escaped.
    #[test]
    fn ids_with_invisible_or_reordering_characters_are_refused() {
        for (raw, shown) in [
            ("abc\u{200B}1", "\\u{200b}"),
            ("abc\u{200D}1", "\\u{200d}"),
            ("\u{FEFF}abc", "\\u{feff}"),
            ("abc\u{202E}1", "\\u{202e}"),
            ("abc\u{2067}1", "\\u{2067}"),
            ("abc\u{200F}1", "\\u{200f}"),
        ] {
            let err = DocId::parse(raw, 512).unwrap_err().to_string();
            assert!(err.contains("without zero-width or bidirectional-control characters"), "{raw:?}: {err}");
            assert!(err.contains(shown), "{raw:?}: {err}");
        }
    }

    #[test]
    fn published_at_takes_a_date_as_midnight_utc_like_filters() {
        let doc = parse(json!({"id": "a", "published_at": "2024-05-01"})).unwrap();
        assert_eq!(doc.published_at.unwrap().to_rfc3339(), "2024-05-01T00:00:00Z");
        assert_eq!(Timestamp::parse("2024-05-01"), Timestamp::parse_rfc3339("2024-05-01T00:00:00Z"));
        for bad in ["2024-5-1", "2024-05-01T08:00", "20240501", "2024-13-01"] {
            assert!(parse(json!({"id": "a", "published_at": bad})).is_err(), "{bad}");
        }
    }

    #[test]
    fn lang_tags_are_normalised() {
        assert_eq!(Lang::parse("zh_Hant").unwrap().as_str(), "zh-hant");
        assert_eq!(Lang::parse("zh-Hant-TW").unwrap().primary(), "zh");
        assert!(Lang::parse("e").is_err());
    }
}

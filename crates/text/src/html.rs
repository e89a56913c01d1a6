//! Markup out of text fields on ingest: news bodies are often scraped HTML. A title or body that contains
//! markup is parsed by a real HTML parser (html5ever, through `scraper`), and becomes its text: scripts,
//! styles and other non-content elements dropped, entities decoded, block elements (paragraphs, headings, list
//! items, table rows, `<br>`) ending lines, runs of spaces collapsed. The cleaned text is what is analysed,
//! embedded, stored and shown; the raw field is kept (as `title_html` / `body_html`) only when asked.

use scraper::node::Node;
use scraper::Html;
use serde::{Deserialize, Serialize};
use sieve_core::Document;

/// How an index (or one ingest) treats markup in titles and bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtmlSettings {
    /// Turn fields that contain markup into text (on by default).
    pub clean: bool,
    /// Keep the raw field beside the text, as `title_html` / `body_html`.
    pub keep_raw: bool,
}

impl Default for HtmlSettings {
    fn default() -> Self {
        HtmlSettings { clean: true, keep_raw: false }
    }
}

/// Elements whose content is not text a reader sees (a page's `<title>` included: the document has its own).
const SKIPPED: [&str; 10] =
    ["script", "style", "noscript", "template", "head", "title", "iframe", "svg", "object", "select"];

/// Elements that stand on lines of their own.
const BLOCKS: [&str; 31] = [
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "aside",
    "nav",
    "main",
    "blockquote",
    "pre",
    "hr",
    "figure",
    "figcaption",
    "form",
    "address",
];

/// Whether `text` holds markup: a tag (`<p>`, `</div>`, `<br/>`, `<!-- -->`) or a character reference
/// (`&amp;`, `&#39;`, `&#x4e2d;`). Plain text with `<` in it (`price < 200`, `a<b`) is not.
pub fn looks_like_html(text: &str) -> bool {
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'<' => {
                let rest = &b[i + 1..];
                let name = rest.strip_prefix(b"/").unwrap_or(rest);
                if rest.starts_with(b"!--") {
                    return true;
                }
                let len = name.iter().take_while(|c| c.is_ascii_alphanumeric()).count();
                if len > 0
                    && name[0].is_ascii_alphabetic()
                    && matches!(name.get(len), Some(b'>' | b' ' | b'/' | b'\t' | b'\n' | b'\r'))
                    && rest.contains(&b'>')
                {
                    return true;
                }
            }
            b'&' => {
                let rest = &b[i + 1..];
                let numeric = rest.starts_with(b"#");
                let body = rest.strip_prefix(b"#").unwrap_or(rest);
                let len = body.iter().take_while(|c| c.is_ascii_alphanumeric()).count();
                // a named reference has 2+ letters (`&lt;`, `&nbsp;`): `R&D;` is text
                let min = if numeric { 1 } else { 2 };
                if len >= min && len <= 10 && body.get(len) == Some(&b';') {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// The text of an HTML fragment (see the module doc).
pub fn html_to_text(html: &str) -> String {
    let doc = Html::parse_fragment(html);
    let mut out = String::new();
    walk(doc.tree.root(), &mut out);
    // collapse spaces within lines, drop empty lines
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn walk(node: ego_tree::NodeRef<'_, Node>, out: &mut String) {
    match node.value() {
        Node::Text(t) => out.push_str(&t.text),
        Node::Element(e) => {
            let name = e.name();
            if SKIPPED.contains(&name) {
                return;
            }
            let block = BLOCKS.contains(&name);
            if block {
                out.push('\n');
            }
            for child in node.children() {
                walk(child, out);
            }
            if block {
                out.push('\n');
            } else if matches!(name, "td" | "th") {
                out.push(' ');
            }
        }
        Node::Comment(_) | Node::ProcessingInstruction(_) | Node::Doctype(_) => {}
        _ => {
            for child in node.children() {
                walk(child, out);
            }
        }
    }
}

/// Cleans `doc`'s title and body per `settings`; returns whether anything changed.
pub fn clean_document(doc: &mut Document, settings: HtmlSettings) -> bool {
    if !settings.clean {
        return false;
    }
    let mut changed = false;
    for (field, raw_name) in [(&mut doc.title, "title_html"), (&mut doc.body, "body_html")] {
        let Some(raw) = field.as_ref().filter(|t| looks_like_html(t)) else { continue };
        let text = html_to_text(raw);
        if settings.keep_raw {
            doc.extra.insert(raw_name.to_owned(), serde_json::Value::String(raw.clone()));
        }
        *field = Some(text);
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_told_from_text_with_angle_brackets() {
        for html in ["<p>hi</p>", "a<br/>b", "x </div>", "<!-- c -->", "Tom &amp; Jerry", "&#39;q&#39;", "&#x4e2d;"] {
            assert!(looks_like_html(html), "{html}");
        }
        for text in ["price < 200", "a<5 and c>d", "5 > 3", "AT&T", "R&D; costs", "<3 this", "中文"] {
            assert!(!looks_like_html(text), "{text}");
        }
    }

    #[test]
    fn scripts_go_entities_decode_blocks_end_lines() {
        let html = r#"<html><head><title>t</title><style>p{color:red}</style></head><body>
            <h1>Markets  rally</h1><script>alert("x")</script>
            <p>Stocks rose&nbsp;3% &amp; bonds fell.<br>Oil: &lt;$80&gt;</p>
            <ul><li>one</li><li>two</li></ul><table><tr><td>a</td><td>b</td></tr></table>
            <p>中国&#x4e2d;文</p></body></html>"#;
        assert_eq!(
            html_to_text(html),
            "Markets rally\nStocks rose 3% & bonds fell.\nOil: <$80>\none\ntwo\na b\n中国中文"
        );
    }

    #[test]
    fn a_document_keeps_its_raw_field_only_when_asked() {
        let mut d = Document::new(sieve_core::DocId::parse("n1", 64).unwrap(), "A &amp; B", "<p>x</p><p>y</p>");
        let keep = HtmlSettings { clean: true, keep_raw: true };
        assert!(clean_document(&mut d, keep));
        assert_eq!((d.title.as_deref(), d.body.as_deref()), (Some("A & B"), Some("x\ny")));
        assert_eq!(d.extra["body_html"], "<p>x</p><p>y</p>");
        let mut plain = Document::new(sieve_core::DocId::parse("n2", 64).unwrap(), "price < 200", "text");
        assert!(!clean_document(&mut plain, HtmlSettings::default()));
        let mut off = Document::new(sieve_core::DocId::parse("n3", 64).unwrap(), "<b>x</b>", "");
        assert!(!clean_document(&mut off, HtmlSettings { clean: false, keep_raw: false }));
        assert_eq!(off.title.as_deref(), Some("<b>x</b>"));
    }
}

//! The page shell every page shares: the document head, a skip link, the site header with its navigation,
//! the main landmark and a footer.

use leptos::prelude::*;
use leptos::tachys::view::RenderHtml;

/// Which page is current (marked in the navigation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Search,
    Feed,
    Compare,
    Playground,
    Ingest,
    Dashboard,
}

/// The whole document around `main`, as HTML text.
pub fn document(title: &str, tab: Tab, main: impl IntoView + 'static) -> String {
    let css = crate::css_path();
    let nav = |t: Tab, href: &'static str, label: &'static str| {
        let current = (t == tab).then_some("page");
        view! { <li><a href=href aria-current=current>{label}</a></li> }
    };
    let page = view! {
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <title>{format!("{title} · Sieve")}</title>
                <link rel="icon" href="data:,"/>
                <link rel="stylesheet" href=css/>
                <script src=crate::js_path() defer=true></script>
            </head>
            <body>
                <a class="skip" href="#main">"Skip to content"</a>
                <header class="site">
                    <a class="brand" href="/">"Sieve"</a>
                    <nav aria-label="Pages">
                        <ul>
                            {nav(Tab::Search, "/", "Search")}
                            {nav(Tab::Feed, "/feed", "Feed")}
                            {nav(Tab::Compare, "/compare", "Compare")}
                            {nav(Tab::Playground, "/playground", "Rerank")}
                            {nav(Tab::Ingest, "/ingest", "Ingest")}
                            {nav(Tab::Dashboard, "/dashboard", "Dashboard")}
                        </ul>
                    </nav>
                </header>
                <main id="main">{main}</main>
                <footer class="site">
                    <p>"Sieve: BM25 and dense recall, fusion, cross-encoder reranking. "
                        <a href="/openapi.json">"API"</a></p>
                </footer>
            </body>
        </html>
    };
    const DOCTYPE: &str = "<!DOCTYPE html>";
    // Leptos's length estimate leaves out what `inner_html` adds (the marked snippets): room for it up front
    // saves the buffer's regrowth and copies
    let mut html = String::with_capacity(DOCTYPE.len() + page.html_len() * 5 / 4 + 2048);
    html.push_str(DOCTYPE);
    page.to_html_with_buf(&mut html, &mut leptos::tachys::view::Position::FirstChild, true, false, vec![]);
    html
}

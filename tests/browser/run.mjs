// The web UI in a real browser: Debian's Chromium driven by playwright-core against a running `sieve serve`.
//
//   node tests/browser/run.mjs BASE_URL OUT_DIR
//
// BASE_URL serves `products` (catalog cards, MiniLM vectors, a random-weight reranker, a labelled query set
// for the compare view) and `news` (Chinese articles with planted re-posts). Every flow of the web UI issue's
// acceptance list runs here; axe-core checks every page in both colour schemes; screenshots of every page at
// desktop and phone widths go to OUT_DIR. Exits 1 with the failures listed; `tests/integration/browser.rs`
// starts the server and runs this.
import { createRequire } from "node:module";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error("usage: node run.mjs BASE_URL OUT_DIR");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

// the flags this machine's Chromium needs (see the env notes): no sandbox as root, no GPU, and no background
// networking, which this closed network refuses
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];
// playwright-core starts the browser on a new, empty profile of its own
const browser = await chromium.launch({
  executablePath: process.env.SIEVE_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ARGS,
});

const failures = [];
const passed = [];
async function flow(name, fn) {
  const started = Date.now();
  try {
    await fn();
    passed.push(name);
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures.push(`${name}: ${e && e.stack ? e.stack : e}`);
    console.log(`FAIL ${name}: ${e && e.message ? e.message : e}`);
  }
}
function expect(cond, what) {
  if (!cond) throw new Error(what);
}

const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const context = await browser.newContext({ viewport: DESKTOP, locale: "en-US" });
context.setDefaultTimeout(30_000);
const page = await context.newPage();
// a document's markup must never run: any dialog is a failure
let dialogs = 0;
page.on("dialog", (d) => { dialogs += 1; d.dismiss(); });
const consoleErrors = [];
page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });

const url = (path) => base.replace(/\/$/, "") + path;

await flow("search with a filter, then a facet, then page 2", async () => {
  await page.goto(url("/?index=products"));
  await page.fill("#q", "sony");
  await page.fill("input[name=price_max]", "2000");
  await Promise.all([page.waitForURL(/price_max=2000/), page.press("#q", "Enter")]);
  const count = await page.textContent(".summary strong");
  expect(/\d+ results?/.test(count), `a result count, found ${count}`);
  const facet = page.locator(".facet-group", { has: page.locator("h2", { hasText: "Brand" }) }).locator("a").first();
  const label = (await facet.innerText()).trim();
  await Promise.all([page.waitForURL(/brand=/), facet.click()]);
  expect(await page.locator(".facets a[aria-current=true]").count() >= 1, `the facet ${label} shows as chosen`);
  expect(page.url().includes("price_max=2000"), "the price filter stays when a facet is clicked");
  const next = page.locator("a[rel=next]");
  expect(await next.count() === 1, "a next page exists");
  await Promise.all([page.waitForURL(/page=2/), next.click()]);
  const pages = await page.textContent(".pages span");
  expect(/^Page 2 of \d+/.test(pages), `page 2, found ${pages}`);
  expect(await page.locator(".hits ol").getAttribute("start") === "11", "page 2 numbers from 11");
});

await flow("browse with an empty query sorted by price", async () => {
  await page.goto(url("/?index=products&sort=price:asc"));
  const metas = await page.locator(".hits .card .meta").allInnerTexts();
  const prices = metas.map((m) => parseFloat((m.match(/\$([\d.]+)/) || [])[1]));
  expect(prices.length === 10 && prices.every((p) => !Number.isNaN(p)), `10 priced cards, found ${metas.join(" | ")}`);
  expect(prices.every((p, i) => i === 0 || prices[i - 1] <= p), `cheapest first: ${prices}`);
  await page.screenshot({ path: join(outDir, "browse-desktop.png") });
});

await flow("why here? opens with every stage's score", async () => {
  await page.goto(url("/?index=products&q=sony+turntable"));
  const why = page.locator("details.why").first();
  await why.locator("summary").click();
  expect(await why.getAttribute("open") !== null, "the details open");
  const rows = await why.locator("tbody th").allInnerTexts();
  expect(rows.includes("BM25") && rows.includes("Fused"), `BM25 and fused rows, found ${rows}`);
  expect(rows.includes("Rerank"), `a rerank row (a reranker is loaded), found ${rows}`);
  expect(/BM25 alone: #\d+/.test(await why.locator("caption").innerText()), "the single-leg ranks");
  await page.screenshot({ path: join(outDir, "search-desktop.png") });
});

await flow("the compare view with rank movement and the judgments overlay", async () => {
  await page.goto(url("/compare?index=products"));
  const options = await page.locator("select[name=qid] option").count();
  expect(options > 1, "the labelled set's queries are listed");
  await page.selectOption("select[name=qid]", { index: 1 });
  await Promise.all([page.waitForURL(/qid=/), page.click("form button[type=submit]")]);
  const columns = await page.locator(".compare .column").count();
  expect(columns === 3, `three columns, found ${columns}`);
  const ndcg = await page.locator(".ndcg").allInnerTexts();
  expect(ndcg.length === 3 && ndcg.every((t) => /nDCG@10 [01]\.\d{3}/.test(t)), `nDCG@10 per column: ${ndcg}`);
  expect(await page.locator(".grade").count() > 0, "judged documents show their grade");
  const moves = await page.locator(".move").allInnerTexts();
  expect(moves.length > 0 && moves.every((m) => /^(▲\d+|▼\d+|=|new)$/.test(m)), `rank moves: ${moves}`);
  expect(/overlap@10 [01]\.\d\d · RBO [01]\.\d{3}/.test(await page.locator(".column").nth(1).innerText()), "overlap and RBO");
  await page.screenshot({ path: join(outDir, "compare-desktop.png") });
});

await flow("a playground round-trip", async () => {
  await page.goto(url("/playground"));
  await page.fill("#query", "vinyl turntable");
  await page.fill("#documents", "a kettle\na belt-drive vinyl turntable\n{\"text\": \"黑胶唱机\"}");
  await page.click("form.playground button[type=submit]");
  await page.waitForSelector("table.scores");
  const rows = await page.locator("table.scores tbody tr").count();
  expect(rows === 3, `three scored documents, found ${rows}`);
  const probs = (await page.locator("table.scores tbody tr td:nth-child(3)").allInnerTexts()).map((t) => parseFloat(t));
  expect(probs.every((p, i) => p >= 0 && p <= 1 && (i === 0 || probs[i - 1] >= p)), `sorted probabilities: ${probs}`);
  expect((await page.textContent("details.request pre")).includes("/v1/rerank"), "the request as curl");
  expect(await page.locator("button.copy").count() === 1, "a copy button (JS on)");
  await page.screenshot({ path: join(outDir, "playground-desktop.png") });
});

const ROWS = [
  JSON.stringify({ id: "up-1", title: "Browser-uploaded espresso machine", price: 199, brand: "Gaggia" }),
  "{\"id\": \"up-2\", \"title\": \"broken row\"",
  JSON.stringify({ id: "up-3", title: "Browser-uploaded milk frother", price: 39 }),
].join("\n") + "\n";

async function upload(p, name) {
  await p.goto(url("/ingest"));
  await p.selectOption("select[name=index]", "products");
  await p.setInputFiles("#file", { name, mimeType: "application/x-ndjson", buffer: Buffer.from(ROWS) });
  await Promise.all([p.waitForURL(/\/tasks\/\d+/), p.click("form.ingest button[type=submit]")]);
  await p.waitForSelector("#task[data-done=true]", { timeout: 60_000 });
  const status = await p.textContent("#task .status");
  expect(status.includes("succeeded"), `the task succeeds, found ${status}`);
  const rejected = await p.locator("table.errors tbody tr").allInnerTexts();
  expect(rejected.length === 1 && rejected[0].startsWith("2"), `line 2 rejected, found ${rejected}`);
  const counts = await p.locator(".counts").innerText();
  expect(/Indexed\s+2/.test(counts) && /Rejected\s+1/.test(counts), `2 indexed, 1 rejected: ${counts}`);
}

await flow("an upload with a bad row completes and lists the row", async () => {
  await upload(page, "rows.jsonl");
  await page.screenshot({ path: join(outDir, "task-desktop.png") });
  await page.goto(url("/?index=products&q=espresso+machine&mode=bm25"));
  const found = await page.locator(".hits h3").allInnerTexts();
  expect(found.some((t) => t.includes("Browser-uploaded espresso machine")), `the uploaded row is searchable: ${found}`);
});

await flow("a degraded banner when the rerank times out", async () => {
  await page.goto(url("/?index=products&q=sony+headphones&mode=hybrid%2Brerank&rerank_timeout_ms=1"));
  const banner = page.locator(".banner.degraded");
  expect(await banner.count() === 1, "the degraded banner");
  expect(/rerank/i.test(await banner.innerText()), "the reason names the reranker");
  expect(await page.locator(".hits li").count() > 0, "the fused order is still shown");
});

await flow("a document titled <script>alert(1)</script> renders as text", async () => {
  await page.goto(url("/?index=products&q=alert+turntable&mode=bm25"));
  const titles = await page.locator(".hits h3").allTextContents();
  expect(titles.some((t) => t.includes("<script>alert(1)</script>")), `the title as text: ${titles}`);
  expect(await page.locator(".hits script").count() === 0, "no script element in the results");
  expect(dialogs === 0, "no alert ran");
});

await flow("a Chinese query with correct marks, and the feed", async () => {
  await page.goto(url("/?index=news&q=" + encodeURIComponent("手机 市场") + "&mode=bm25"));
  const marks = await page.locator(".hits mark").allTextContents();
  expect(marks.length > 0, "some marks");
  const wrong = marks.filter((m) => !["手机", "市场"].includes(m));
  expect(wrong.length === 0, `every mark is a query word, found ${wrong}`);
  await page.screenshot({ path: join(outDir, "news-desktop.png") });
  // a query the caller knows has re-posts (SIEVE_FEED_QUERY: a planted story's words)
  const story = process.env.SIEVE_FEED_QUERY || "手机";
  await page.goto(url("/feed?index=news&q=" + encodeURIComponent(story)));
  const text = await page.locator("main").innerText();
  expect(/similar from/.test(text), `a story with its re-posts for ${story}: ${text.slice(0, 400)}`);
  await page.screenshot({ path: join(outDir, "feed-desktop.png") });
});

await flow("the dashboard draws its charts", async () => {
  await page.goto(url("/dashboard"));
  expect(await page.locator("svg.chart").count() === 2, "two SVG charts");
  expect(await page.locator(".card.index").count() === 2, "a card per index");
  await page.screenshot({ path: join(outDir, "dashboard-desktop.png") });
});

// every page at phone width: nothing wider than the screen, the filters below the results
const PAGES = [
  ["search", "/?index=products&q=sony+headphones"],
  ["browse", "/?index=products&sort=price:asc"],
  ["news", "/?index=news&q=" + encodeURIComponent("手机")],
  ["feed", "/feed?index=news&q=" + encodeURIComponent("手机")],
  ["compare", "/compare?index=products&q=sony+turntable"],
  ["playground", "/playground"],
  ["ingest", "/ingest"],
  ["dashboard", "/dashboard"],
];
await flow("the phone layout", async () => {
  const phone = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const p = await phone.newPage();
  for (const [name, path] of PAGES) {
    await p.goto(url(path));
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    expect(width <= PHONE.width, `${name}: the page is ${width}px wide on a ${PHONE.width}px screen`);
    await p.screenshot({ path: join(outDir, `${name}-phone.png`) });
  }
  await p.goto(url("/?index=products&q=sony"));
  const [hits, facets] = await Promise.all([p.locator(".hits").boundingBox(), p.locator(".facets").boundingBox()]);
  expect(facets.y > hits.y, "the filters come after the results on a phone");
  await phone.close();
});
for (const [name, path] of PAGES) {
  if (["search", "browse", "compare", "playground", "dashboard", "feed", "news"].includes(name)) continue;
  await page.goto(url(path));
  await page.screenshot({ path: join(outDir, `${name}-desktop.png`) });
}

await flow("search and ingestion with JavaScript off", async () => {
  const off = await browser.newContext({ viewport: DESKTOP, javaScriptEnabled: false });
  off.setDefaultTimeout(30_000);
  const p = await off.newPage();
  await p.goto(url("/?index=products"));
  await p.fill("#q", "canon camera");
  await Promise.all([p.waitForURL(/q=canon/), p.click("form.search button[type=submit]")]);
  expect(await p.locator(".hits li").count() > 0, "results without JS");
  await p.locator("details.why summary").first().click();
  expect(await p.locator("details.why[open]").count() === 1, "why here? opens without JS");
  // the task page refreshes itself (<noscript> meta refresh) until the task is done
  await upload(p, "no-js.jsonl");
  expect(await p.locator("button.copy").count() === 0, "no script ran");
  await off.close();
});

await flow("accessibility: no serious or critical axe violation on any page, in both themes", async () => {
  // axe is injected into the page, which the pages' CSP would refuse: this context bypasses it
  const ax = await browser.newContext({ viewport: DESKTOP, bypassCSP: true });
  const p = await ax.newPage();
  const found = [];
  const taskPath = new URL(page.url()).pathname.startsWith("/tasks/") ? new URL(page.url()).pathname : null;
  const all = [...PAGES, ["why-open", "/?index=products&q=sony+turntable"]];
  if (taskPath) all.push(["task", taskPath]);
  for (const scheme of ["light", "dark"]) {
    await p.emulateMedia({ colorScheme: scheme });
    for (const [name, path] of all) {
      await p.goto(url(path));
      if (name === "why-open") await p.locator("details.why summary").first().click();
      await p.addScriptTag({ content: axeSource });
      const result = await p.evaluate(async () => {
        const r = await window.axe.run(document, { resultTypes: ["violations"] });
        return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
      });
      for (const v of result.filter((v) => v.impact === "serious" || v.impact === "critical")) {
        found.push(`${name} (${scheme}): ${v.impact} ${v.id}: ${v.help} at ${v.nodes.join(", ")}`);
      }
    }
  }
  await ax.close();
  expect(found.length === 0, `axe violations:\n  ${found.join("\n  ")}`);
});

await browser.close();
if (consoleErrors.length) console.log(`console errors (not failures): ${consoleErrors.slice(0, 5).join(" | ")}`);
console.log(`${passed.length} flows passed, ${failures.length} failed`);
if (failures.length) {
  console.error(failures.join("\n\n"));
  process.exit(1);
}

//! A news set for the feed's tests and measurements, built from LCSTS posts (`shared/data/lcsts-p3-zh-news`),
//! which have neither publication times nor outlets: **both are assigned here**, deterministically, and
//! near-duplicates are **planted**. Each planted story's post is re-published by other outlets, hours later,
//! four times, each lightly edited in one way:
//!
//! 1. punctuation changed (full-width `，。：` to ASCII, quotation marks dropped);
//! 2. its last sentence dropped;
//! 3. written in Traditional characters (a table of common characters);
//! 4. an outlet's suffix added (`（来源：腾讯新闻）`).
//!
//! Sources: [`SOURCES`], the original's by its position, each copy's another one. Times: originals spread
//! over the ten days before `origin` (by a fixed permutation of their position), copies 90 minutes apart after
//! their original.

use std::collections::HashMap;

use serde_json::{json, Value};

/// The outlets articles are assigned to.
pub const SOURCES: [&str; 8] = ["新浪", "腾讯", "网易", "搜狐", "凤凰", "人民网", "新华网", "澎湃"];

/// Simplified → Traditional for the planted Traditional copies: common characters only, so a copy mixes
/// both scripts, as reposts often do.
const TRADITIONAL: &[(char, char)] = &[
    ('国', '國'),
    ('发', '發'),
    ('说', '說'),
    ('经', '經'),
    ('济', '濟'),
    ('会', '會'),
    ('对', '對'),
    ('时', '時'),
    ('这', '這'),
    ('为', '為'),
    ('个', '個'),
    ('们', '們'),
    ('来', '來'),
    ('业', '業'),
    ('务', '務'),
    ('报', '報'),
    ('电', '電'),
    ('长', '長'),
    ('开', '開'),
    ('关', '關'),
    ('门', '門'),
    ('问', '問'),
    ('间', '間'),
    ('现', '現'),
    ('进', '進'),
    ('实', '實'),
    ('产', '產'),
    ('动', '動'),
    ('网', '網'),
    ('络', '絡'),
    ('机', '機'),
    ('数', '數'),
    ('据', '據'),
    ('场', '場'),
    ('价', '價'),
    ('费', '費'),
    ('银', '銀'),
    ('资', '資'),
    ('贷', '貸'),
    ('险', '險'),
    ('车', '車'),
    ('东', '東'),
    ('华', '華'),
    ('区', '區'),
    ('应', '應'),
    ('该', '該'),
    ('认', '認'),
    ('让', '讓'),
    ('还', '還'),
    ('过', '過'),
    ('万', '萬'),
    ('亿', '億'),
    ('与', '與'),
    ('从', '從'),
    ('将', '將'),
    ('无', '無'),
    ('学', '學'),
    ('题', '題'),
    ('总', '總'),
    ('统', '統'),
    ('计', '計'),
    ('记', '記'),
    ('设', '設'),
    ('术', '術'),
    ('达', '達'),
    ('选', '選'),
    ('证', '證'),
    ('监', '監'),
    ('标', '標'),
    ('专', '專'),
    ('类', '類'),
    ('样', '樣'),
    ('热', '熱'),
    ('点', '點'),
    ('线', '線'),
    ('级', '級'),
    ('给', '給'),
    ('结', '結'),
    ('约', '約'),
    ('组', '組'),
    ('买', '買'),
    ('卖', '賣'),
    ('钱', '錢'),
    ('户', '戶'),
    ('员', '員'),
    ('处', '處'),
    ('书', '書'),
];

/// The planted set.
#[derive(Debug, Clone)]
pub struct PlantedNews {
    /// Every article as a JSON document (`id`, `title`, `body`, `source`, `published_at`, `lang`).
    pub docs: Vec<Value>,
    /// Each article's story: its original's id (an unplanted article is its own story).
    pub story: HashMap<String, String>,
    /// The ids of the originals that have copies.
    pub planted: Vec<String>,
    /// Unix seconds: every article is published before it.
    pub origin: i64,
}

impl PlantedNews {
    /// The pairs of articles of one planted story (the near-duplicate pairs a clusterer should find).
    pub fn planted_pairs(&self) -> Vec<(String, String)> {
        let mut by_story: HashMap<&str, Vec<&str>> = HashMap::new();
        for (doc, story) in &self.story {
            by_story.entry(story.as_str()).or_default().push(doc.as_str());
        }
        let mut out = Vec::new();
        for members in by_story.values_mut().filter(|m| m.len() > 1) {
            members.sort_unstable();
            for i in 0..members.len() {
                for j in i + 1..members.len() {
                    out.push((members[i].to_owned(), members[j].to_owned()));
                }
            }
        }
        out.sort();
        out
    }
}

/// The four edited copies of `body` (see the module doc).
pub fn edited_copies(body: &str) -> [String; 4] {
    let punctuation: String = body
        .chars()
        .filter(|c| !matches!(c, '“' | '”' | '‘' | '’'))
        .map(|c| match c {
            '，' => ',',
            '。' => '.',
            '：' => ':',
            '；' => ';',
            '！' => '!',
            '？' => '?',
            c => c,
        })
        .collect();
    let sentences: Vec<&str> = body.split_inclusive(['。', '！', '？']).filter(|s| !s.trim().is_empty()).collect();
    let dropped = if sentences.len() >= 3 {
        sentences[..sentences.len() - 1].concat()
    } else {
        // too few sentences: the last clause goes instead
        let clauses: Vec<&str> = body.split_inclusive('，').collect();
        clauses[..clauses.len().saturating_sub(1).max(1)].concat()
    };
    let table: HashMap<char, char> = TRADITIONAL.iter().copied().collect();
    let traditional: String = body.chars().map(|c| table.get(&c).copied().unwrap_or(c)).collect();
    let suffixed = format!("{body}（来源：腾讯新闻）");
    [punctuation, dropped, traditional, suffixed]
}

/// Builds the set from `corpus.jsonl`'s text: `stories` planted stories, chosen among posts of at least 80
/// characters (every ninth such post), published before `origin`.
pub fn plant(corpus_jsonl: &str, stories: usize, origin: i64) -> PlantedNews {
    let rows: Vec<Value> = corpus_jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("corpus row"))
        .collect();
    let hour = 3600;
    let mut docs = Vec::new();
    let mut story = HashMap::new();
    let mut planted = Vec::new();
    let mut long = 0usize;
    for (i, row) in rows.iter().enumerate() {
        let id = row["id"].as_str().expect("id").to_owned();
        let body = row["body"].as_str().unwrap_or("").to_owned();
        // a fixed permutation of positions over 240 hours
        let age = ((i * 7919) % 240 + 8) as i64 * hour;
        let published = origin - age;
        let source = SOURCES[i % SOURCES.len()];
        let at = |t: i64| sieve_time(t);
        docs.push(json!({"id": id, "title": row["title"], "body": body, "source": source, "published_at": at(published), "lang": "zh"}));
        story.insert(id.clone(), id.clone());
        if body.chars().count() >= 80 {
            long += 1;
            if long % 9 == 1 && planted.len() < stories {
                planted.push(id.clone());
                for (k, copy) in edited_copies(&body).into_iter().enumerate() {
                    let copy_id = format!("{id}-copy{k}");
                    let source = SOURCES[(i + k + 1) % SOURCES.len()];
                    let t = published + (k as i64 + 1) * 90 * 60;
                    docs.push(json!({"id": copy_id, "title": row["title"], "body": copy, "source": source, "published_at": at(t), "lang": "zh"}));
                    story.insert(copy_id, id.clone());
                }
            }
        }
    }
    PlantedNews { docs, story, planted, origin }
}

/// RFC 3339 (UTC) for unix seconds, without a date library: the civil-from-days algorithm (H. Hinnant).
fn sieve_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339() {
        assert_eq!(sieve_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(sieve_time(1_764_892_800), "2025-12-05T00:00:00Z");
        assert_eq!(sieve_time(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }

    #[test]
    fn each_copy_is_edited_one_way() {
        let body = "国家统计局今天发布数据，十月份居民消费价格同比上涨。分析人士认为物价平稳。预计全年目标可以实现。";
        let [p, d, t, s] = edited_copies(body);
        assert!(p.contains(',') && !p.contains('，'));
        assert_eq!(d, "国家统计局今天发布数据，十月份居民消费价格同比上涨。分析人士认为物价平稳。");
        assert!(t.starts_with("國家統計局"));
        assert!(s.ends_with("（来源：腾讯新闻）"));
    }

    #[test]
    fn a_planted_set_has_five_articles_per_story() {
        let corpus = (0..40)
            .map(|i| {
                json!({"id": format!("d{i}"), "title": "", "body": "某地今天发生一件事。".repeat(10 + i % 3)})
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n");
        let set = plant(&corpus, 3, 1_764_892_800);
        assert_eq!(set.planted.len(), 3);
        assert_eq!(set.docs.len(), 40 + 3 * 4);
        assert_eq!(set.planted_pairs().len(), 3 * 10);
        assert!(set.docs.iter().all(|d| d["published_at"].as_str().unwrap() < "2025-12-05"));
    }
}

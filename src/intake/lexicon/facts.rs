//! Facts said with or without a part (lengths, the primer, the paint over a dent, the situation,
//! since when, the fluid of a leak) and `apply_loose`, which fills a finding's slots from them.
//! The words are the lexicon's (facts.toml, situations.toml); the number and unit parsing is code.

use std::sync::OnceLock;

use super::data::Lexicon;
use super::rules::{find, mask, shows_primer};
use super::LooseFacts;
use crate::domain::numerals::{digit as cn_digit, value as cn_number};
use crate::intake::{DamageType, Finding};

/// Fills the slots of `f` that its damage type uses, from facts said in the same message.
pub fn apply_loose(f: &mut Finding, l: &LooseFacts) {
    use DamageType::*;
    match f.damage_type {
        Scratch | Crack | PaintDamage | Dent => {
            if f.length_cm.is_none() {
                f.length_cm = l.length_cm;
            }
            if matches!(f.damage_type, Scratch | PaintDamage) && f.primer_visible.is_none() && shows_primer(f) {
                f.primer_visible = l.primer_visible;
            }
            // "凹了一块，漆没破": intact paint over a dent shows no primer (LABELING.md).
            if f.damage_type == Dent && f.primer_visible.is_none() && shows_primer(f) {
                f.primer_visible = l.primer_visible.or(l.paint_broken.filter(|b| !b));
            }
            if f.damage_type == Dent {
                if let Some(b) = l.paint_broken.or(l.primer_visible) {
                    f.facts.entry("paint_broken".into()).or_insert_with(|| b.to_string());
                }
            }
        }
        AbnormalNoise | Vibration | NotWorking | Leak | Other | WarningLight | Broken => {}
    }
    // The situation a symptom shows in, or the one body damage happened in ("倒车入库的时候").
    if f.occurs_when.is_none() {
        f.occurs_when = l.occurs_when.clone();
    }
    if f.damage_type == WarningLight {
        if let Some(w) = &l.which_light {
            f.facts.entry("which_light".into()).or_insert_with(|| w.clone());
        }
    }
    if f.damage_type == Leak {
        if let Some(w) = &l.leak_fluid {
            f.facts.entry("leak_fluid".into()).or_insert_with(|| w.clone());
        }
    }
    if let Some(s) = &l.since_when {
        f.facts.entry("since_when".into()).or_insert_with(|| s.clone());
    }
}

pub(super) fn loose_facts(lx: &Lexicon, norm: &str) -> LooseFacts {
    let mut l = LooseFacts::default();
    let (len, bare) = lengths(norm);
    l.length_cm = len;
    l.bare_number = bare;
    l.primer_visible = primer(lx, norm);
    l.paint_broken = paint_broken(lx, norm);
    l.occurs_when = occurs_when(lx, norm);
    l.which_light = lx.lights.iter().find(|(w, _)| norm.contains(w.as_str())).map(|(_, light)| light.clone());
    l.since_when = lx.since.iter().find(|w| norm.contains(w.as_str())).cloned();
    if lx.leak_words.iter().any(|w| norm.contains(w.as_str())) {
        l.leak_fluid = lx.leak_fluids.iter().find(|(w, _)| norm.contains(w.as_str())).map(|(_, v)| v.clone());
    }
    l
}

pub(super) fn primer(lx: &Lexicon, s: &str) -> Option<bool> {
    let has = |words: &[String]| words.iter().any(|w| s.contains(w.as_str()));
    // The customer cannot tell ("深唔深", "看不出来"): unknown, whatever words follow.
    if has(&lx.primer_unsure) {
        None
    } else if has(&lx.primer_no) {
        Some(false)
    } else if has(&lx.primer_yes) {
        Some(true)
    } else {
        None
    }
}

fn paint_broken(lx: &Lexicon, s: &str) -> Option<bool> {
    let has = |words: &[String]| words.iter().any(|w| s.contains(w.as_str()));
    if has(&lx.paint_no) {
        Some(false)
    } else if has(&lx.paint_yes) {
        Some(true)
    } else {
        None
    }
}

pub(super) fn occurs_when(lx: &Lexicon, s: &str) -> Option<String> {
    // "洗车的时候发现…": when the damage was found, not when it happens.
    if lx.found.iter().any(|w| s.contains(w.as_str())) {
        return None;
    }
    // The customer's own words before 的时候 ("新手停车的时候", "方向盘往左打死的时候", "when I
    // stop"): kept whole, they say more than the table's short name.
    if let Some(span) = when_span(lx, s) {
        return Some(span);
    }
    let marker = lx.time_markers.iter().any(|m| s.contains(m.as_str()));
    let tbl: Vec<(&str, &str)> =
        lx.situations.iter().filter(|x| !x.needs_marker || marker).map(|x| (x.word.as_str(), x.means.as_str())).collect();
    let mut used = vec![false; s.len()];
    mask(s, &lx.mask, &mut used);
    mask(s, &lx.not_situations, &mut used);
    let hits = find(s, &tbl, &mut used);
    let mut names: Vec<&str> = Vec::new();
    for h in &hits {
        if !names.contains(&h.val) {
            names.push(h.val);
        }
    }
    if names.is_empty() {
        None
    } else {
        Some(names.join("/"))
    }
}

/// Discovery, not a situation.
/// The span before a time word in the customer's words: "地库拐弯的时候", "倒车时", "when I turn it up".
fn when_span(lx: &Lexicon, s: &str) -> Option<String> {
    static R: OnceLock<[regex::Regex; 4]> = OnceLock::new();
    let [zh, en, once, speed] = R.get_or_init(|| {
        [
            regex::Regex::new(r"([^，。,.!！?？；;、：:\s]{2,14}?)(的时候|时候|的时侯|时侯|那会儿|时)").expect("valid pattern"),
            regex::Regex::new(r"\b((?:when|while|whenever|every time|each time) [a-z' ]{3,40}?)(?:[,.;!?]|\band\b|\bbut\b|$)")
                .expect("valid pattern"),
            // "声音一开大就滋滋响", "一过那种不平的路就响"; "跑到一百以上", "120以上".
            regex::Regex::new(r"[^，。,.!！?？；;、：:\s一]{0,4}一[^，。,.!！?？；;、：:\s一道条块个点下些片次直共样般定]{1,8}?就").expect("valid pattern"),
            regex::Regex::new(r"(?:跑到|开到|速度到)?[0-9一二三四五六七八九十百]{2,5}(?:公里|码|km/h)?(?:以上|往上)|(?:跑到|开到|速度到)[0-9一二三四五六七八九十百]{2,5}")
                .expect("valid pattern"),
        ]
    });
    let mut masked = s.to_string();
    for w in &lx.not_when {
        masked = masked.replace(w.as_str(), &"\u{3000}".repeat(w.chars().count()));
    }
    if let Some(c) = zh.captures(&masked) {
        let head = c.get(1).map_or("", |m| m.as_str());
        let head = lx.when_fillers.iter().fold(head, |h, f| h.strip_prefix(f.as_str()).unwrap_or(h));
        if head.chars().count() >= 2 {
            return Some(format!("{head}{}", c.get(2).map_or("", |m| m.as_str())));
        }
    }
    if let Some(m) = en.captures(&masked).and_then(|c| c.get(1)) {
        return Some(m.as_str().trim().to_string());
    }
    if let Some(m) = once.find(&masked) {
        return Some(m.as_str().trim_end_matches('就').to_string());
    }
    speed.find(&masked).map(|m| m.as_str().to_string())
}

/// Who said it and filler words in front of a situation: "客户说在小区里倒车入库的时候" → "小区里倒车入库的时候".
// ---------------------------------------------------------------------------------------------
// Numbers and units.

/// First length with a unit (in cm), and the first bare number without one.
pub(super) fn lengths(s: &str) -> (Option<f64>, Option<f64>) {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut found: Option<f64> = None;
    let mut bare: Option<f64> = None;
    while i < chars.len() {
        let c = chars[i];
        let (val, next) = if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let t: String = chars[i..j].iter().collect();
            (t.trim_end_matches('.').parse::<f64>().ok(), j)
        } else if cn_digit(c).is_some() || matches!(c, '十' | '百' | '几' | '半') {
            let mut j = i;
            while j < chars.len() && (cn_digit(chars[j]).is_some() || matches!(chars[j], '十' | '百' | '几' | '半')) {
                j += 1;
            }
            let t: String = chars[i..j].iter().collect();
            (cn_number(&t), j)
        } else if s[char_byte(&chars, i)..].starts_with("half a") {
            (Some(0.5), i + 6)
        } else if s[char_byte(&chars, i)..].starts_with("a foot") {
            (Some(30.0), i + 6)
        } else {
            i += 1;
            continue;
        };
        let Some(mut v) = val else {
            i = next.max(i + 1);
            continue;
        };
        // Skip fillers between number and unit: 多/来/几/左右/个/ spaces.
        let mut j = next;
        let mut extra = 0.0;
        while j < chars.len() && matches!(chars[j], '多' | '来' | ' ' | '个' | '几') {
            if chars[j] == '多' || chars[j] == '几' {
                extra = if v >= 10.0 { 5.0 } else { 0.2 * v.max(1.0) };
            }
            j += 1;
        }
        let rest: String = chars[j..chars.len().min(j + 8)].iter().collect();
        let unit = [
            ("厘米", 1.0),
            ("公分", 1.0),
            ("釐米", 1.0),
            ("cm", 1.0),
            ("centimet", 1.0),
            ("毫米", 0.1),
            ("mm", 0.1),
            ("米", 100.0),
            ("meter", 100.0),
            ("metre", 100.0),
            ("m ", 100.0),
            ("寸", 3.33),
            ("inch", 2.54),
            ("foot", 30.48),
            ("feet", 30.48),
            ("尺", 33.3),
        ]
        .iter()
        .find(|(u, _)| rest.starts_with(u) || (*u == "m " && rest == "m"));
        if s[char_byte(&chars, i)..].starts_with("a foot") {
            v = 30.0;
            found.get_or_insert(v);
        } else if let Some((_, f)) = unit {
            // "一米多" ≈ 120 cm; "十几公分" ≈ 15.
            let cm = if *f == 100.0 { (v + extra.min(0.2)) * f } else { (v + extra) * f };
            found.get_or_insert((cm * 10.0).round() / 10.0);
        } else if rest.starts_with(|u: char| "元块钱折%号点月年天次张¥".contains(u))
            || ["小时", "yuan", "rmb", "day", "hour", "%", "km", "公里"].iter().any(|u| rest.trim_start().starts_with(u))
            || (i > 0 && matches!(chars[i - 1], '¥' | '$'))
        {
            // A price, a date, a count: never a length, even when we just asked for one.
        } else if c.is_ascii_digit() || chars[i..next].len() > 1 || matches!(c, '十') {
            bare.get_or_insert(v + extra);
        }
        i = next.max(i + 1);
    }
    (found, bare)
}

fn char_byte(chars: &[char], i: usize) -> usize {
    chars[..i].iter().map(|c| c.len_utf8()).sum()
}

//! The lexicon's rules that are code: normalising and splitting the text, matching words
//! (longest first, each byte used once), placing sides, negation, and the part conventions the
//! passes share (a bumper is front or rear, a tyre and its rim are one wheel …).
//!
//! Words come from the [`Lexicon`]; the structure around them (which words combine how) is here.

use std::sync::OnceLock;

use super::data::Lexicon;
use super::{Lat, Lon};
use crate::intake::{DamageType, Finding, Part, Position};

pub fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            '’' | '‘' => '\'',
            _ => c,
        })
        .flat_map(|c| c.to_lowercase())
        .collect()
}

pub(super) fn is_sep(c: char) -> bool {
    matches!(c, ',' | '.' | ';' | '!' | '?' | '，' | '。' | '；' | '！' | '？' | '、' | '\n' | '~' | '…')
}

/// Splits at punctuation and at "还有/另外/而且/also" which start a new problem.
pub(super) fn clauses(lx: &Lexicon, norm: &str) -> Vec<String> {
    let mut marked = pauses(lx, norm);
    for w in &lx.clause.new_problem {
        marked = marked.replace(w.as_str(), &format!("|{w}"));
    }
    marked.split(|c: char| is_sep(c) || c == '|').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// Voice input has no punctuation: a space between two longer runs of Chinese is a pause, marked
/// '|'. Short pieces ("左后", "嗯", "右边") stay with their neighbours, and so does a guess at the
/// cause ("…咯吱咯吱 像是减震的问题").
pub(super) fn pauses(lx: &Lexicon, norm: &str) -> String {
    let han = |c: char| ('\u{4E00}'..='\u{9FFF}').contains(&c);
    let pieces: Vec<&str> = norm.split(' ').collect();
    let mut out = String::with_capacity(norm.len());
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            let prev_han = pieces[i - 1].chars().next_back().is_some_and(han);
            let next_han = piece.chars().next().is_some_and(han);
            let guess = lx.clause.guess.iter().any(|w| piece.starts_with(w.as_str()));
            let long = |p: &str| p.chars().count() >= 5;
            if prev_han && next_han && !guess && long(pieces[i - 1]) && long(piece) {
                out.push('|');
            } else {
                out.push(' ');
            }
        }
        out.push_str(piece);
    }
    out
}

pub(super) struct Hit<T> {
    pub start: usize,
    pub end: usize,
    pub val: T,
}

/// All non-overlapping matches of `table` in `s` avoiding `used`, longest first; marks `used`.
pub(super) fn find<T: Copy, W: AsRef<str>>(s: &str, table: &[(W, T)], used: &mut [bool]) -> Vec<Hit<T>> {
    let mut cands: Vec<Hit<T>> = Vec::new();
    for (pat, val) in table {
        let pat = pat.as_ref();
        if pat.is_empty() {
            continue;
        }
        for (i, _) in s.match_indices(pat) {
            cands.push(Hit { start: i, end: i + pat.len(), val: *val });
        }
    }
    cands.sort_by(|a, b| (b.end - b.start).cmp(&(a.end - a.start)).then(a.start.cmp(&b.start)));
    let mut out = Vec::new();
    for h in cands {
        if used[h.start..h.end].iter().any(|u| *u) {
            continue;
        }
        // English words: require a word boundary in front ("door" not in "outdoor").
        if h.start > 0 && s.as_bytes()[h.start].is_ascii_alphabetic() && s.as_bytes()[h.start - 1].is_ascii_alphabetic() {
            continue;
        }
        used[h.start..h.end].iter_mut().for_each(|u| *u = true);
        out.push(h);
    }
    out.sort_by_key(|h| h.start);
    out
}

pub(super) fn mask<W: AsRef<str>>(s: &str, words: &[W], used: &mut [bool]) {
    for w in words {
        let w = w.as_ref();
        for (i, _) in s.match_indices(w) {
            used[i..i + w.len()].iter_mut().for_each(|u| *u = true);
        }
    }
}

/// Side words in `s[from..to]` not already used, the last one of each axis winning.
pub(super) fn sides_in(lx: &Lexicon, s: &str, from: usize, to: usize, used: &[bool]) -> (Option<Lat>, Option<Lon>) {
    let (mut lat, mut lon) = (None, None);
    let seg = &s[from..to];
    let mut hits: Vec<(usize, Option<Lat>, Option<Lon>)> = Vec::new();
    for (w, la, lo) in &lx.sides {
        for (i, _) in seg.match_indices(w.as_str()) {
            let gi = from + i;
            if used[gi..gi + w.len()].iter().any(|u| *u) {
                continue;
            }
            hits.push((gi, *la, *lo));
        }
    }
    hits.sort_by_key(|h| h.0);
    // "副驾驶" holds both 副驾 and 驾驶: the 驾驶 inside it is not the driver's side.
    let fu: Vec<usize> =
        hits.iter().filter(|h| seg.get(h.0 - from..).map(|t| t.starts_with("副驾")).unwrap_or(false)).map(|h| h.0).collect();
    hits.retain(|h| !fu.iter().any(|f| h.0 == f + "副".len() && seg.get(h.0 - from..).map(|t| t.starts_with("驾驶")).unwrap_or(false)));
    for (_, la, lo) in hits {
        if la.is_some() {
            lat = la;
        }
        if lo.is_some() {
            lon = lo;
        }
    }
    (lat, lon)
}

pub(super) fn compose(lat: Option<Lat>, lon: Option<Lon>) -> Option<Position> {
    match (lat, lon) {
        (Some(Lat::L), Some(Lon::F)) => Some(Position::LeftFront),
        (Some(Lat::R), Some(Lon::F)) => Some(Position::RightFront),
        (Some(Lat::L), Some(Lon::B)) => Some(Position::LeftRear),
        (Some(Lat::R), Some(Lon::B)) => Some(Position::RightRear),
        (Some(Lat::L), None) => Some(Position::Left),
        (Some(Lat::R), None) => Some(Position::Right),
        (None, Some(Lon::F)) => Some(Position::Front),
        (None, Some(Lon::B)) => Some(Position::Rear),
        (None, None) => None,
    }
}

/// Parts whose position is intrinsic: a "前"/"后" near them is part of the name, not a side.
pub(super) fn side_free(p: Part) -> bool {
    matches!(
        p,
        Part::Hood
            | Part::TrunkLid
            | Part::Roof
            | Part::Windshield
            | Part::RearWindshield
            | Part::Engine
            | Part::Transmission
            | Part::AirConditioning
            | Part::Infotainment
            | Part::Steering
    )
}

pub(super) fn shows_primer(f: &Finding) -> bool {
    matches!(f.damage_type, DamageType::Scratch | DamageType::PaintDamage | DamageType::Dent)
        && !matches!(
            f.part,
            Part::WheelRim | Part::Tire | Part::Headlight | Part::Taillight | Part::Windshield | Part::RearWindshield | Part::Other
        )
}

/// The damage word at `s[start..end]` is denied by the words around it.
pub(super) fn negated(lx: &Lexicon, s: &str, start: usize, end: usize) -> bool {
    let mut pre = s[..start].trim_end();
    while let Some(f) = lx.neg_fillers.iter().find(|f| pre.ends_with(f.as_str()) && english_word_at(pre, pre.len() - f.len())) {
        pre = pre[..pre.len() - f.len()].trim_end();
    }
    // "是不是漏油了" asks about a leak the customer suspects.
    let before =
        !pre.ends_with("是不是") && lx.negators.iter().any(|n| pre.ends_with(n.as_str()) && english_word_at(pre, pre.len() - n.len()));
    let mut post = s[end..].trim_start();
    while let Some(f) = lx.neg_fillers_after.iter().find(|f| post.starts_with(f.as_str())) {
        post = &post[f.len()..];
    }
    let after = lx.denied_after.iter().any(|w| post.starts_with(w.as_str()) && !post[w.len()..].starts_with(['吗', '吧']));
    before || after
}

/// An English word starts at byte `i` of `s` (anything goes for Chinese).
pub(super) fn english_word_at(s: &str, i: usize) -> bool {
    let b = s.as_bytes();
    !b[i].is_ascii_alphabetic() || i == 0 || !b[i - 1].is_ascii_alphabetic()
}

/// "早上打不着火，电瓶老亏电": the customer blames the battery, not the engine.
pub(super) fn battery_blamed(lx: &Lexicon, norm: &str) -> bool {
    let named = lx.battery_named.iter().any(|w| norm.contains(w.as_str()));
    let cleared = lx.battery_cleared.iter().any(|w| norm.contains(w.as_str()));
    named && !cleared
}

/// What customers who do not know a part's name call it ("轮子上面的铁皮", "开箱子的盖子").
/// word taken back (and its sides) is removed wherever it was said.
pub(super) fn corrected(lx: &Lexicon, norm: &str) -> String {
    static R: OnceLock<regex::Regex> = OnceLock::new();
    let re = R.get_or_init(|| regex::Regex::new(r"(不对)?\s*不是([^\s，。,不是]{1,6})\s*(而|就)?是").expect("valid pattern"));
    let mut out = norm.to_string();
    if let Some(c) = re.captures(norm) {
        let wrong = c.get(2).map_or("", |m| m.as_str());
        let whole = c.get(0).map_or(0..0, |m| m.range());
        let (head, tail) = (&norm[..whole.start], &norm[whole.end..]);
        out = format!("{} {}", head.replace(wrong, ""), tail);
    } else if let Some(at) = norm.find("不对") {
        // The last lexicon word before "不对" is taken back when one of its kind follows.
        let (head, tail) = (&norm[..at], &norm[at + "不对".len()..]);
        let last_part = lx
            .parts
            .iter()
            .filter_map(|(w, _)| head.rfind(w.as_str()).map(|i| (i, w.as_str())))
            .max_by_key(|(i, w)| (*i + w.len(), w.len()));
        let part_follows = lx.parts.iter().any(|(w, _)| tail.contains(w.as_str()));
        if let Some((i, w)) = last_part.filter(|_| part_follows) {
            // With the side words right before it ("左后门").
            let start = head[..i].char_indices().rev().take_while(|(_, c)| "左右前后".contains(*c)).last().map_or(i, |(j, _)| j);
            out = format!("{}{}{}", &head[..start], &head[i + w.len()..], tail);
        }
    }
    out
}

/// Paint that came off, however it is said ("掉了好几块漆", "漆一块一块地往下掉"), as one word.
pub(super) fn paint_off() -> &'static regex::Regex {
    static R: OnceLock<regex::Regex> = OnceLock::new();
    R.get_or_init(|| {
        regex::Regex::new(r"(蹭|刮)?掉了?[^\s，。,;；!！?？漆]{0,6}漆|漆(一块一块|一片一片)地?往下掉|漆(都|也)?崩掉?了?")
            .expect("valid pattern")
    })
}

/// Outer parts that carry a side of their own (a door's side passes to the door behind it).
pub(super) fn panel(p: Part) -> bool {
    matches!(
        p,
        Part::Door
            | Part::Fender
            | Part::QuarterPanel
            | Part::Tire
            | Part::WheelRim
            | Part::Headlight
            | Part::Taillight
            | Part::Mirror
            | Part::Bumper
    )
}

/// A side passes between panels, or between wheels, not from a door to a wheel's noise.
pub(super) fn same_kind(a: Part, b: Part) -> bool {
    let wheel = |p| matches!(p, Part::Tire | Part::WheelRim);
    a == b || (panel(a) && panel(b) && wheel(a) == wheel(b))
}

/// "车速一过六十，轮胎那儿就嗡嗡响": a tyre named as a tyre hums itself, not the suspension.
pub(super) fn named_tyre(lx: &Lexicon, s: &str, at: usize) -> Option<Part> {
    lx.clause.tyre.iter().any(|w| s[at..].starts_with(w.as_str())).then_some(Part::Tire)
}

/// The instrument cluster itself goes dark ("仪表盘黑了"); a light or a rattle *on* or behind it is
/// some other part's ("仪表上有个感叹号灯亮了").
pub(super) fn on_dashboard(lx: &Lexicon, s: &str, at: usize, p: Part, d: DamageType) -> Part {
    let dash = lx.clause.dashboard.iter().any(|w| s[at..].starts_with(w.as_str()));
    if dash && d != DamageType::NotWorking {
        Part::Other
    } else {
        p
    }
}

/// Parts placed at a corner of the car (left_front … right_rear).
pub(super) fn corners(p: Part) -> bool {
    matches!(p, Part::Door | Part::Fender | Part::QuarterPanel | Part::Tire | Part::WheelRim | Part::Electrical)
}

/// A tyre and its rim are at the same wheel ("右前轮压到马路牙子上了，轮毂边上刮得挺厉害").
pub(super) fn same_place(a: Part, b: Part) -> bool {
    a == b || (matches!(a, Part::Tire | Part::WheelRim) && matches!(b, Part::Tire | Part::WheelRim))
}

/// A part named in a price or booking enquiry ("换一套轮胎多少钱", "book a tire rotation") or
/// said to be fine ("刚换的刹车片，没什么问题") is not a problem.

pub(super) fn pair_of_doors() -> &'static regex::Regex {
    static R: OnceLock<regex::Regex> = OnceLock::new();
    // "两个门", "俩后门", "两扇前车门", "2个门".
    R.get_or_init(|| regex::Regex::new(r"(两|俩|2|左右)(个|扇)?(前|后)?车?门").expect("valid pattern"))
}

pub(super) fn pair_of_lamps() -> &'static regex::Regex {
    static R: OnceLock<regex::Regex> = OnceLock::new();
    // "两个尾灯都碎了", "俩大灯", "左右后视镜", "both headlights".
    R.get_or_init(|| {
        regex::Regex::new(r"(两|俩|左右)(个|只|边)?(大灯|尾灯|前灯|后视镜|倒车镜|反光镜)|both (head|tail)").expect("valid pattern")
    })
}

pub(super) fn is_body_damage(d: DamageType) -> bool {
    matches!(d, DamageType::Scratch | DamageType::Dent | DamageType::Crack | DamageType::PaintDamage | DamageType::Broken)
}

/// Finding `f` adds nothing to `g`: "左边两个门都被划了，前门划得深" tells the same scratch again,
/// less precisely; "左尾灯灯罩裂了，下雨往里进水": the water in a cracked lamp is that crack.
pub(super) fn said_by(g: &Finding, f: &Finding) -> bool {
    let here = g.position == f.position || refines(g.position, f.position);
    // "门上一个坑，漆掉了点": paint off at a dent is that dent (LABELING.md); "起泡了，一个个小鼓包":
    // the unknown damage is the known one.
    use DamageType::*;
    let secondary = (f.damage_type == PaintDamage && g.damage_type == Dent)
        // "撞裂了，是剐到柱子上的": the scrape is how the crack happened.
        || (f.damage_type == Scratch && matches!(g.damage_type, Crack | Broken))
        // "钢圈变形了，边上有一块瘪进去了", "避震怕是坏了，过减速带咣咣的".
        || (f.damage_type == Broken && g.damage_type == Dent)
        || (f.damage_type == Broken && !panel(f.part) && !side_free(f.part) && matches!(g.damage_type, AbnormalNoise | Vibration | Leak))
        || (f.damage_type == DamageType::Other && f.part != Part::Tire && is_body_damage(g.damage_type));
    g.part == f.part
        && ((g.damage_type == f.damage_type && refines(g.position, f.position))
            || (secondary && here)
            || (f.damage_type == DamageType::Leak
                && matches!(f.part, Part::Headlight | Part::Taillight)
                && matches!(g.damage_type, DamageType::Crack | DamageType::Broken)))
}

/// `a` says where `b` is, and more precisely (`b` unknown, or one axis of `a`).
pub(super) fn refines(a: Option<Position>, b: Option<Position>) -> bool {
    if a == b || a.is_none() {
        return false;
    }
    let ((la, lo), (lb, ob)) = (split(a), split(b));
    lb.is_none_or(|x| la == Some(x)) && ob.is_none_or(|x| lo == Some(x))
}

pub(super) fn split(pos: Option<Position>) -> (Option<Lat>, Option<Lon>) {
    match pos {
        Some(Position::LeftFront) => (Some(Lat::L), Some(Lon::F)),
        Some(Position::RightFront) => (Some(Lat::R), Some(Lon::F)),
        Some(Position::LeftRear) => (Some(Lat::L), Some(Lon::B)),
        Some(Position::RightRear) => (Some(Lat::R), Some(Lon::B)),
        Some(Position::Left) => (Some(Lat::L), None),
        Some(Position::Right) => (Some(Lat::R), None),
        Some(Position::Front) => (None, Some(Lon::F)),
        Some(Position::Rear) => (None, Some(Lon::B)),
        None => (None, None),
    }
}

/// "踩刹车的时候前轮咯吱响", "过坑的时候右前轮咚咚响": a wheel's noise in that situation is the
/// brakes or the suspension behind the wheel.
pub(super) fn wheel_part(p: Part, d: DamageType, situation: Option<Part>) -> Part {
    match situation {
        Some(sp) if matches!(p, Part::Tire | Part::WheelRim) && matches!(d, DamageType::AbnormalNoise | DamageType::Vibration) => sp,
        // A knocking wheel with no situation said: the suspension behind it ("左前轮那块咚咚响").
        None if matches!(p, Part::Tire | Part::WheelRim) && d == DamageType::AbnormalNoise => Part::Suspension,
        _ => p,
    }
}

pub(super) fn push_unique(v: &mut Vec<Finding>, f: Finding) {
    if !v.iter().any(|x| x.part == f.part && x.position == f.position && x.damage_type == f.damage_type) {
        v.push(f);
    }
}

/// A damage word read for its part: "坏了" on a device means it does not work, on a panel it is
/// broken; a tyre that "瘪了" has lost air.
pub(super) fn fit_to_part(mut f: Finding, ambiguous: bool) -> Finding {
    if f.part == Part::Tire && f.damage_type == DamageType::Dent {
        f.damage_type = DamageType::Leak;
    }
    if ambiguous
        && f.damage_type == DamageType::Broken
        && matches!(
            f.part,
            Part::Headlight
                | Part::Taillight
                | Part::Engine
                | Part::Transmission
                | Part::AirConditioning
                | Part::Electrical
                | Part::Infotainment
                | Part::Steering
                | Part::Brakes
        )
    {
        f.damage_type = DamageType::NotWorking;
    }
    f
}

//! `analyse`: the lexicon's passes over one message, in order. A message is prepared once
//! (typos, homophones, plain names, words taken back), split into clauses, and each clause goes
//! through the passes below; `finish` then drops what other findings already say and fills the
//! facts said loose. The passes share one state (`Pass`): what earlier clauses named (the
//! previous finding, a part named alone, the situation) is how a clause without a part is read.
//!
//! Matching works on byte ranges of the lower-cased text; each range is used by at most one
//! hit, longest match first, so "后视镜" is a mirror, never "rear", and "开关门" is a situation,
//! never a door.

use super::data::{Lexicon, PartHit};
use super::facts::{apply_loose, loose_facts, occurs_when, primer};
use super::rules::*;
use super::{Lat, LexResult, Lon, LooseFacts};
use crate::intake::{DamageType, Finding, Part, Position};

/// A part named in a clause: (byte offset, part, side).
type Mention = (usize, Part, Option<Position>);
type Key = (Part, Option<Position>, DamageType);

/// The words one clause holds, after masking.
struct Words {
    comps: Vec<Hit<(Part, DamageType)>>,
    parts: Vec<Hit<PartHit>>,
    dmgs: Vec<Hit<(DamageType, bool)>>,
    /// Ends of the car said by a locator ("车屁股保险杠"), at the locator's end offset.
    ends: Vec<(usize, Lon)>,
    /// The clause is about audio ("音响左前喇叭有破音": a speaker, not the horn).
    audio: bool,
    /// A wheel's noise in this situation is the brakes' or the suspension's.
    wheel_noise_part: Option<Part>,
}

/// The state the passes share over one message.
struct Pass<'a> {
    lx: &'a Lexicon,
    norm: String,
    res: LexResult,
    /// The last clause's last finding: (part, side).
    prev: Option<(Part, Option<Position>)>,
    /// A part named alone, whose symptom may follow.
    orphan: Option<(Part, Option<Position>)>,
    situation_part: Option<Part>,
    /// The glass a bare "玻璃" refers to ("前挡风玻璃…，玻璃裂成蜘蛛网了").
    last_glass: Option<Part>,
    /// The message denies a damage somewhere ("没划痕也没凹"): a part named alone is then no problem.
    denied: bool,
    /// Parts said to be fine ("前门是好的").
    fine: Vec<(Part, Option<Position>)>,
    /// A clause said the primer of its own finding: the message's word is not everyone's.
    primer_placed: bool,
    last_here: Vec<Key>,
    /// The situation of the last clause that had findings, and one said in a clause without any.
    last_when: Option<String>,
    pending_when: Option<String>,
}

pub(super) fn analyse(lx: &Lexicon, text: &str) -> LexResult {
    let (norm, scraped_off) = prepare(lx, text);
    let mut pass = Pass::new(lx, norm);
    for cl in clauses(lx, &pass.norm.clone()) {
        pass.clause(&cl);
    }
    pass.finish(scraped_off)
}

/// Typos, homophones, paint that came off, a wiper's stroke, words taken back, plain names.
/// Returns the text to read and whether a scrape took paint off ("刮掉一块漆").
fn prepare(lx: &Lexicon, text: &str) -> (String, bool) {
    let norm = lx.homophones.repair(&lx.typos.iter().fold(normalize(text), |t, (typo, word)| t.replace(typo.as_str(), word)));
    let scraped_off = paint_off().captures_iter(&norm).any(|c| c.get(1).is_some());
    let norm = paint_off().replace_all(&norm, "掉漆").into_owned();
    // A wiper's stroke is not a scratch ("雨刮器刮的时候咯吱响").
    let norm = norm.replace("雨刮器刮", "雨刮器摆").replace("雨刮刮", "雨刮摆");
    let norm = corrected(lx, &norm);
    let norm = lx.plain_names.iter().fold(norm, |t, (re, word)| re.replace_all(&t, word.as_str()).into_owned());
    (norm, scraped_off)
}

impl<'a> Pass<'a> {
    fn new(lx: &'a Lexicon, norm: String) -> Pass<'a> {
        let mut res = LexResult { findings: Vec::new(), loose: LooseFacts::default(), unsure: false, has_problem_words: false };
        res.loose = loose_facts(lx, &norm);
        Pass {
            lx,
            norm,
            res,
            prev: None,
            orphan: None,
            situation_part: None,
            last_glass: None,
            denied: false,
            fine: Vec::new(),
            primer_placed: false,
            last_here: Vec::new(),
            last_when: None,
            pending_when: None,
        }
    }

    /// One clause through the passes.
    fn clause(&mut self, s: &str) {
        let mut used = vec![false; s.len()];
        if !self.mask_noise(s, &mut used) {
            return;
        }
        let Some(mut words) = self.find_words(s, &mut used) else {
            return;
        };
        let fine_here = self.drop_negated(s, &mut words);
        let mentions = self.place_parts(s, &used, &words);
        if fine_here {
            self.fine.extend(mentions.iter().map(|m| (m.1, m.2)));
            return;
        }
        let mentions = expand_pairs(self.lx, s, mentions);
        let new = self.compound_findings(&words, &mentions);
        let (mentions, new) = self.attach_damage(s, &used, words, mentions, new);
        self.commit(s, &mentions, new);
    }

    /// Masks words that hold side or symptom characters but mean neither; false when the
    /// clause's problem is gone ("上次的异响已经修好了").
    fn mask_noise(&self, s: &str, used: &mut [bool]) -> bool {
        let lx = self.lx;
        mask(s, &lx.mask, used);
        // "咔咔的响，直着开不响": the noise stops, nothing fell silent.
        if self.norm.contains("不响")
            && lx.damages.iter().any(|(w, (d, _))| *d == DamageType::AbnormalNoise && w != "响" && self.norm.contains(w.as_str()))
        {
            mask(s, &["不响"], used);
        }
        // "五十公分左右": about, not both sides.
        for (i, _) in s.match_indices("左右") {
            if s[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || "一二三四五六七八九十百千两分米度寸天钟块元个码".contains(c))
            {
                used[i..i + "左右".len()].iter_mut().for_each(|u| *u = true);
            }
        }
        // "上次的异响已经修好了": a problem that is gone.
        if lx.fixed.iter().any(|w| s.contains(w.as_str())) {
            return false;
        }
        if self.res.findings.last().is_some_and(|f| f.damage_type == DamageType::Dent)
            || lx.dent_words.iter().any(|w| s.contains(w.as_str()))
        {
            mask(s, &lx.paint_on_dent, used);
        }
        true
    }

    /// The clause's situations, compounds, parts and damage words, longest first; None when the
    /// only parts named are someone else's car's.
    fn find_words(&mut self, s: &str, used: &mut [bool]) -> Option<Words> {
        let lx = self.lx;
        // Parts whose names start with a situation ("倒车影像", "倒车镜") before the situations.
        let early = find(s, &lx.early_parts, used);
        // "冷车启动困难": a hard start before the situation "冷车启动" takes its words.
        let early_comps = find(s, &lx.early_compounds, used);
        let marker = lx.time_markers.iter().any(|m| s.contains(m.as_str()));
        let sit_tbl: Vec<(&str, Option<Part>)> =
            lx.situations.iter().filter(|x| !x.needs_marker || marker).map(|x| (x.word.as_str(), x.part)).collect();
        let sits = find(s, &sit_tbl, used);
        // "怠速开着空调车抖": the air conditioning and high speed only load what shakes.
        if let Some(p) = sits.iter().filter_map(|h| h.val).min_by_key(|p| matches!(p, Part::AirConditioning | Part::Tire)) {
            self.situation_part = Some(p);
        }
        // A wheel's noise while braking is the brakes; over bumps, the suspension.
        let wheel_noise_part = sits.iter().find_map(|h| h.val.filter(|p| matches!(p, Part::Brakes | Part::Suspension)));
        let mut comps = find(s, &lx.compounds, used);
        comps.extend(early_comps);
        comps.sort_by_key(|h| h.start);
        let mut parts = find(s, &lx.parts, used);
        // "音响左前喇叭有破音": a speaker, not the horn.
        let audio = lx.clause.audio.iter().any(|w| s.contains(w.as_str()));
        parts.extend(early);
        parts.sort_by_key(|h| h.start);
        // "车头引擎盖": a locator next to a named part only says where that part is.
        // "左后叶子板靠近尾灯的地方", "天窗旁边的漆面": a part named to say where another one is.
        let near = |h: &Hit<(Part, Option<Lon>, Option<Lat>)>| {
            lx.clause.near_before.iter().any(|w| s[..h.start].ends_with(w.as_str()))
                || lx.clause.near_after.iter().any(|w| s[h.end..].starts_with(w.as_str()))
        };
        let is_locator = |h: &Hit<(Part, Option<Lon>, Option<Lat>)>| lx.locators.iter().any(|w| *w == s[h.start..h.end]) || near(h);
        // "车屁股保险杠": the end of the car the locator names.
        let ends: Vec<(usize, Lon)> = parts.iter().filter(|h| is_locator(h)).filter_map(|h| h.val.1.map(|lo| (h.end, lo))).collect();
        if parts.iter().any(|h| !is_locator(h)) {
            // Their side words then belong to the part named ("右后轮钢圈" → right rear rim).
            for h in parts.iter().filter(|h| is_locator(h)) {
                used[h.start..h.end].iter_mut().for_each(|u| *u = false);
            }
            parts.retain(|h| !is_locator(h));
        }
        let dmgs = find(s, &lx.damages, used);
        // "他的后杠裂了，我的车没事": someone else's car; "被别人的车门磕了": what hit ours.
        let foreign = |h: &Hit<(Part, Option<Lon>, Option<Lat>)>| lx.foreign.iter().any(|w| s[..h.start].ends_with(w.as_str()));
        if parts.iter().any(foreign) {
            parts.retain(|h| !foreign(h));
            if parts.is_empty() {
                return None;
            }
        }
        // "一加速车头那里就呜呜叫": an end of the car only places a noise.
        if !dmgs.is_empty() && comps.is_empty() && dmgs.iter().all(|d| !is_body_damage(d.val.0)) {
            parts.retain(|h| !lx.clause.car_ends.iter().any(|w| *w == s[h.start..h.end]));
        }
        // "漆面有一道划痕": a weak word gives way to a plain damage word in the same clause.
        let dmgs =
            if dmgs.len() > 1 { dmgs.into_iter().filter(|h| !lx.weak.iter().any(|w| *w == s[h.start..h.end])).collect() } else { dmgs };
        Some(Words { comps, parts, dmgs, ends, audio, wheel_noise_part })
    }

    /// Drops denied damage words ("没划痕也没凹", "玻璃没碎", "no leaks"); true when the clause
    /// only says its parts are fine ("前门是好的").
    fn drop_negated(&mut self, s: &str, words: &mut Words) -> bool {
        let lx = self.lx;
        let n = words.comps.len() + words.dmgs.len();
        words.comps.retain(|h| !negated(lx, s, h.start, h.end));
        words.dmgs.retain(|h| !negated(lx, s, h.start, h.end));
        self.denied |= words.comps.len() + words.dmgs.len() < n;
        let (comps, dmgs) = (&words.comps, &words.dmgs);
        if !comps.is_empty() || !dmgs.is_empty() {
            self.res.has_problem_words = true;
        }
        comps.is_empty() && dmgs.is_empty() && lx.clause.fine.iter().any(|w| s.contains(w.as_str()))
    }

    /// Each part mention with its side (words between the previous part and this one), by the
    /// conventions (a bumper is front or rear, a mirror left or right, a rear fender is the
    /// quarter panel) and the sides said before.
    fn place_parts(&mut self, s: &str, used: &[bool], words: &Words) -> Vec<Mention> {
        let lx = self.lx;
        let (parts, ends, audio) = (&words.parts, &words.ends, words.audio);
        let mut mentions: Vec<(usize, Part, Option<Position>)> = Vec::new();
        let mut from = 0;
        // "同一侧前轮的轮毂也刮花了".
        let same_side = lx.clause.same_side.iter().any(|w| s.contains(w.as_str()));
        for h in parts {
            let (p, ilon, ilat) = h.val;
            let p = if &s[h.start..h.end] == "玻璃" {
                match self.last_glass {
                    Some(g) => g,
                    None => continue,
                }
            } else {
                p
            };
            if matches!(p, Part::Windshield | Part::RearWindshield) {
                self.last_glass = Some(p);
            }
            let (mut lat, mut lon) = sides_in(lx, s, from, h.start, used);
            if lon.is_none() {
                lon = ends.iter().find(|(e, _)| *e > from && *e <= h.start).map(|(_, lo)| *lo);
            }
            if lat.is_none() && lon.is_none() {
                // "the taillight on the left", "后视镜右边的": side words after the part, up to the next part.
                let next = parts.iter().find(|x| x.start > h.start).map(|x| x.start).unwrap_or(s.len());
                let (la, lo) = sides_in(lx, s, h.end, next, used);
                lat = la;
                lon = lo;
            }
            let lat = ilat.or(lat);
            let lon = ilon.or(if side_free(p) { None } else { lon });
            let lat = if side_free(p) && p != Part::Steering { lat.filter(|_| false) } else { lat };
            // Conventions: a bumper is front or rear, a mirror left or right, a rear fender is the
            // quarter panel.
            let (lat, lon) = match p {
                Part::Bumper => (None, lon),
                Part::Mirror | Part::Taillight => (lat, None),
                // "左前大灯" keeps its front, "副驾这边的大灯" is the right one.
                Part::Headlight => {
                    (lat, lon.filter(|_| ilon.is_some() || s[..h.start].ends_with("左前") || s[..h.start].ends_with("右前")))
                }
                // A fender is a front wing, a quarter panel a rear one ("右边叶子板").
                Part::Fender if lat.is_some() && lon.is_none() => (lat, Some(Lon::F)),
                Part::QuarterPanel if lat.is_some() && lon.is_none() => (lat, Some(Lon::B)),
                _ => (lat, lon),
            };
            let p = if p == Part::Fender && lon == Some(Lon::B) { Part::QuarterPanel } else { p };
            // "副驾门磕到柱子上，门边掉了一块漆": the same part again, without its side.
            // "左前轮毂和轮胎都刮伤了": the side of the rim named just before.
            let before = mentions.last().map(|m| (m.1, m.2));
            let pos = compose(lat, lon)
                .or_else(|| [before, self.orphan, self.prev].into_iter().flatten().find(|x| same_place(x.0, p)).and_then(|x| x.1));
            // "副驾门被撞凹了，车窗也降不下来了": 也 puts it at the same place.
            let pos = match self.prev {
                Some((_, Some(ppos))) if pos.is_none() && s.contains('也') && corners(p) => {
                    Some(ppos).filter(|x| split(Some(*x)).1.is_some())
                }
                _ => pos,
            };
            // "副驾门和后面那个门": the side of the same part named just before.
            let pos = match (split(pos), before) {
                ((None, Some(lo)), Some((bp, Some(bpos)))) if corners(p) && same_kind(p, bp) && split(Some(bpos)).0.is_some() => {
                    compose(split(Some(bpos)).0, Some(lo))
                }
                _ => pos,
            };
            // "左前门划了，后门也凹了": the side of the message's previous finding, on a panel of
            // the same kind (a door's side is not the suspension's).
            let pos = match (split(pos), self.prev) {
                ((None, Some(lo)), Some((pp, Some(ppos))))
                    if !side_free(p) && !matches!(p, Part::Bumper) && !side_free(pp) && (same_kind(p, pp) || same_side) =>
                {
                    compose(split(Some(ppos)).0, Some(lo))
                }
                _ => pos,
            };
            let p = if audio && &s[h.start..h.end] == "喇叭" { Part::Infotainment } else { p };
            mentions.push((h.start, p, pos));
            from = h.end;
        }
        mentions
    }
    /// Builds the clause's findings from its compounds ("机油灯", "不制冷"): the side of the same
    /// part in this clause, else in the previous one.
    fn compound_findings(&self, words: &Words, mentions: &[Mention]) -> Vec<Finding> {
        let lx = self.lx;
        let comps = &words.comps;
        let mut new: Vec<Finding> = Vec::new();
        for c in comps {
            let (mut p, d) = c.val;
            // "变速箱那块在漏油": the part named wins over the oil leak's default engine.
            if d == DamageType::Leak && p == Part::Engine {
                if let Some(m) = mentions
                    .iter()
                    .find(|m| matches!(m.1, Part::Transmission | Part::Brakes | Part::Steering | Part::Suspension | Part::AirConditioning))
                {
                    p = m.1;
                }
            }
            // The side of the same part in this clause, else in the previous one ("左前轮胎…，一直漏气").
            let pos = mentions
                .iter()
                .find(|m| m.1 == p)
                .and_then(|m| m.2)
                .or_else(|| self.prev.filter(|x| x.0 == p).and_then(|x| x.1))
                .or_else(|| self.orphan.filter(|x| x.0 == p).and_then(|x| x.1));
            // A car that will not start is the engine, unless the customer blames the battery.
            if p == Part::Engine && d == DamageType::NotWorking && battery_blamed(lx, &self.norm) {
                p = Part::Electrical;
            }
            // A warning light is on the dashboard; only tyre pressure names a wheel.
            let pos = pos.filter(|_| d != DamageType::WarningLight || p == Part::Tire);
            new.push(Finding::new(p, pos, d));
        }
        new
    }

    /// Attaches the clause's damage words to its parts: one word to every part named, several
    /// each to the nearest part before it; a symptom without a part to the situation's part, a
    /// part named alone before, or the previous finding; a part named alone waits for its symptom.
    fn attach_damage(
        &mut self,
        s: &str,
        used: &[bool],
        words: Words,
        mentions: Vec<Mention>,
        mut new: Vec<Finding>,
    ) -> (Vec<Mention>, Vec<Finding>) {
        let lx = self.lx;
        let Words { comps, parts, dmgs, wheel_noise_part, .. } = words;
        let comp_parts: Vec<Part> = new.iter().map(|f| f.part).collect();
        // "check engine light is on": the compound already said it; "light is on" adds nothing.
        let comp_dmgs: Vec<DamageType> = comps.iter().map(|c| c.val.1).collect();
        let dmgs: Vec<Hit<(DamageType, bool)>> = dmgs.into_iter().filter(|d| !comp_dmgs.contains(&d.val.0)).collect();
        // "停车场被人刮了，左前门和左后门都有": the previous clause's partless symptom belongs here.
        if dmgs.is_empty() && comps.is_empty() && !mentions.is_empty() && self.res.findings.iter().any(|f| f.part == Part::Other) {
            let others: Vec<Finding> = self.res.findings.iter().filter(|f| f.part == Part::Other).cloned().collect();
            self.res.findings.retain(|f| f.part != Part::Other);
            for o in others {
                for (_, p, pos) in &mentions {
                    push_unique(&mut new, fit_to_part(Finding::new(wheel_part(*p, o.damage_type, None), *pos, o.damage_type), false));
                }
            }
            self.orphan = None;
        }
        let mut mentions: Vec<_> = mentions.into_iter().filter(|m| !comp_parts.contains(&m.1)).collect();
        // "机盖、前杠都有划痕": the part named alone just before shares this clause's damage.
        if let Some(o) = self.orphan {
            let all_of = s.contains('都') || s.contains("both");
            if all_of && dmgs.len() == 1 && !mentions.is_empty() && !mentions.iter().any(|m| m.1 == o.0 && m.2 == o.1) {
                mentions.insert(0, (0, o.0, o.1));
            }
        }
        // "右后门被蹭了一长条，右后叶子板也带到了一点": the same damage on one more part.
        if dmgs.is_empty() && comps.is_empty() && s.contains('也') {
            if let Some(last) = self.res.findings.last().filter(|f| f.part != Part::Other && is_body_damage(f.damage_type)) {
                let d = last.damage_type;
                for (_, p, pos) in mentions.iter().filter(|m| !side_free(m.1) || matches!(m.1, Part::Hood | Part::TrunkLid | Part::Roof)) {
                    push_unique(&mut new, Finding::new(*p, *pos, d));
                }
            }
        }

        if !dmgs.is_empty() {
            if mentions.is_empty() {
                // A symptom without a part: the situation's part, else a part named alone in the
                // previous clause, else the previous finding's part ("右前门有刮痕，还有异响").
                // Body damage happens to a body part, whatever the situation ("跑高速的时候…裂了").
                let body = dmgs.iter().all(|d| is_body_damage(d.val.0));
                let (part, pos) = if let Some(f) = new.last() {
                    // "胎压监测提示右后轮胎压低，打了气又瘪了": this clause's compound named it.
                    (f.part, f.position)
                } else if dmgs.iter().all(|d| lx.powerless.iter().any(|w| *w == s[d.start..d.end])) {
                    // "发动机故障灯亮，加速没劲": a car short of power has no part of its own (LABELING.md).
                    (Part::Other, None)
                } else if let Some(p) = self.situation_part.filter(|p| !body || (self.orphan.is_none() && self.prev.is_none() && panel(*p)))
                {
                    let pos =
                        self.prev.filter(|x| x.0 == p).and_then(|x| x.1).or_else(|| self.orphan.filter(|x| x.0 == p).and_then(|x| x.1));
                    // "过减速带的时候后面咯噔一声": where the symptom comes from.
                    let pos = pos.or_else(|| {
                        let (la, lo) = sides_in(lx, s, 0, s.len(), used);
                        compose(la, lo).filter(|_| !side_free(p) || p == Part::Steering)
                    });
                    (p, pos)
                } else if let Some(o) = self.orphan {
                    o
                } else if let Some(pv) = self.prev {
                    pv
                } else {
                    (Part::Other, None)
                };
                for d in &dmgs {
                    push_unique(&mut new, fit_to_part(Finding::new(part, pos, d.val.0), d.val.1));
                }
            } else if dmgs.len() == 1 {
                // One symptom word shared by every part named ("左前门和左后门都有划痕"); a lamp's
                // word only by the lamps ("按喇叭提醒我刹车灯不亮了").
                let lamp_word = lx.clause.lamp_out.iter().any(|w| s[dmgs[0].start..].starts_with(w.as_str()));
                let lamps = lamp_word && mentions.iter().any(|m| matches!(m.1, Part::Headlight | Part::Taillight));
                for (i, p, pos) in mentions.iter().filter(|m| !lamps || matches!(m.1, Part::Headlight | Part::Taillight)) {
                    let d = dmgs[0].val.0;
                    let p = on_dashboard(lx, s, *i, wheel_part(*p, d, wheel_noise_part.or(named_tyre(lx, s, *i))), d);
                    push_unique(&mut new, fit_to_part(Finding::new(p, *pos, d), dmgs[0].val.1));
                }
            } else {
                // Several symptoms: each goes to the nearest part named before it (or the first part).
                for d in &dmgs {
                    // "a crack in the rear windshield": an English damage word points forward.
                    let forward = lx.clause.points_forward.iter().any(|w| s[d.end..].starts_with(w.as_str()));
                    let ahead = parts
                        .iter()
                        .find(|h| forward && h.start > d.end && h.start <= d.end + 12)
                        .and_then(|h| mentions.iter().find(|m| m.1 == h.val.0 || m.0 == h.start));
                    let m = ahead.or_else(|| mentions.iter().rev().find(|m| m.0 < d.start)).or(mentions.first());
                    if let Some(&(at, _, _)) = m {
                        // Expanded pairs share their mention's offset ("左边两个门…划到底了").
                        for (i, p, pos) in mentions.iter().filter(|x| x.0 == at) {
                            let dt = d.val.0;
                            let p = on_dashboard(lx, s, *i, wheel_part(*p, dt, wheel_noise_part), dt);
                            push_unique(&mut new, fit_to_part(Finding::new(p, *pos, dt), d.val.1));
                        }
                    }
                }
            }
            self.orphan = None;
        } else if new.is_empty() {
            let unplaced = mentions.first().and_then(|m| {
                let pos = m.2?;
                // "底盘有咔咔的响声，听着是从左前轮传过来的": the wheel places what is behind it.
                let behind = |f: &Finding| m.1 == Part::Tire && matches!(f.part, Part::Suspension | Part::Brakes);
                self.res.findings.iter_mut().find(|f| (f.part == m.1 || behind(f)) && f.position.is_none()).map(|f| (f, pos))
            });
            if let Some((f, pos)) = unplaced {
                // "胎压灯亮了，显示右后轮胎压低": the side of an earlier finding.
                f.position = Some(pos);
            } else if let Some(m) = mentions.first() {
                // A part named alone: its symptom may follow in the next clause ("右后叶子板 就是
                // 后面那个翼子板": the same part again, less precisely, keeps its side).
                let keep = self.orphan.is_some_and(|o| o.0 == m.1 && refines(o.1, m.2));
                if !keep {
                    self.orphan = Some((m.1, m.2));
                }
            } else {
                let (lat, lon) = sides_in(lx, s, 0, s.len(), used);
                if let Some(pos) = compose(lat, lon) {
                    if let Some(o) = self.orphan.as_mut() {
                        if o.1.is_none() && !side_free(o.0) {
                            o.1 = Some(pos);
                        }
                    }
                    // "…，右边的": the side of the previous clause's findings.
                    let mut applied = false;
                    for f in self.res.findings.iter_mut().filter(|f| !side_free(f.part)) {
                        // "后面咚咚响 然后就是左后那边": a side that adds to the one said.
                        let ((la, lo), (fa, fo)) = (split(Some(pos)), split(f.position));
                        // Within the conventions: a bumper is front or rear, a lamp or mirror a side.
                        let (la, lo) = match f.part {
                            Part::Bumper => (None, lo),
                            Part::Mirror | Part::Taillight | Part::Headlight => (la, None),
                            _ => (la, lo),
                        };
                        let agree = fa.is_none() || la.is_none() || fa == la;
                        let merged = compose(la.or(fa), lo.or(fo)).filter(|_| agree && (fo.is_none() || lo.is_none() || fo == lo));
                        if merged.is_some() && (f.position.is_none() || refines(merged, f.position)) {
                            f.position = merged;
                            applied = true;
                        }
                    }
                    if !applied {
                        self.res.loose.side_only = Some(pos);
                    }
                }
            }
        }
        (mentions, new)
    }

    /// Records the clause's findings, then the primer and the situation said in it: a clause's
    /// are its own findings' (else those of the parts it names, else the previous clause's).
    fn commit(&mut self, s: &str, mentions: &[Mention], new: Vec<Finding>) {
        let lx = self.lx;
        if let Some(f) = new.last() {
            self.prev = Some((f.part, f.position));
        }
        let new_keys: Vec<(Part, Option<Position>, DamageType)> = new.iter().map(|f| (f.part, f.position, f.damage_type)).collect();
        for f in new {
            push_unique(&mut self.res.findings, f);
        }
        // "右前门那道挺深露底漆了，前杠就表面": the primer said in a clause is that clause's
        // findings' (else those of the parts it names, else the previous clause's; "都", all).
        let key = |f: &Finding| (f.part, f.position, f.damage_type);
        let here: Vec<(Part, Option<Position>, DamageType)> = if new_keys.is_empty() {
            self.res
                .findings
                .iter()
                .filter(|f| mentions.iter().any(|m| m.1 == f.part && (m.2.is_none() || m.2 == f.position)))
                .map(key)
                .collect()
        } else {
            new_keys
        };
        if let Some(b) = primer(lx, s) {
            let keys: Vec<_> = if lx.clause.all_of.iter().any(|w| s.contains(w.as_str())) {
                self.res.findings.iter().map(key).collect()
            } else if here.is_empty() {
                self.last_here.clone()
            } else {
                here.clone()
            };
            // "凹进去一大块，上面还有道划痕露白了": the primer shows in the scratch, not the dent.
            let scratched = keys.iter().any(|k| matches!(k.2, DamageType::Scratch | DamageType::PaintDamage));
            for f in self.res.findings.iter_mut().filter(|f| keys.contains(&key(f)) && shows_primer(f)) {
                if !(b && scratched && f.damage_type == DamageType::Dent) {
                    f.primer_visible.get_or_insert(b);
                    self.primer_placed = true;
                }
            }
        }
        // "高速上方向盘抖，过坑的时候底盘还咚咚响": a clause's situation is its own findings'; a
        // clause going on about the same part keeps the last one ("倒车入库的时候右后门蹭到墙了，
        // 掉了一大块漆"); one said where nothing is found is for the rest ("倒车的时候撞到柱子，…").
        let when = occurs_when(lx, s).or_else(|| if mentions.is_empty() { self.last_when.clone() } else { None });
        match &when {
            Some(w) if !here.is_empty() => {
                for f in self.res.findings.iter_mut().filter(|f| here.contains(&key(f)) && f.occurs_when.is_none()) {
                    f.occurs_when = Some(w.clone());
                }
            }
            Some(w) => {
                self.pending_when.get_or_insert_with(|| w.clone());
            }
            None => {}
        }
        if !here.is_empty() {
            self.last_when = when;
        }
        // "两个门都有划痕，应该是同一次刮的，漆没破": a clause naming no part keeps the earlier ones.
        if !here.is_empty() && (!mentions.is_empty() || self.last_here.is_empty()) {
            self.last_here = here;
        }
    }

    /// After the last clause: drops what other findings already say, a part said to be fine, a
    /// false alarm; a part named alone becomes unknown damage; the loose facts fill the findings.
    fn finish(mut self, scraped_off: bool) -> LexResult {
        let lx = self.lx;
        self.drop_said_again(scraped_off);
        // "前门是好的", "左后的胎是好的": a part the customer says is fine.
        self.res.findings.retain(|f| {
            !self.fine.iter().any(|(p, pos)| *p == f.part && pos.is_some() && (*pos == f.position || refines(f.position, *pos)))
        });
        // "没漏油，…是空调滴的水，虚惊一场".
        if lx.clause.false_alarm.iter().any(|w| self.norm.contains(w.as_str())) {
            self.res.findings.clear();
        }
        if let Some((p, pos)) = self.orphan {
            // A part with no symptom word at all ("车门有点问题"): unknown damage; but a question
            // about a price or a booking names a part without a problem.
            if self.res.findings.is_empty() && !self.denied && !lx.not_a_problem.iter().any(|w| self.norm.contains(w.as_str())) {
                self.res.findings.push(Finding::new(p, pos, DamageType::Other));
                self.res.unsure = true;
            }
        }
        if self.res.findings.iter().any(|f| f.part == Part::Other) {
            self.res.unsure = true;
        }
        self.spread_facts()
    }

    /// "被树枝刮了一下，副驾两个门都有划痕": a damage word with no part of its own told how it
    /// happened; a finding another says more precisely; the scrape that took the paint off.
    fn drop_said_again(&mut self, scraped_off: bool) {
        if self.res.findings.iter().any(|f| f.part != Part::Other) {
            // A car short of power ("加速没劲") stays: it is a symptom of its own, not how damage
            // happened; so does a light whose system is not named, unless a named one is that light.
            let named_light = self.res.findings.iter().any(|f| f.part != Part::Other && f.damage_type == DamageType::WarningLight);
            self.res.findings.retain(|f| {
                f.part != Part::Other
                    || f.position.is_some()
                    || f.damage_type == DamageType::Other
                    || (f.damage_type == DamageType::WarningLight && !named_light)
            });
        }
        let all = self.res.findings.clone();
        self.res.findings.retain(|f| !all.iter().any(|g| said_by(g, f)));
        // "被电动车蹭了，刮掉一块漆": the scrape that took the paint off is that paint damage.
        if scraped_off {
            let all = self.res.findings.clone();
            let off = |f: &Finding| {
                all.iter().any(|g| {
                    g.part == f.part
                        && g.damage_type == DamageType::PaintDamage
                        && (g.position == f.position || refines(g.position, f.position) || refines(f.position, g.position))
                })
            };
            self.res.findings.retain(|f| f.damage_type != DamageType::Scratch || !off(f));
        }
    }

    /// The situations and the facts said loose go to the findings.
    fn spread_facts(self) -> LexResult {
        let mut res = self.res;
        let mut loose = res.loose.clone();
        if self.primer_placed {
            loose.primer_visible = None;
            loose.paint_broken = None;
        }
        // Situations were placed clause by clause above; one said in a clause with no finding of its
        // own goes to the rest. When no clause placed one ("过减速带的时候底盘咚咚响，左前轮那块响得
        // 最厉害": the finding was refined later), the message's situation is its symptoms'.
        for f in res.findings.iter_mut().filter(|f| f.occurs_when.is_none()) {
            f.occurs_when = self.pending_when.clone();
        }
        if res.findings.iter().all(|f| f.occurs_when.is_none()) {
            use DamageType::*;
            for f in res.findings.iter_mut().filter(|f| matches!(f.damage_type, AbnormalNoise | Vibration | NotWorking | Leak | Other)) {
                f.occurs_when = loose.occurs_when.clone();
            }
        }
        loose.occurs_when = None;
        for f in res.findings.iter_mut() {
            apply_loose(f, &loose);
        }
        res
    }
}

/// "右边两个门" / "前后门" / "四个门", "两侧后视镜", "右边两个轮毂": a part said for a pair or
/// all four becomes one mention per place; the same part said twice is one mention.
fn expand_pairs(lx: &Lexicon, s: &str, mentions: Vec<Mention>) -> Vec<Mention> {
    let has = |words: &[String]| words.iter().any(|w| s.contains(w.as_str()));
    let two_doors = pair_of_doors().is_match(s) || has(&lx.clause.both_doors);
    let four_doors = has(&lx.clause.all_doors);
    // "两侧后视镜", "左右两边前翼子板": the part on both sides (not bare 左右: "30公分左右").
    let both_sides = has(&lx.clause.both_sides);
    let both_sides = both_sides || pair_of_lamps().is_match(s);
    let front_and_back = s.contains("前后");
    let two_wheels = front_and_back || has(&lx.clause.two_wheels);
    let mut expanded = Vec::new();
    for (i, p, pos) in mentions {
        if p == Part::Door && four_doors {
            for q in [Position::LeftFront, Position::RightFront, Position::LeftRear, Position::RightRear] {
                expanded.push((i, p, Some(q)));
            }
        } else if p == Part::Door && two_doors {
            // A side named ("乘客侧两个门", "左边前后门") means its front and rear door;
            // otherwise "两个前门" / "两个后门" are the pair across.
            let (a, b) = match split(pos) {
                (Some(Lat::R), _) => (Position::RightFront, Position::RightRear),
                (Some(Lat::L), _) | (None, None) => (Position::LeftFront, Position::LeftRear),
                (None, Some(Lon::F)) => (Position::LeftFront, Position::RightFront),
                (None, Some(Lon::B)) => (Position::LeftRear, Position::RightRear),
            };
            expanded.push((i, p, Some(a)));
            expanded.push((i, p, Some(b)));
        } else if front_and_back && matches!(p, Part::Fender | Part::QuarterPanel) && split(pos).0.is_some() {
            // "右边前后叶子板": the front wing and the rear one.
            let lat = split(pos).0;
            expanded.push((i, Part::Fender, compose(lat, Some(Lon::F))));
            expanded.push((i, Part::QuarterPanel, compose(lat, Some(Lon::B))));
        } else if both_sides && p != Part::Door && p != Part::Bumper && !side_free(p) {
            let lon = split(pos).1;
            expanded.push((i, p, compose(Some(Lat::L), lon)));
            expanded.push((i, p, compose(Some(Lat::R), lon)));
        } else if two_wheels && matches!(p, Part::WheelRim | Part::Tire) && pos.is_some() {
            // "右边两个轮毂": the front and rear wheel of that side; "both front wheels": across.
            let (a, b) = match split(pos) {
                (Some(la), lo) if lo.is_none() || front_and_back => (compose(Some(la), Some(Lon::F)), compose(Some(la), Some(Lon::B))),
                (None, Some(lo)) => (compose(Some(Lat::L), Some(lo)), compose(Some(Lat::R), Some(lo))),
                _ => (pos, pos),
            };
            expanded.push((i, p, a));
            expanded.push((i, p, b));
        } else {
            expanded.push((i, p, pos));
        }
    }
    // Deduplicate same part+position within a clause ("门…车门").
    let mut mentions: Vec<(usize, Part, Option<Position>)> = Vec::new();
    for m in expanded {
        if !mentions.iter().any(|x| x.1 == m.1 && x.2 == m.2) {
            mentions.push(m);
        }
    }
    // The same part once with a side and once without is one part ("左后轮…胎").
    let sided: Vec<Part> = mentions.iter().filter(|m| m.2.is_some()).map(|m| m.1).collect();
    mentions.retain(|m| m.2.is_some() || !sided.contains(&m.1));
    mentions
}

//! The repair plan: deterministic from findings + knowledge base + catalogue, never from the model.
//!
//! Owns line items (labour: operation, hours, rate, amount; parts: OEM or aftermarket), totals,
//! the duration in days, a price range when a finding's severity is still uncertain, bookable
//! slots (bays and opening hours minus the booked work the caller passes in), and the check that
//! keeps the model's customer-facing explanation honest: any number in it that is not in the
//! plan means the template text is used instead.

use chrono::{Datelike, Duration as ChronoDuration, NaiveDateTime, NaiveTime, Timelike};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Operation, Severity, StoreRates};
use crate::domain::vocab::{DamageType, Finding, Lang, Position};
use crate::llm::prompts::Templates;
use crate::llm::{ChatMessage, GenParams, Sampling, TextGen};

#[derive(Debug, thiserror::Error)]
pub enum EstimateError {
    #[error("no findings to plan")]
    NoFindings,
    #[error("template: {0}")]
    Template(#[from] crate::llm::prompts::TemplateError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartsChoice {
    Oem,
    Aftermarket,
}

/// Work already booked in the store's bays (one entry per car).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
}

#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    pub findings: &'a [Finding],
    pub store_id: &'a str,
    pub parts_choice: PartsChoice,
    pub now: NaiveDateTime,
    pub booked: &'a [Booking],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabourLine {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub position: Option<Position>,
    pub hours: f64,
    pub rate: f64,
    pub materials: f64,
    pub amount: f64,
    /// Index of the finding this line repairs.
    pub finding: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartLine {
    pub part_no: String,
    pub name_zh: String,
    pub name_en: String,
    pub qty: u32,
    pub oem_cny: f64,
    pub aftermarket_cny: Option<f64>,
    pub chosen: PartsChoice,
    pub amount: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairPlan {
    pub currency: String,
    pub labour: Vec<LabourLine>,
    pub parts: Vec<PartLine>,
    pub labour_total: f64,
    pub parts_total: f64,
    pub total: f64,
    /// (lowest, highest) when a finding's severity is not known yet.
    pub range: Option<(f64, f64)>,
    pub hours: f64,
    pub days: u32,
    pub slots: Vec<Slot>,
    /// Findings whose severity is uncertain (priced at the worse case).
    pub uncertain: Vec<usize>,
    /// Findings no operation matched: a general inspection is planned and a person must look.
    pub needs_review: Vec<usize>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Severity from the facts; `None` when the facts do not decide it yet.
pub fn severity(f: &Finding) -> Option<Severity> {
    match f.damage_type {
        DamageType::Scratch => f.primer_visible.map(|p| if p { Severity::Deep } else { Severity::Light }),
        DamageType::Dent => match f.facts.get("paint_broken").map(String::as_str) {
            Some("true") => Some(Severity::Deep),
            Some("false") => Some(Severity::Light),
            _ => None,
        },
        DamageType::Crack => f.length_cm.map(|l| if l <= 15.0 { Severity::Light } else { Severity::Deep }),
        DamageType::PaintDamage => Some(Severity::Moderate),
        _ => Some(Severity::Any),
    }
}

fn ops_for<'c>(cat: &'c Catalog, f: &Finding, sev: Severity) -> Vec<&'c Operation> {
    // Symptoms go through the knowledge base first (fault → cause → solution → operations).
    if let Some(fault) = cat.fault_for(f.part, f.damage_type, f.occurs_when.as_deref()) {
        let v: Vec<&Operation> = fault.operations.iter().filter_map(|c| cat.operation(c)).collect();
        if !v.is_empty() {
            return v;
        }
    }
    let v: Vec<&Operation> = cat.operations.iter().filter(|o| o.applies(f.part, f.damage_type, sev)).collect();
    if !v.is_empty() || sev != Severity::Any {
        return v;
    }
    // Mechanical symptom with no specific operation: the part's diagnosis.
    cat.operations
        .iter()
        .filter(|o| o.code.starts_with("DG-") && o.parts.contains(&f.part) && o.damage.contains(&f.damage_type))
        .take(1)
        .collect()
}

struct Lines {
    labour: Vec<LabourLine>,
    parts: Vec<PartLine>,
    needs_review: Vec<usize>,
}

fn lines_for(cat: &Catalog, store: &StoreRates, findings: &[Finding], sevs: &[Severity], choice: PartsChoice) -> Lines {
    let mut out = Lines { labour: Vec::new(), parts: Vec::new(), needs_review: Vec::new() };
    for (i, f) in findings.iter().enumerate() {
        let mut ops = ops_for(cat, f, sevs[i]);
        if ops.is_empty() {
            out.needs_review.push(i);
            ops = cat.operation("DG-GENERAL").into_iter().collect();
        }
        for op in ops {
            if out.labour.iter().any(|l| l.code == op.code && l.position == f.position) {
                continue;
            }
            let rate = store.rate(op.labour_class);
            out.labour.push(LabourLine {
                code: op.code.clone(),
                name_zh: op.name_zh.clone(),
                name_en: op.name_en.clone(),
                position: f.position,
                hours: op.hours,
                rate,
                materials: op.materials_cny,
                amount: round2(op.hours * rate + op.materials_cny),
                finding: i,
            });
            for prefix in &op.parts_needed {
                // Unknown side: the first variant is priced (both sides cost the same here).
                if let Some(p) = cat.resolve_parts(prefix, f.position).first() {
                    if out.parts.iter().any(|x| x.part_no == p.part_no) {
                        continue;
                    }
                    let chosen = match (choice, p.aftermarket_cny) {
                        (PartsChoice::Aftermarket, Some(_)) => PartsChoice::Aftermarket,
                        _ => PartsChoice::Oem,
                    };
                    let unit = if chosen == PartsChoice::Aftermarket { p.aftermarket_cny.unwrap_or(p.oem_cny) } else { p.oem_cny };
                    out.parts.push(PartLine {
                        part_no: p.part_no.clone(),
                        name_zh: p.name_zh.clone(),
                        name_en: p.name_en.clone(),
                        qty: 1,
                        oem_cny: p.oem_cny,
                        aftermarket_cny: p.aftermarket_cny,
                        chosen,
                        amount: unit,
                    });
                }
            }
        }
    }
    out
}

fn total_of(l: &Lines) -> f64 {
    round2(l.labour.iter().map(|x| x.amount).sum::<f64>() + l.parts.iter().map(|x| x.amount).sum::<f64>())
}

pub fn plan(cat: &Catalog, req: &PlanRequest<'_>) -> Result<RepairPlan, EstimateError> {
    if req.findings.is_empty() {
        return Err(EstimateError::NoFindings);
    }
    let store = cat.store(req.store_id);
    let known: Vec<Option<Severity>> = req.findings.iter().map(severity).collect();
    let uncertain: Vec<usize> = known.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| i).collect();
    // Uncertain findings are planned at the worse case; the range shows the better one.
    let high: Vec<Severity> = known.iter().map(|s| s.unwrap_or(Severity::Deep)).collect();
    let lines = lines_for(cat, store, req.findings, &high, req.parts_choice);
    let total = total_of(&lines);
    let range = if uncertain.is_empty() {
        None
    } else {
        let low: Vec<Severity> = known.iter().map(|s| s.unwrap_or(Severity::Light)).collect();
        let lo = total_of(&lines_for(cat, store, req.findings, &low, req.parts_choice));
        Some((lo.min(total), lo.max(total)))
    };
    let hours = round2(lines.labour.iter().map(|l| l.hours).sum());
    let days = ((hours / 8.0).ceil() as u32).max(1);
    let slots = free_slots(store, hours, req.now, req.booked);
    Ok(RepairPlan {
        currency: store.currency.clone(),
        labour_total: round2(lines.labour.iter().map(|x| x.amount).sum()),
        parts_total: round2(lines.parts.iter().map(|x| x.amount).sum()),
        total,
        range,
        hours,
        days,
        slots,
        uncertain,
        needs_review: lines.needs_review,
        labour: lines.labour,
        parts: lines.parts,
    })
}

/// The job's time in the bay on its first day: from `start` for `hours`, at most until closing.
pub fn job_window(store: &StoreRates, start: NaiveDateTime, hours: f64) -> Slot {
    let close = start.date().and_time(store.close);
    Slot { start, end: (start + ChronoDuration::minutes((hours * 60.0).round() as i64)).min(close) }
}

/// How many booked jobs overlap `slot` (the capacity rule: fewer than `bays` means it is free).
pub fn overlapping(slot: &Slot, booked: &[Booking]) -> usize {
    booked.iter().filter(|b| b.start < slot.end && b.end > slot.start).count()
}

/// Every free slot start from the next open day for `days` days: open days only (weekly closing
/// days and the calendar's closures are never offered), each start of `slot_starts`, free when
/// fewer bookings than bays overlap the first day of the job. Same-day work is arranged by a person.
pub fn open_slots(store: &StoreRates, hours: f64, now: NaiveDateTime, booked: &[Booking], days: u32) -> Vec<Slot> {
    let mut out = Vec::new();
    for d in 1..=i64::from(days) {
        let date = now.date() + ChronoDuration::days(d);
        if !store.is_open(date) {
            continue;
        }
        for t in &store.slot_starts {
            let s = job_window(store, date.and_time(*t), hours);
            if overlapping(&s, booked) < store.bays as usize {
                out.push(s);
            }
        }
    }
    out
}

/// The next free morning slot and the next free afternoon slot (what an estimate offers).
pub fn free_slots(store: &StoreRates, hours: f64, now: NaiveDateTime, booked: &[Booking]) -> Vec<Slot> {
    let noon = NaiveTime::from_hms_opt(12, 0, 0).unwrap_or(store.open);
    let all = open_slots(store, hours, now, booked, 60);
    let morning = all.iter().find(|s| s.start.time() < noon);
    let afternoon = all.iter().find(|s| s.start.time() >= noon);
    let mut v: Vec<Slot> = morning.into_iter().chain(afternoon).cloned().collect();
    v.sort_by_key(|s| s.start);
    v
}

// ---------------------------------------------------------------------------------------------
// Customer-facing explanation.

/// Every number a truthful explanation may contain.
pub fn allowed_numbers(p: &RepairPlan) -> Vec<f64> {
    let mut v = vec![p.total, p.labour_total, p.parts_total, p.hours, p.days as f64];
    if let Some((a, b)) = p.range {
        v.extend([a, b]);
    }
    for l in &p.labour {
        v.extend([l.hours, l.rate, l.materials, l.amount]);
    }
    for l in &p.parts {
        v.extend([l.oem_cny, l.amount, l.qty as f64]);
        v.extend(l.aftermarket_cny);
    }
    for s in &p.slots {
        for t in [s.start, s.end] {
            v.extend([t.year() as f64, t.month() as f64, t.day() as f64, t.hour() as f64, t.minute() as f64]);
        }
    }
    v.push(p.labour.len() as f64);
    v
}

/// Numbers written in `text`: Arabic (with thousands separators and decimals) and Chinese.
pub fn numbers_in(text: &str) -> Vec<f64> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == ',' || chars[i] == '，') {
                // A comma followed by three digits is a thousands separator; otherwise it ends the number.
                if matches!(chars[i], ',' | '，') {
                    let three = chars.get(i + 1..i + 4).map(|w| w.iter().all(|c| c.is_ascii_digit())).unwrap_or(false);
                    if !three {
                        break;
                    }
                } else {
                    s.push(chars[i]);
                }
                i += 1;
            }
            if let Ok(v) = s.trim_end_matches('.').parse::<f64>() {
                out.push(v);
            }
        } else if is_cn_num(chars[i]) {
            let st = i;
            while i < chars.len() && is_cn_num(chars[i]) {
                i += 1;
            }
            let run: String = chars[st..i].iter().collect();
            // A lone 一 inside words like 一下/一起 is not a claim; 两/一 before a unit word is.
            if run == "一" && !chars.get(i).map(|c| "元块天小个次点".contains(*c)).unwrap_or(false) {
                continue;
            }
            if let Some(v) = cn_value(&run) {
                out.push(v);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Numeral characters an explanation's numbers are made of (几 and 半 are never a claim).
fn is_cn_num(c: char) -> bool {
    c != '几' && c != '半' && crate::domain::numerals::is_numeral(c)
}

fn cn_value(s: &str) -> Option<f64> {
    crate::domain::numerals::value(s)
}

/// What a number in an explanation claims to be, from the words around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumKind {
    Money,
    Days,
    Hours,
    Other,
}

/// Numbers in `text` with their kind (¥…/…元 money, …天 days, …小时/h hours).
pub fn typed_numbers(text: &str) -> Vec<(f64, NumKind)> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut k = 0;
    let vals = numbers_in(text);
    // Walk the text again to find where each number sits (same scan order as numbers_in).
    while i < chars.len() && k < vals.len() {
        let c = chars[i];
        if c.is_ascii_digit() || is_cn_num(c) {
            let st = i;
            let ascii = c.is_ascii_digit();
            while i < chars.len()
                && (if ascii { chars[i].is_ascii_digit() || matches!(chars[i], '.' | ',' | '，') } else { is_cn_num(chars[i]) })
            {
                i += 1;
            }
            let before: String = chars[st.saturating_sub(3)..st].iter().collect::<String>().to_lowercase();
            let after: String = chars[i..chars.len().min(i + 6)].iter().collect::<String>().to_lowercase();
            let after = after.trim_start();
            if !ascii && chars[st..i].iter().collect::<String>() == "一" && !after.starts_with(|c| "元块天小个次点".contains(c)) {
                continue;
            }
            let kind = if before.ends_with('¥')
                || before.ends_with('￥')
                || before.contains("rmb")
                || after.starts_with('元')
                || after.starts_with('块')
                || after.starts_with("yuan")
                || after.starts_with("rmb")
                || after.starts_with("cny")
            {
                NumKind::Money
            } else if after.starts_with('天') || after.starts_with("day") || after.starts_with("个工作日") {
                NumKind::Days
            } else if after.starts_with("小时") || after.starts_with("个小时") || after.starts_with('h') || after.starts_with("hour") {
                NumKind::Hours
            } else {
                NumKind::Other
            };
            out.push((vals[k], kind));
            k += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Words that promise what the plan does not (discounts, free work): refused outright.
const PROMISES: &[&str] = &["免费", "打折", "折扣", "优惠", "八折", "九折", "减免", "退款", "free", "discount", "refund", "% off"];

/// Rejects a text with any number that is not in the plan (invented prices, times, discounts),
/// or a number used as the wrong kind ("1元" when only the duration is 1).
pub fn check_explanation(text: &str, plan: &RepairPlan) -> Result<(), String> {
    let lower = text.to_lowercase();
    if let Some(w) = PROMISES.iter().find(|w| lower.contains(*w)) {
        return Err(format!("promises `{w}`"));
    }
    let mut money = vec![plan.total, plan.labour_total, plan.parts_total];
    if let Some((a, b)) = plan.range {
        money.extend([a, b]);
    }
    for l in &plan.labour {
        money.extend([l.rate, l.materials, l.amount]);
    }
    for l in &plan.parts {
        money.extend([l.oem_cny, l.amount]);
        money.extend(l.aftermarket_cny);
    }
    let mut hours: Vec<f64> = plan.labour.iter().map(|l| l.hours).collect();
    hours.push(plan.hours);
    let all = allowed_numbers(plan);
    let has = |set: &[f64], n: f64| set.iter().any(|a| (a - n).abs() < 0.005);
    for (n, kind) in typed_numbers(text) {
        let ok = match kind {
            NumKind::Money => has(&money, n),
            NumKind::Days => (n - plan.days as f64).abs() < 0.005,
            NumKind::Hours => has(&hours, n) || has(&all, n) && n <= 23.0 && !has(&money, n),
            NumKind::Other => has(&all, n),
        };
        if !ok {
            return Err(format!("{kind:?} number {n} is not in the plan"));
        }
    }
    Ok(())
}

/// ¥ amounts as the seed writes them: 1300 → "1,300", 12.5 → "12.50".
pub fn fmt_money(x: f64) -> String {
    if (x - x.round()).abs() < 0.005 {
        let n = x.round() as i64;
        // 1300 → "1,300" like the seed.
        let s = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            format!("-{out}")
        } else {
            out
        }
    } else {
        format!("{x:.2}")
    }
}

fn fmt_hours(h: f64) -> String {
    if (h - h.round()).abs() < 1e-9 {
        format!("{}", h as i64)
    } else {
        format!("{h}")
    }
}

/// The plan as text from the template (always truthful).
pub fn template_explanation(p: &RepairPlan, t: &Templates, lang: Lang) -> Result<String, EstimateError> {
    let items: Vec<String> = p
        .labour
        .iter()
        .map(|l| {
            let pos = match lang {
                Lang::Zh => l.position.map(|x| x.name_zh()).unwrap_or(""),
                Lang::En => l.position.map(|x| x.name_en()).unwrap_or(""),
            };
            match lang {
                Lang::Zh => format!("{pos}{} {}小时 ¥{}", l.name_zh, fmt_hours(l.hours), fmt_money(l.amount)),
                Lang::En => format!(
                    "{}{}{} {} h ¥{}",
                    pos,
                    if pos.is_empty() { "" } else { " " },
                    l.name_en.to_lowercase(),
                    fmt_hours(l.hours),
                    fmt_money(l.amount)
                ),
            }
        })
        .chain(p.parts.iter().map(|x| match lang {
            Lang::Zh => format!("{} ¥{}", x.name_zh, fmt_money(x.amount)),
            Lang::En => format!("{} ¥{}", x.name_en, fmt_money(x.amount)),
        }))
        .collect();
    let sep = if lang == Lang::Zh { "；" } else { "; " };
    let slots: Vec<String> = p.slots.iter().map(|s| s.start.format("%m-%d %H:%M").to_string()).collect();
    let or = if lang == Lang::Zh { " 或 " } else { " or " };
    Ok(t.render(
        "plan.explain",
        lang,
        &[("items", &items.join(sep)), ("total", &fmt_money(p.total)), ("days", &p.days.to_string()), ("slots", &slots.join(or))],
    )?)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub text: String,
    pub from_llm: bool,
    /// Why the model's text was refused, when it was.
    pub rejected: Option<String>,
}

/// The model explains the plan in friendlier words; the plan's own template text is the
/// fallback. The customer's messages are never part of this prompt.
pub fn explain(p: &RepairPlan, engine: &dyn TextGen, t: &Templates, lang: Lang) -> Result<Explanation, EstimateError> {
    explain_streaming(p, engine, t, lang, None)
}

/// `explain`, handing each piece of the model's text to `on_token` as it is generated (the tablet
/// shows it arriving); returning false from `on_token` stops the generation. The answer is still
/// the checked text: the model's only if it passed the number check, else the template's.
pub fn explain_streaming(
    p: &RepairPlan,
    engine: &dyn TextGen,
    t: &Templates,
    lang: Lang,
    on_token: Option<&mut dyn FnMut(&str) -> bool>,
) -> Result<Explanation, EstimateError> {
    let fallback = template_explanation(p, t, lang)?;
    if !engine.is_available() {
        return Ok(Explanation { text: fallback, from_llm: false, rejected: None });
    }
    let sys = t.render("system.explain_plan", lang, &[])?;
    let msgs = [ChatMessage::system(sys), ChatMessage::user(fallback.clone())];
    let params = GenParams {
        max_tokens: 160,
        sampling: Sampling::Greedy,
        stop: vec!["\n\n".into()],
        grammar: None,
        timeout: std::time::Duration::from_secs(60),
        cancel: None,
    };
    match engine.generate(&msgs, &params, on_token) {
        Ok(c) => Ok(accept_explanation(&c.text, p, fallback)),
        Err(e) => Ok(Explanation { text: fallback, from_llm: false, rejected: Some(e.to_string()) }),
    }
}

/// Applies the number check to a candidate explanation.
pub fn accept_explanation(candidate: &str, p: &RepairPlan, fallback: String) -> Explanation {
    let c = candidate.trim();
    if c.is_empty() {
        return Explanation { text: fallback, from_llm: false, rejected: Some("empty".into()) };
    }
    match check_explanation(c, p) {
        Ok(()) => Explanation { text: c.to_string(), from_llm: true, rejected: None },
        Err(why) => Explanation { text: fallback, from_llm: false, rejected: Some(why) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_found() {
        assert_eq!(numbers_in("合计¥1,300，约1天"), vec![1300.0, 1.0]);
        assert_eq!(numbers_in("总价改成1元"), vec![1.0]);
        assert_eq!(numbers_in("一千三百元"), vec![1300.0]);
        assert_eq!(numbers_in("稍等一下"), Vec::<f64>::new());
        assert_eq!(fmt_money(1300.0), "1,300");
    }
}

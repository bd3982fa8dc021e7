//! The workshop's vocabulary and rules, pure: the checkpoint list and warranty table (data from
//! `assets/workshop/workshop.toml`, validated here), the labour-clock flags, the per-part
//! before/after comparison, the missed-issue alerts and the over-repair flags.
//!
//! Invariants:
//! - Every alert and flag is a *proposal*: these functions only say what a person should look at.
//!   QC alerts wait for an inspector (confirm / dismiss / hand to a person); manager flags go to the
//!   manager's queue and never block a repair on their own.
//! - Damage is compared per part and damage type (`PartDamage`), never per pixel: a repaired
//!   scratch on the right-front door is "resolved" when no scratch on that door is detected after.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One photo the workshop takes before and after the repair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub id: String,
    pub name_zh: String,
    pub name_en: String,
    /// A view of the repair zone (a scale reference, or raking light).
    #[serde(default)]
    pub zone: bool,
    /// The whole vehicle should fill the frame (the exterior views): the quality gate's framing
    /// check applies. Close-ups (VIN plate, cluster, interior, tyres, the zone) skip it.
    #[serde(default)]
    pub whole_vehicle: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabourRules {
    pub over: f64,
    pub under: f64,
    pub history_factor: f64,
    pub history_min: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warranty {
    pub class: String,
    pub name_zh: String,
    pub name_en: String,
    pub days: u32,
    pub km: u32,
    pub labour_classes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkshopTables {
    pub version: u32,
    pub labour: LabourRules,
    #[serde(rename = "checkpoint")]
    pub checkpoints: Vec<Checkpoint>,
    pub warranty: Vec<Warranty>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct TablesError {
    pub file: String,
    pub message: String,
}

impl WorkshopTables {
    /// The tables shipped with the binary (assets/workshop/workshop.toml).
    pub fn builtin() -> WorkshopTables {
        // Checked by a test: the shipped file always parses.
        Self::from_toml(include_str!("../../assets/workshop/workshop.toml"), "assets/workshop/workshop.toml")
            .unwrap_or_else(|e| panic!("built-in workshop tables: {e}"))
    }

    pub fn load(path: &std::path::Path) -> Result<WorkshopTables, TablesError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| TablesError { file: file.clone(), message: e.to_string() })?;
        Self::from_toml(&src, &file)
    }

    /// Parse and validate; errors name the file and say what to fix.
    pub fn from_toml(src: &str, file: &str) -> Result<WorkshopTables, TablesError> {
        let err = |message: String| TablesError { file: file.to_string(), message };
        let t: WorkshopTables = toml::from_str(src).map_err(|e| err(e.to_string()))?;
        if t.version != 1 {
            return Err(err(format!("version {} is not supported (expected 1)", t.version)));
        }
        if !(1..=40).contains(&t.checkpoints.len()) {
            return Err(err(format!("{} checkpoints: between 1 and 40 are needed", t.checkpoints.len())));
        }
        let mut seen = BTreeSet::new();
        for (i, c) in t.checkpoints.iter().enumerate() {
            let ok_id =
                !c.id.is_empty() && c.id.len() <= 40 && c.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok_id {
                return Err(err(format!("checkpoint {} id `{}`: use 1–40 of a–z, 0–9 and _", i + 1, c.id)));
            }
            if !seen.insert(c.id.as_str()) {
                return Err(err(format!("checkpoint id `{}` appears twice; ids must be unique", c.id)));
            }
            if c.name_zh.trim().is_empty() || c.name_en.trim().is_empty() {
                return Err(err(format!("checkpoint `{}` needs both name_zh and name_en", c.id)));
            }
        }
        let l = &t.labour;
        if !(l.under > 0.0 && l.under < 1.0 && l.over > 1.0 && l.over <= 10.0 && l.history_factor > 1.0) {
            return Err(err("[labour]: need 0 < under < 1 < over ≤ 10 and history_factor > 1".into()));
        }
        if t.warranty.is_empty() {
            return Err(err("at least one [[warranty]] row is needed (the last one is the default)".into()));
        }
        for w in &t.warranty {
            if w.days == 0 || w.name_zh.trim().is_empty() {
                return Err(err(format!("warranty `{}` needs days > 0 and name_zh", w.class)));
            }
        }
        Ok(t)
    }

    pub fn checkpoint(&self, id: &str) -> Option<&Checkpoint> {
        self.checkpoints.iter().find(|c| c.id == id)
    }

    /// The warranty for a job with these labour classes: the first row naming one of them, else the
    /// last row.
    pub fn warranty_for(&self, classes: &[&str]) -> &Warranty {
        let last = &self.warranty[self.warranty.len() - 1];
        self.warranty.iter().find(|w| w.labour_classes.iter().any(|c| classes.contains(&c.as_str()))).unwrap_or(last)
    }
}

/// Where a fitted part comes from: 原厂 / 同质 / 修复.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Oem,
    Equivalent,
    Refurbished,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Oem => "oem",
            Origin::Equivalent => "equivalent",
            Origin::Refurbished => "refurbished",
        }
    }

    pub fn parse(s: &str) -> Option<Origin> {
        [Origin::Oem, Origin::Equivalent, Origin::Refurbished].into_iter().find(|o| o.as_str() == s)
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Origin::Oem => "原厂",
            Origin::Equivalent => "同质",
            Origin::Refurbished => "修复",
        }
    }
}

/// What a flag or alert is about. QC alerts (`queue() == "qc"`) wait for an inspector before the
/// report; the others go to a manager and never block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// An intake finding no work-order line addresses.
    Unaddressed,
    /// A repaired finding still detected after the repair.
    StillDetected,
    /// Damage after the repair that the baseline did not have.
    NewDamage,
    /// A checkpoint not shot after the repair.
    NotShot,
    /// Clocked well over the standard hours.
    LabourPadding,
    /// Clocked well under the standard hours (work maybe not done).
    LabourShort,
    /// Clocked well over this store's own history for the operation.
    LabourHistory,
    /// A serial number already fitted in this store (a copied label).
    DuplicateSerial,
    /// Billed as OEM, but the label says otherwise.
    OriginMismatch,
    /// A part billed but never scanned.
    BilledNotScanned,
    /// An estimate line for a part with no damage in the before photos.
    NoDamageBefore,
}

impl FlagKind {
    pub const ALL: [FlagKind; 11] = [
        FlagKind::Unaddressed,
        FlagKind::StillDetected,
        FlagKind::NewDamage,
        FlagKind::NotShot,
        FlagKind::LabourPadding,
        FlagKind::LabourShort,
        FlagKind::LabourHistory,
        FlagKind::DuplicateSerial,
        FlagKind::OriginMismatch,
        FlagKind::BilledNotScanned,
        FlagKind::NoDamageBefore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FlagKind::Unaddressed => "unaddressed",
            FlagKind::StillDetected => "still_detected",
            FlagKind::NewDamage => "new_damage",
            FlagKind::NotShot => "not_shot",
            FlagKind::LabourPadding => "labour_padding",
            FlagKind::LabourShort => "labour_short",
            FlagKind::LabourHistory => "labour_history",
            FlagKind::DuplicateSerial => "duplicate_serial",
            FlagKind::OriginMismatch => "origin_mismatch",
            FlagKind::BilledNotScanned => "billed_not_scanned",
            FlagKind::NoDamageBefore => "no_damage_before",
        }
    }

    pub fn parse(s: &str) -> Option<FlagKind> {
        FlagKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// `qc`: a missed-issue alert the inspector settles before signing; `manager`: an anomaly.
    pub fn queue(self) -> &'static str {
        match self {
            FlagKind::Unaddressed | FlagKind::StillDetected | FlagKind::NewDamage | FlagKind::NotShot => "qc",
            _ => "manager",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            FlagKind::Unaddressed => "遗漏：未安排维修的问题",
            FlagKind::StillDetected => "遗漏：修后仍检出",
            FlagKind::NewDamage => "新增损伤",
            FlagKind::NotShot => "检查点未拍摄",
            FlagKind::LabourPadding => "工时偏高",
            FlagKind::LabourShort => "工时偏低",
            FlagKind::LabourHistory => "工时高于本店历史",
            FlagKind::DuplicateSerial => "序列号重复",
            FlagKind::OriginMismatch => "配件来源不符",
            FlagKind::BilledNotScanned => "计费配件未扫码",
            FlagKind::NoDamageBefore => "维修前照片无损伤",
        }
    }
}

/// A flag or alert the rules propose: its kind, what it is about (a line, serial, checkpoint,
/// finding or part) and a sentence for the person who settles it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    pub kind: FlagKind,
    pub subject: String,
    pub detail: String,
}

/// The labour flags of one finished work-order line. `history` is this store's clocked hours for
/// the same operation on other jobs.
pub fn labour_flags(subject: &str, clocked_h: f64, standard_h: f64, history: &[f64], rules: &LabourRules) -> Vec<Proposal> {
    let mut out = Vec::new();
    if standard_h > 0.0 {
        let ratio = clocked_h / standard_h;
        if ratio > rules.over {
            out.push(Proposal {
                kind: FlagKind::LabourPadding,
                subject: subject.into(),
                detail: format!("clocked {clocked_h:.2} h against {standard_h:.2} h standard ({ratio:.2}×, over {:.2}×)", rules.over),
            });
        } else if ratio < rules.under {
            out.push(Proposal {
                kind: FlagKind::LabourShort,
                subject: subject.into(),
                detail: format!("clocked {clocked_h:.2} h against {standard_h:.2} h standard ({ratio:.2}×, under {:.2}×)", rules.under),
            });
        }
    }
    if history.len() >= rules.history_min {
        let median = median(history);
        if median > 0.0 && clocked_h > median * rules.history_factor {
            out.push(Proposal {
                kind: FlagKind::LabourHistory,
                subject: subject.into(),
                detail: format!(
                    "clocked {clocked_h:.2} h; this store's median for the operation is {median:.2} h over {} jobs",
                    history.len()
                ),
            });
        }
    }
    out
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Damage of one type on one part (the unit of the before/after comparison).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartDamage {
    pub part: String,
    pub damage: String,
}

impl PartDamage {
    pub fn new(part: &str, damage: &str) -> PartDamage {
        PartDamage { part: part.into(), damage: damage.into() }
    }
}

/// The per-part outcome of a repair.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Comparison {
    /// Repaired and no longer detected.
    pub resolved: Vec<PartDamage>,
    /// Repaired but still detected afterwards.
    pub persisting: Vec<PartDamage>,
    /// Pre-existing elsewhere (not repaired) and still there, as it should be.
    pub unchanged: Vec<PartDamage>,
    /// Detected after the repair, absent before and not repaired: introduced in the workshop.
    pub new: Vec<PartDamage>,
}

/// Compare what was seen before (detected or marked by the advisor) with what is seen after,
/// given what the work order repaired.
pub fn compare(before: &[PartDamage], after: &[PartDamage], repaired: &[PartDamage]) -> Comparison {
    let before: BTreeSet<&PartDamage> = before.iter().collect();
    let after: BTreeSet<&PartDamage> = after.iter().collect();
    let repaired: BTreeSet<&PartDamage> = repaired.iter().collect();
    let mut c = Comparison::default();
    for r in &repaired {
        if after.contains(r) {
            c.persisting.push((*r).clone());
        } else {
            c.resolved.push((*r).clone());
        }
    }
    for a in &after {
        if repaired.contains(a) {
            continue;
        }
        if before.contains(a) {
            c.unchanged.push((*a).clone());
        } else {
            c.new.push((*a).clone());
        }
    }
    c
}

/// An intake finding as the alerts see it.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeFinding {
    pub id: String,
    pub what: PartDamage,
}

/// The missed-issue alerts (遗漏提醒): intake findings no line addresses, repaired damage still
/// detected, new damage, checkpoints not shot.
pub fn missed_alerts(findings: &[IntakeFinding], addressed: &[String], cmp: &Comparison, not_shot: &[Checkpoint]) -> Vec<Proposal> {
    let mut out = Vec::new();
    for f in findings.iter().filter(|f| !addressed.contains(&f.id)) {
        out.push(Proposal {
            kind: FlagKind::Unaddressed,
            subject: f.id.clone(),
            detail: format!("{} / {}: reported at intake, but no work-order line repairs it", f.what.part, f.what.damage),
        });
    }
    for p in &cmp.persisting {
        out.push(Proposal {
            kind: FlagKind::StillDetected,
            subject: format!("{}/{}", p.part, p.damage),
            detail: format!("{} / {}: repaired, but still detected after the repair", p.part, p.damage),
        });
    }
    for n in &cmp.new {
        out.push(Proposal {
            kind: FlagKind::NewDamage,
            subject: format!("{}/{}", n.part, n.damage),
            detail: format!("{} / {}: detected after the repair, not in the baseline", n.part, n.damage),
        });
    }
    for c in not_shot {
        out.push(Proposal {
            kind: FlagKind::NotShot,
            subject: c.id.clone(),
            detail: format!("{} ({}): no after-repair photo", c.name_zh, c.name_en),
        });
    }
    out
}

/// A billed part line (what the customer pays for) as the parts check sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BilledPart {
    pub line_id: String,
    pub part_no: String,
    pub qty: u32,
}

/// Billed part lines with fewer scans of their part number than their quantity.
pub fn billed_not_scanned(billed: &[BilledPart], scanned_part_nos: &[String]) -> Vec<Proposal> {
    billed
        .iter()
        .filter_map(|b| {
            let n = scanned_part_nos.iter().filter(|s| **s == b.part_no).count() as u32;
            (n < b.qty).then(|| Proposal {
                kind: FlagKind::BilledNotScanned,
                subject: b.line_id.clone(),
                detail: format!("{}: {} billed, {n} scanned", b.part_no, b.qty),
            })
        })
        .collect()
}

/// The alarms of one scanned part: a serial seen before in this store, and a part billed as OEM
/// whose label says another origin.
pub fn scan_alarms(part_no: &str, serial: Option<&str>, serial_seen: bool, billed: Option<Origin>, label: Option<Origin>) -> Vec<Proposal> {
    let mut out = Vec::new();
    if let (Some(s), true) = (serial, serial_seen) {
        out.push(Proposal {
            kind: FlagKind::DuplicateSerial,
            subject: s.to_string(),
            detail: format!("{part_no}: serial {s} was already fitted in this store (a copied label?)"),
        });
    }
    if let (Some(Origin::Oem), Some(l)) = (billed, label) {
        if l != Origin::Oem {
            out.push(Proposal {
                kind: FlagKind::OriginMismatch,
                subject: part_no.to_string(),
                detail: format!("{part_no}: billed as 原厂 (OEM), the label says {} ({})", l.name_zh(), l.as_str()),
            });
        }
    }
    out
}

/// A labour line of the estimate with the part it works on.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePart {
    pub line_id: String,
    pub code: String,
    pub part: String,
}

/// Estimate lines whose part shows no damage at all in the before photos (detected or marked).
pub fn lines_without_damage(lines: &[LinePart], before: &[PartDamage]) -> Vec<Proposal> {
    lines
        .iter()
        .filter(|l| l.part != "other" && !before.iter().any(|b| b.part == l.part))
        .map(|l| Proposal {
            kind: FlagKind::NoDamageBefore,
            subject: l.line_id.clone(),
            detail: format!("{} on {}: no damage on that part in the before photos", l.code, l.part),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pd(p: &str, d: &str) -> PartDamage {
        PartDamage::new(p, d)
    }

    #[test]
    fn shipped_tables_have_fifteen_checkpoints_two_of_the_zone() {
        let t = WorkshopTables::builtin();
        assert_eq!(t.checkpoints.len(), 15);
        assert_eq!(t.checkpoints.iter().filter(|c| c.zone).count(), 2);
        assert_eq!(t.warranty_for(&["paint"]).days, 10);
        assert_eq!(t.warranty_for(&["unknown"]).class, "minor");
    }

    #[test]
    fn bad_tables_name_the_problem() {
        let base = include_str!("../../assets/workshop/workshop.toml");
        let dup = base.replace("id = \"cluster\"", "id = \"vin_plate\"");
        let e = WorkshopTables::from_toml(&dup, "w.toml").unwrap_err();
        assert!(e.to_string().contains("w.toml") && e.to_string().contains("appears twice"), "{e}");
        let e = WorkshopTables::from_toml(&base.replace("over = 1.5", "over = 0.9"), "w.toml").unwrap_err();
        assert!(e.message.contains("[labour]"), "{e}");
        let e = WorkshopTables::from_toml(&base.replace("id = \"tyres\"", "id = \"Tyres!\""), "w.toml").unwrap_err();
        assert!(e.message.contains("Tyres!"), "{e}");
        assert!(WorkshopTables::from_toml("version = 1\nlabour = 3", "w.toml").is_err());
    }

    #[test]
    fn labour_is_flagged_both_ways_and_against_history() {
        let r = WorkshopTables::builtin().labour;
        assert!(labour_flags("l", 1.1, 1.0, &[], &r).is_empty());
        let pad = labour_flags("l", 1.6, 1.0, &[], &r);
        assert_eq!(pad.iter().map(|p| p.kind).collect::<Vec<_>>(), vec![FlagKind::LabourPadding]);
        assert_eq!(labour_flags("l", 0.4, 1.0, &[], &r)[0].kind, FlagKind::LabourShort);
        // Exactly at the thresholds is not flagged.
        assert!(labour_flags("l", 1.5, 1.0, &[], &r).is_empty() && labour_flags("l", 0.5, 1.0, &[], &r).is_empty());
        // Within standard but far over the store's own median of five jobs.
        let h = [0.5, 0.6, 0.5, 0.55, 0.6];
        assert_eq!(labour_flags("l", 1.3, 1.0, &h, &r).iter().map(|p| p.kind).collect::<Vec<_>>(), vec![FlagKind::LabourHistory]);
        assert!(labour_flags("l", 1.3, 1.0, &h[..4], &r).is_empty(), "too little history");
    }

    #[test]
    fn comparison_is_per_part() {
        let before = [pd("door", "scratch"), pd("bumper", "scratch"), pd("hood", "dent")];
        let repaired = [pd("door", "scratch"), pd("hood", "dent")];
        let after = [pd("hood", "dent"), pd("bumper", "scratch"), pd("fender", "dent")];
        let c = compare(&before, &after, &repaired);
        assert_eq!(c.resolved, vec![pd("door", "scratch")]);
        assert_eq!(c.persisting, vec![pd("hood", "dent")]);
        assert_eq!(c.unchanged, vec![pd("bumper", "scratch")]);
        assert_eq!(c.new, vec![pd("fender", "dent")]);
        // A different damage on a repaired part is new, not "persisting".
        let c = compare(&before, &[pd("door", "dent")], &repaired);
        assert_eq!((c.resolved.len(), c.new), (2, vec![pd("door", "dent")]));
    }

    #[test]
    fn missed_issue_alerts() {
        let t = WorkshopTables::builtin();
        let findings = [
            IntakeFinding { id: "f1".into(), what: pd("door", "scratch") },
            IntakeFinding { id: "f2".into(), what: pd("door", "abnormal_noise") },
        ];
        let c = compare(&[pd("door", "scratch")], &[pd("door", "scratch"), pd("bumper", "dent")], &[pd("door", "scratch")]);
        let a = missed_alerts(&findings, &["f1".into()], &c, &t.checkpoints[..1]);
        let kinds: Vec<FlagKind> = a.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, vec![FlagKind::Unaddressed, FlagKind::StillDetected, FlagKind::NewDamage, FlagKind::NotShot]);
        assert_eq!(a[0].subject, "f2");
        assert_eq!(a[3].subject, "vin_plate");
        assert!(kinds.iter().all(|k| k.queue() == "qc"));
        assert!(missed_alerts(&findings, &["f1".into(), "f2".into()], &compare(&[], &[], &[]), &[]).is_empty());
    }

    #[test]
    fn parts_alarms() {
        let billed = [
            BilledPart { line_id: "l1".into(), part_no: "DOOR-SHELL-RF".into(), qty: 1 },
            BilledPart { line_id: "l2".into(), part_no: "CLIP".into(), qty: 2 },
        ];
        let f = billed_not_scanned(&billed, &["DOOR-SHELL-RF".into(), "CLIP".into()]);
        assert_eq!((f.len(), f[0].subject.as_str(), f[0].kind), (1, "l2", FlagKind::BilledNotScanned));
        let a = scan_alarms("P", Some("S1"), true, Some(Origin::Oem), Some(Origin::Equivalent));
        assert_eq!(a.iter().map(|p| p.kind).collect::<Vec<_>>(), vec![FlagKind::DuplicateSerial, FlagKind::OriginMismatch]);
        assert!(scan_alarms("P", Some("S1"), false, Some(Origin::Equivalent), Some(Origin::Refurbished)).is_empty());
        assert!(scan_alarms("P", None, true, Some(Origin::Oem), None).is_empty(), "no serial, no label origin: nothing to say");
        assert!(a.iter().all(|p| p.kind.queue() == "manager"));
    }

    #[test]
    fn estimate_lines_with_no_damage_before() {
        let lines = [
            LinePart { line_id: "a".into(), code: "PT-DOOR-PAINT".into(), part: "door".into() },
            LinePart { line_id: "b".into(), code: "PT-HOOD-PAINT".into(), part: "hood".into() },
        ];
        let f = lines_without_damage(&lines, &[pd("door", "scratch")]);
        assert_eq!((f.len(), f[0].subject.as_str()), (1, "b"));
    }
}

//! The work-order stage (seed scenario 2, first half): the before-repair baseline (维修前基线), the
//! work order made from the approved estimate, the labour clock and the parts fitted.
//!
//! Invariants:
//! - The car enters the bay (`scheduled → in_repair`) only through `start`, with the approved
//!   estimate and a baseline the customer signed; every checkpoint's latest before-shot passed the
//!   quality gate before the signature is taken.
//! - The work order's lines are copied from the approved estimate version (prices never come from
//!   here); one running clock entry per technician (a unique index backs the check).
//! - Flags (labour outliers, copied serials, origin mismatches, lines without damage) go to the
//!   manager's queue and never block the job.
//! - Every change commits with its timeline event (case row + outbox), the work order's outbox
//!   record and an audit row.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use super::bay::{Board, BoardJob, Decision, Settlement};
use super::{stage_move, CaseError};
use crate::catalog::SharedCatalog;
use crate::domain::validate;
use crate::domain::workshop::{self as rules, Origin, PartDamage, WorkshopTables};
use crate::domain::{new_id, now, Actor, CaseStatus};
use crate::files::PhotoFiles;
use crate::store::cases::Event;
use crate::store::workshop::{self as repo, ClockEntry, Line, Mark, PartFitted, Shot, Signoff, WorkOrder, WorkOrderDoc};
use crate::store::{self, audit, Store};
use crate::vision::codes::{self, DecodedCode, LabelOrigin};
use crate::vision::{Detection, Role as VisionRole};

/// What the QC report needs besides the data: the font and labels of the PDF, the store's name.
#[derive(Clone)]
pub struct ReportSetup {
    pub font: std::path::PathBuf,
    pub labels: Arc<crate::pdf::Labels>,
    pub store_name: String,
    /// The repair licence number on the completion certificate (empty: not set).
    pub licence: String,
}

/// The workshop and QC stages (this file and `qc.rs`).
#[derive(Clone)]
pub struct WorkshopService {
    pub(crate) store: Store,
    pub(crate) files: PhotoFiles,
    pub(crate) catalog: SharedCatalog,
    pub(crate) tables: Arc<WorkshopTables>,
    pub(crate) report: ReportSetup,
    /// Delivery opens the follow-up (due time from the policy, by this clock).
    pub(crate) follow_up: Arc<super::follow_up::Setup>,
    pub(crate) clock: crate::clock::Clock,
}

/// Which workshop photo an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Before,
    After,
    InRepair,
    PartLabel,
}

impl Phase {
    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "before" => Some(Phase::Before),
            "after" => Some(Phase::After),
            "in_repair" => Some(Phase::InRepair),
            "part_label" => Some(Phase::PartLabel),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::After => "after",
            Phase::InRepair => "in_repair",
            Phase::PartLabel => "part_label",
        }
    }
}

/// Where a workshop photo belongs: checked inside the transaction that attaches it.
#[derive(Debug, Clone)]
pub struct ShotTarget {
    pub phase: Phase,
    pub checkpoint: Option<String>,
}

/// Whether the case takes this workshop photo now: before-shots while the car waits for its bay,
/// after-shots once the work is done (in repair or at QC), labels and in-repair shots in the bay.
pub(crate) fn check_shot(tables: &WorkshopTables, status: CaseStatus, t: &ShotTarget) -> Result<(), CaseError> {
    let ok = match t.phase {
        Phase::Before => status == CaseStatus::Scheduled,
        Phase::After => matches!(status, CaseStatus::InRepair | CaseStatus::Qc),
        Phase::InRepair | Phase::PartLabel => status == CaseStatus::InRepair,
    };
    if !ok {
        return Err(CaseError::state(
            "wrong_phase",
            format!(
                "case is {status}; {} photos are taken {}",
                t.phase.as_str(),
                match t.phase {
                    Phase::Before => "when the car is dropped off (scheduled)",
                    Phase::After => "after the repair (in repair or at QC)",
                    _ => "while the car is in repair",
                }
            ),
        ));
    }
    match (t.phase, &t.checkpoint) {
        (Phase::Before | Phase::After, None) => {
            Err(validate::invalid("checkpoint", "before and after photos name their checkpoint").into())
        }
        (Phase::Before | Phase::After, Some(c)) if tables.checkpoint(c).is_none() => {
            Err(validate::invalid("checkpoint", format!("`{c}` is not a checkpoint of this store")).into())
        }
        (Phase::InRepair | Phase::PartLabel, Some(_)) => {
            Err(validate::invalid("checkpoint", "only before and after photos have a checkpoint").into())
        }
        _ => Ok(()),
    }
}

/// Insert the shot row for a photo being attached (same transaction as the photo row).
pub(crate) fn attach_shot(tx: &store::Tx, tables: &WorkshopTables, photo: &crate::domain::Photo, t: &ShotTarget) -> Result<(), CaseError> {
    let case = store::cases::get(tx, &photo.case_id)?.ok_or(CaseError::NotFound("case"))?;
    check_shot(tables, case.status, t)?;
    repo::insert_shot(
        tx,
        &Shot {
            photo_id: photo.id.clone(),
            case_id: photo.case_id.clone(),
            phase: t.phase.as_str().into(),
            checkpoint: t.checkpoint.clone(),
            taken_by: photo.uploaded_by.clone(),
            taken_at: photo.uploaded_at.clone(),
        },
    )?;
    Ok(())
}

/// A checkpoint's latest shot of a phase, with its quality verdict and the damage seen on it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointShot {
    pub checkpoint: String,
    pub name_zh: String,
    pub name_en: String,
    pub zone: bool,
    pub photo_id: Option<String>,
    /// `missing`, `pending` (being analysed), `ok`, `reshoot` (with reasons), `failed`.
    pub status: String,
    pub reasons: Vec<String>,
    pub damage: Vec<PartDamage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineView {
    pub checkpoints: Vec<CheckpointShot>,
    pub marks: Vec<Mark>,
    pub signoff: Option<Signoff>,
    /// Every checkpoint shot and passed: the customer can sign.
    pub complete: bool,
}

/// Damage on a photo: the detector's damage boxes on the part they lie on.
pub(crate) fn damage_of(dets: &[Detection]) -> Vec<PartDamage> {
    use crate::vision::measure;
    let parts: Vec<(&str, [f32; 4])> = dets
        .iter()
        .filter_map(|d| match &d.role {
            VisionRole::Part(p) => Some((p.as_str(), d.bbox)),
            _ => None,
        })
        .collect();
    let boxes: Vec<[f32; 4]> = parts.iter().map(|(_, b)| *b).collect();
    let mut out: Vec<PartDamage> = dets
        .iter()
        .filter_map(|d| match &d.role {
            VisionRole::Damage(kind) => {
                let part = measure::part_under(&d.bbox, &boxes).map(|i| parts[i].0).unwrap_or("other");
                Some(PartDamage::new(part, kind))
            }
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The latest shot of each checkpoint in a phase, as the tablet and the report show it.
pub(crate) fn checkpoint_shots(
    tx: &store::Tx,
    tables: &WorkshopTables,
    shots: &[Shot],
    phase: Phase,
) -> Result<Vec<CheckpointShot>, CaseError> {
    let mut out = Vec::new();
    for c in &tables.checkpoints {
        let latest = shots.iter().rev().find(|s| s.phase == phase.as_str() && s.checkpoint.as_deref() == Some(c.id.as_str()));
        let mut row = CheckpointShot {
            checkpoint: c.id.clone(),
            name_zh: c.name_zh.clone(),
            name_en: c.name_en.clone(),
            zone: c.zone,
            photo_id: latest.map(|s| s.photo_id.clone()),
            status: "missing".into(),
            reasons: Vec::new(),
            damage: Vec::new(),
        };
        if let Some(s) = latest {
            match store::photos::analysis(tx, &s.photo_id) {
                Ok(None) => row.status = "pending".into(),
                Ok(Some(a)) if a.status != "done" => {
                    row.status = "failed".into();
                    row.reasons = vec![a.error.unwrap_or_else(|| "the photo could not be analysed; retake it".into())];
                }
                Ok(Some(a)) => {
                    let q = a.quality.unwrap_or_default();
                    let issues = q.get("issues").and_then(|v| v.as_array()).cloned().unwrap_or_default();
                    let messages: Vec<String> = q.get("messages").and_then(|m| serde_json::from_value(m.clone()).ok()).unwrap_or_default();
                    // Framing counts only where the checkpoint shows the whole vehicle.
                    let framing = |i: &serde_json::Value| {
                        matches!(i.get("reason").and_then(|r| r.as_str()), Some("no_vehicle" | "vehicle_too_small"))
                    };
                    row.reasons = issues
                        .iter()
                        .zip(messages.iter().map(Some).chain(std::iter::repeat(None)))
                        .filter(|(i, _)| c.whole_vehicle || !framing(i))
                        .map(|(i, m)| m.cloned().unwrap_or_else(|| i.to_string()))
                        .collect();
                    row.status = if row.reasons.is_empty() { "ok" } else { "reshoot" }.into();
                    let dets: Vec<Detection> = a.detections.and_then(|d| serde_json::from_value(d).ok()).unwrap_or_default();
                    row.damage = damage_of(&dets);
                }
                Err(store::StoreError::Corrupt(_)) => {
                    row.status = "failed".into();
                    row.reasons = vec!["the photo's analysis cannot be read; retake it".into()];
                }
                Err(e) => return Err(e.into()),
            }
        }
        out.push(row);
    }
    Ok(out)
}

fn baseline_of(tx: &store::Tx, tables: &WorkshopTables, case_id: &str) -> Result<BaselineView, CaseError> {
    let shots = repo::shots_of(tx, case_id)?;
    let checkpoints = checkpoint_shots(tx, tables, &shots, Phase::Before)?;
    let complete = checkpoints.iter().all(|c| c.status == "ok");
    Ok(BaselineView { checkpoints, marks: repo::marks_of(tx, case_id)?, signoff: repo::signoff_of(tx, case_id)?, complete })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMark {
    pub checkpoint: String,
    pub part: String,
    pub damage_type: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSignature {
    /// The customer's name as they sign.
    pub signed_by: String,
    /// The signature drawn on the tablet, PNG as base64.
    pub signature_png: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockAction {
    Start,
    Pause,
    Finish,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockRequest {
    pub action: ClockAction,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockCorrection {
    pub started_at: String,
    pub ended_at: String,
    pub reason: String,
}

/// A line's clock as the technician's screen shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LineClock {
    #[serde(flatten)]
    pub line: Line,
    pub clocked_hours: f64,
    pub running_for: Option<String>,
}

/// A scanned part and the flags it raised.
#[derive(Debug, Clone, Serialize)]
pub struct ScanResult {
    pub part: PartFitted,
    pub codes: Vec<DecodedCode>,
    pub matched_line: Option<String>,
    pub flags: Vec<repo::Flag>,
}

fn line_hours(clock: &[ClockEntry], line_id: &str, at: &str) -> f64 {
    clock.iter().filter(|e| e.line_id == line_id).map(|e| e.hours(at)).sum()
}

/// The billed part lines with their quantities (for the "billed but never scanned" check).
pub(crate) fn billed(lines: &[Line]) -> Vec<rules::BilledPart> {
    lines
        .iter()
        .filter(|l| l.kind == "part")
        .map(|l| rules::BilledPart { line_id: l.id.clone(), part_no: l.code.clone(), qty: l.qty.max(0) as u32 })
        .collect()
}

pub(crate) fn scanned_part_nos(parts: &[PartFitted]) -> Vec<String> {
    parts.iter().filter_map(|p| p.part_no.clone()).collect()
}

/// Raise flags and put each new one on the case's timeline (flagged for a person).
pub(crate) fn raise_all(
    tx: &store::Tx,
    case_id: &str,
    actor: &Actor,
    proposals: &[rules::Proposal],
    at: &str,
) -> Result<Vec<repo::Flag>, CaseError> {
    let mut raised = Vec::new();
    for p in proposals {
        if let Some(f) = repo::raise(tx, case_id, p, at)? {
            let why = format!("{} ({}): {}", p.kind.name_zh(), p.kind.as_str(), p.detail);
            // QC alerts wait for the inspector; manager flags mark the case for a person's look.
            store::cases::note(tx, case_id, actor, at, p.kind.queue() == "manager", Event::note("flag_raised", &why))?;
            audit::record(tx, actor, "workshop.flag_raise", "workshop_flag", Some(&f.id), "ok")?;
            raised.push(f);
        }
    }
    Ok(raised)
}

impl WorkshopService {
    pub fn new(
        store: Store,
        files: PhotoFiles,
        catalog: SharedCatalog,
        tables: Arc<WorkshopTables>,
        report: ReportSetup,
        follow_up: Arc<super::follow_up::Setup>,
        clock: crate::clock::Clock,
    ) -> WorkshopService {
        WorkshopService { store, files, catalog, tables, report, follow_up, clock }
    }

    pub fn tables(&self) -> &WorkshopTables {
        &self.tables
    }

    pub fn tables_arc(&self) -> Arc<WorkshopTables> {
        self.tables.clone()
    }

    pub fn files(&self) -> &PhotoFiles {
        &self.files
    }

    pub async fn baseline(&self, case_id: String) -> Result<BaselineView, CaseError> {
        let tables = self.tables.clone();
        self.store
            .read(move |tx| -> Result<_, CaseError> {
                store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                baseline_of(tx, &tables, &case_id)
            })
            .await
    }

    /// An advisor marks pre-existing damage on a baseline checkpoint (what the detector missed).
    pub async fn mark(&self, actor: &Actor, case_id: String, m: NewMark) -> Result<Mark, CaseError> {
        use crate::domain::vocab::{DamageType, Part};
        let part = Part::from_id(&m.part).ok_or_else(|| validate::invalid("part", "not a part of the vocabulary"))?;
        let damage =
            DamageType::from_id(&m.damage_type).ok_or_else(|| validate::invalid("damage_type", "not a damage type of the vocabulary"))?;
        if self.tables.checkpoint(&m.checkpoint).is_none() {
            return Err(validate::invalid("checkpoint", format!("`{}` is not a checkpoint of this store", m.checkpoint)).into());
        }
        let note = validate::opt_text("note", m.note.as_deref(), 500)?;
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                if case.status != CaseStatus::Scheduled || repo::signoff_of(tx, &case_id)?.is_some() {
                    return Err(CaseError::state(
                        "baseline_closed",
                        format!("case is {}; the baseline is marked before the customer signs it", case.status),
                    ));
                }
                let at = now();
                let mark = Mark {
                    id: new_id(),
                    case_id: case_id.clone(),
                    checkpoint: m.checkpoint,
                    part: part.id().into(),
                    damage: damage.id().into(),
                    note,
                    marked_by: actor.username.clone(),
                    at: at.clone(),
                };
                repo::insert_mark(tx, &mark)?;
                let why = format!("pre-existing {}/{} marked on {}", mark.part, mark.damage, mark.checkpoint);
                store::cases::note(tx, &case_id, &actor, &at, false, Event::note("baseline_marked", &why))?;
                audit::record(tx, &actor, "baseline.mark", "case", Some(&case_id), "ok")?;
                Ok(mark)
            })
            .await
    }

    /// The customer signs the baseline at drop-off: every checkpoint shot and passed. The hash of the
    /// shots is kept with the signature, so a later dispute shows exactly what was signed.
    pub async fn sign_baseline(&self, actor: &Actor, case_id: String, s: BaselineSignature) -> Result<Signoff, CaseError> {
        let signed_by = validate::text("signed_by", &s.signed_by, 100)?;
        let signature = super::signature_png(s.signature_png.as_deref())?;
        let (actor, tables) = (actor.clone(), self.tables.clone());
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                if case.status != CaseStatus::Scheduled {
                    return Err(CaseError::state("not_scheduled", format!("case is {}; the baseline is signed at drop-off", case.status)));
                }
                let view = baseline_of(tx, &tables, &case_id)?;
                let open: Vec<String> =
                    view.checkpoints.iter().filter(|c| c.status != "ok").map(|c| format!("{} ({})", c.checkpoint, c.status)).collect();
                if !open.is_empty() {
                    return Err(CaseError::state(
                        "baseline_incomplete",
                        format!("these checkpoints are not shot and passed yet: {}", open.join(", ")),
                    ));
                }
                let mut h = Sha256::new();
                for c in &view.checkpoints {
                    let photo = c.photo_id.as_deref().and_then(|id| store::photos::get(tx, id).ok().flatten());
                    h.update(c.checkpoint.as_bytes());
                    h.update(photo.map(|p| p.sha256).unwrap_or_default().as_bytes());
                }
                let at = now();
                let so = Signoff {
                    case_id: case_id.clone(),
                    signed_by,
                    has_signature: signature.is_some(),
                    shots_sha256: hex::encode(h.finalize()),
                    recorded_by: actor.username.clone(),
                    at: at.clone(),
                };
                repo::insert_signoff(tx, &so, signature.as_deref())?;
                // The signer's name stays on the signoff row: the timeline travels to HQ.
                let why =
                    format!("baseline of {} checkpoints signed by the customer, recorded by {}", view.checkpoints.len(), so.recorded_by);
                store::cases::note(tx, &case_id, &actor, &at, false, Event::note("baseline_signed", &why))?;
                audit::record(tx, &actor, "baseline.sign", "case", Some(&case_id), "ok")?;
                Ok(so)
            })
            .await
    }

    /// The technician takes the car into the bay: the work order is made from the approved estimate
    /// and the case moves to `in_repair`. Estimate lines on parts with no damage in the before
    /// photos go to the manager's queue.
    pub async fn start(&self, actor: &Actor, case_id: String) -> Result<WorkOrderDoc, CaseError> {
        let (actor, catalog, tables) = (actor.clone(), self.catalog.get(), self.tables.clone());
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let mut case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                if case.status != CaseStatus::Scheduled {
                    return Err(CaseError::state("not_scheduled", format!("case is {}; a job starts from a scheduled case", case.status)));
                }
                if repo::work_order_of(tx, &case_id)?.is_some() {
                    return Err(CaseError::state("work_order_exists", "the case already has a work order"));
                }
                let est =
                    store::estimates::latest(tx, &case_id)?.ok_or_else(|| CaseError::state("no_estimate", "the case has no estimate"))?;
                let at = now();
                let appt = store::schedule::booked_of(tx, &case_id)?;
                let wo = WorkOrder {
                    id: new_id(),
                    case_id: case_id.clone(),
                    estimate_id: est.id.clone(),
                    status: "open".into(),
                    bay: appt.map(|a| a.bay),
                    technicians: actor.user_id.into_iter().collect(),
                    opened_by: actor.username.clone(),
                    opened_at: at.clone(),
                    closed_at: None,
                    version: 1,
                };
                repo::insert_work_order(tx, &wo)?;
                let plan: crate::estimate::RepairPlan = serde_json::from_value(est.plan.clone())
                    .map_err(|e| store::StoreError::Corrupt(format!("estimate {}: {e}", est.id)))?;
                let finding_ids: Vec<String> =
                    est.plan.get("finding_ids").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
                let mut seq = 0;
                let mut line_parts = Vec::new();
                for l in &plan.labour {
                    seq += 1;
                    let finding = finding_ids.get(l.finding).and_then(|id| store::findings::get(tx, id).ok().flatten());
                    let class =
                        catalog.operations.iter().find(|o| o.code == l.code).map(|o| format!("{:?}", o.labour_class).to_lowercase());
                    let line = Line {
                        id: new_id(),
                        work_order_id: wo.id.clone(),
                        seq,
                        kind: "labour".into(),
                        code: l.code.clone(),
                        name_zh: l.name_zh.clone(),
                        name_en: l.name_en.clone(),
                        labour_class: class,
                        standard_hours: Some(l.hours),
                        qty: 1,
                        billed_origin: None,
                        finding_id: finding.as_ref().map(|f| f.id.clone()),
                        part: finding.as_ref().map(|f| f.part.clone()),
                        damage: finding.as_ref().map(|f| f.damage_type.clone()),
                        status: "todo".into(),
                    };
                    if let Some(p) = &line.part {
                        line_parts.push(rules::LinePart { line_id: line.id.clone(), code: line.code.clone(), part: p.clone() });
                    }
                    repo::insert_line(tx, &line)?;
                }
                for p in &plan.parts {
                    seq += 1;
                    let origin = match p.chosen {
                        crate::estimate::PartsChoice::Oem => Origin::Oem,
                        crate::estimate::PartsChoice::Aftermarket => Origin::Equivalent,
                    };
                    repo::insert_line(
                        tx,
                        &Line {
                            id: new_id(),
                            work_order_id: wo.id.clone(),
                            seq,
                            kind: "part".into(),
                            code: p.part_no.clone(),
                            name_zh: p.name_zh.clone(),
                            name_en: p.name_en.clone(),
                            labour_class: None,
                            standard_hours: None,
                            qty: i64::from(p.qty),
                            billed_origin: Some(origin.as_str().into()),
                            finding_id: None,
                            part: None,
                            damage: None,
                            status: "todo".into(),
                        },
                    )?;
                }
                let doc = repo::publish(tx, &wo, &at)?;
                audit::record(tx, &actor, "work_order.open", "work_order", Some(&wo.id), "ok")?;
                let why = format!(
                    "work order opened from estimate v{}: {} labour, {} part lines",
                    est.version,
                    plan.labour.len(),
                    plan.parts.len()
                );
                stage_move(tx, &mut case, CaseStatus::InRepair, &actor, "in_repair", Some(&why))?;
                // Estimate lines whose part shows no damage in the before photos (over-repair check).
                let shots = repo::shots_of(tx, &case_id)?;
                let mut before: Vec<PartDamage> =
                    checkpoint_shots(tx, &tables, &shots, Phase::Before)?.into_iter().flat_map(|c| c.damage).collect();
                before.extend(repo::marks_of(tx, &case_id)?.into_iter().map(|m| PartDamage::new(&m.part, &m.damage)));
                let flags = rules::lines_without_damage(&line_parts, &before);
                raise_all(tx, &case_id, &actor, &flags, &at)?;
                Ok(doc)
            })
            .await
    }

    pub async fn work_order(&self, case_id: String) -> Result<Option<WorkOrderDoc>, CaseError> {
        self.store
            .read(move |tx| -> Result<_, CaseError> {
                store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                Ok(repo::doc_of(tx, &case_id)?)
            })
            .await
    }

    /// The lines with their clocked hours (the technician's bay screen).
    pub fn line_clocks(doc: &WorkOrderDoc) -> Vec<LineClock> {
        let at = now();
        doc.lines
            .iter()
            .map(|l| LineClock {
                clocked_hours: ((line_hours(&doc.clock, &l.id, &at) * 100.0).round() / 100.0).max(0.0),
                running_for: doc.clock.iter().find(|e| e.line_id == l.id && e.ended_at.is_none()).map(|e| e.technician.clone()),
                line: l.clone(),
            })
            .collect()
    }

    /// Start, pause or finish a labour line. One running job per technician; finishing compares the
    /// clocked hours with the standard and with this store's history (flags to the manager).
    pub async fn clock(&self, actor: &Actor, line_id: String, action: ClockAction) -> Result<WorkOrderDoc, CaseError> {
        let (actor, tables) = (actor.clone(), self.tables.clone());
        let tech_id = actor.user_id.ok_or_else(|| CaseError::state("no_user", "the clock needs a logged-in technician"))?;
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let line = repo::line(tx, &line_id)?.ok_or(CaseError::NotFound("work order line"))?;
                if line.kind != "labour" {
                    return Err(CaseError::state("not_labour", "only labour lines are clocked"));
                }
                let wo = tx_order_by_id(tx, &line.work_order_id)?;
                let case = store::cases::get(tx, &wo.case_id)?.ok_or(CaseError::NotFound("case"))?;
                if case.status != CaseStatus::InRepair {
                    return Err(CaseError::state(
                        "not_in_repair",
                        format!("case is {}; the clock runs while the car is in repair", case.status),
                    ));
                }
                let at = now();
                let running = repo::running_of(tx, tech_id)?;
                let mut wo = wo;
                let what;
                match action {
                    ClockAction::Start => {
                        if line.status == "done" {
                            return Err(CaseError::state("line_done", format!("{} is finished", line.code)));
                        }
                        if let Some(r) = running {
                            let on = repo::line(tx, &r.line_id)?.map(|l| l.code).unwrap_or_default();
                            return Err(CaseError::state(
                                "clock_running",
                                format!("you are clocked on {on}; pause or finish it first (one job at a time)"),
                            ));
                        }
                        repo::insert_clock(
                            tx,
                            &ClockEntry {
                                id: new_id(),
                                line_id: line.id.clone(),
                                technician_id: tech_id,
                                technician: actor.username.clone(),
                                started_at: at.clone(),
                                ended_at: None,
                                corrected_by: None,
                                correction_reason: None,
                            },
                        )?;
                        repo::set_line_status(tx, &line.id, "active")?;
                        if !wo.technicians.contains(&tech_id) {
                            wo.technicians.push(tech_id);
                        }
                        what = format!("{} started by {}", line.code, actor.username);
                    }
                    ClockAction::Pause | ClockAction::Finish => {
                        match running {
                            Some(mut r) if r.line_id == line.id => {
                                r.ended_at = Some(at.clone());
                                repo::save_clock(tx, &r)?;
                            }
                            Some(_) | None if action == ClockAction::Pause => {
                                return Err(CaseError::state("not_running", format!("you are not clocked on {}", line.code)));
                            }
                            _ => {}
                        }
                        if action == ClockAction::Pause {
                            repo::set_line_status(tx, &line.id, "paused")?;
                            what = format!("{} paused by {}", line.code, actor.username);
                        } else {
                            if line.status == "done" {
                                return Err(CaseError::state("line_done", format!("{} is finished", line.code)));
                            }
                            let others_running =
                                repo::clock_of(tx, &wo.id)?.into_iter().any(|e| e.line_id == line.id && e.ended_at.is_none());
                            if others_running {
                                return Err(CaseError::state(
                                    "clock_running",
                                    format!("another technician is still clocked on {}", line.code),
                                ));
                            }
                            repo::set_line_status(tx, &line.id, "done")?;
                            let clocked = line_hours(&repo::clock_of(tx, &wo.id)?, &line.id, &at);
                            let history = repo::history_hours(tx, &line.code, &wo.id)?;
                            let flags =
                                rules::labour_flags(&line.id, clocked, line.standard_hours.unwrap_or(0.0), &history, &tables.labour);
                            raise_all(tx, &wo.case_id, &actor, &flags, &at)?;
                            what = format!(
                                "{} finished by {}: {clocked:.2} h against {:.2} h standard",
                                line.code,
                                actor.username,
                                line.standard_hours.unwrap_or(0.0)
                            );
                        }
                    }
                }
                let doc = repo::touch_work_order(tx, &mut wo, &at)?;
                store::cases::note(tx, &wo.case_id, &actor, &at, false, Event::note("clock", &what))?;
                audit::record(tx, &actor, "work_order.clock", "work_order_line", Some(&line.id), "ok")?;
                Ok(doc)
            })
            .await
    }

    /// A manager corrects a clock entry (a forgotten pause, a wrong start): audited, with the reason
    /// on the timeline.
    pub async fn correct_clock(&self, actor: &Actor, entry_id: String, c: ClockCorrection) -> Result<WorkOrderDoc, CaseError> {
        let reason = validate::text("reason", &c.reason, 500)?;
        let parse = |f: &str, v: &str| {
            chrono::DateTime::parse_from_rfc3339(v.trim())
                .map(|d| d.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .map_err(|_| validate::invalid(f, "an RFC 3339 time, e.g. 2026-12-06T09:30:00+08:00"))
        };
        let (start, end) = (parse("started_at", &c.started_at)?, parse("ended_at", &c.ended_at)?);
        if end <= start {
            return Err(validate::invalid("ended_at", "must be after started_at").into());
        }
        if end > now() {
            return Err(validate::invalid("ended_at", "cannot be in the future").into());
        }
        let (actor, tables) = (actor.clone(), self.tables.clone());
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let mut e = repo::clock_entry(tx, &entry_id)?.ok_or(CaseError::NotFound("clock entry"))?;
                let line = repo::line(tx, &e.line_id)?.ok_or(CaseError::NotFound("work order line"))?;
                let mut wo = tx_order_by_id(tx, &line.work_order_id)?;
                let at = now();
                let why = format!(
                    "{}: clock entry of {} corrected by {} from {}–{} to {start}–{end}: {reason}",
                    line.code,
                    e.technician,
                    actor.username,
                    e.started_at,
                    e.ended_at.as_deref().unwrap_or("running")
                );
                (e.started_at, e.ended_at, e.corrected_by, e.correction_reason) =
                    (start, Some(end), Some(actor.username.clone()), Some(reason));
                repo::save_clock(tx, &e)?;
                // A corrected finished line is judged again (a flag already raised stays as settled).
                if line.status == "done" {
                    let clocked = line_hours(&repo::clock_of(tx, &wo.id)?, &line.id, &at);
                    let history = repo::history_hours(tx, &line.code, &wo.id)?;
                    let flags = rules::labour_flags(&line.id, clocked, line.standard_hours.unwrap_or(0.0), &history, &tables.labour);
                    raise_all(tx, &wo.case_id, &actor, &flags, &at)?;
                }
                let doc = repo::touch_work_order(tx, &mut wo, &at)?;
                store::cases::note(tx, &wo.case_id, &actor, &at, false, Event::note("clock_corrected", &why))?;
                audit::record(tx, &actor, "work_order.clock_correct", "clock_entry", Some(&e.id), "ok")?;
                Ok(doc)
            })
            .await
    }

    /// Record a part from its photographed label: decode the codes on the box, match the catalogue
    /// (part number or GTIN) and a billed line, and raise the alarms (a serial seen before, a part
    /// billed as OEM whose label says otherwise). `origin` is the technician's word where the label
    /// does not say.
    pub async fn scan_part(&self, actor: &Actor, photo: crate::domain::Photo, origin: Option<Origin>) -> Result<ScanResult, CaseError> {
        let files = self.files.clone();
        let (cid, sha) = (photo.case_id.clone(), photo.sha256.clone());
        let found = tokio::task::spawn_blocking(move || -> Result<Vec<DecodedCode>, CaseError> {
            let img = files.open_image(&cid, &sha).map_err(|e| CaseError::state("unreadable_photo", e))?;
            Ok(codes::decode(&img))
        })
        .await
        .map_err(|_| CaseError::Unavailable("the code reader stopped".into()))??;
        let Some(code) = found.first().cloned() else {
            return Err(CaseError::state(
                "no_code",
                "no barcode, QR or DataMatrix code found on the photo: retake it closer, flat and in focus",
            ));
        };
        let label = codes::parse_label(&code);
        let catalog = self.catalog.get();
        let by_gtin = label.gtin.as_deref().and_then(|g| catalog.part_by_gtin(g)).map(|(p, o)| (p.part_no.clone(), o));
        let part_no = label.part_no.clone().or_else(|| by_gtin.as_ref().map(|(p, _)| p.clone()));
        let label_origin = label.origin.map(|o| match o {
            LabelOrigin::Oem => Origin::Oem,
            LabelOrigin::Equivalent => Origin::Equivalent,
            LabelOrigin::Refurbished => Origin::Refurbished,
        });
        let code_origin = label_origin.or(by_gtin.as_ref().map(|(_, o)| *o));
        let recorded = code_origin.or(origin).ok_or_else(|| {
            CaseError::state(
                "origin_unknown",
                "the label does not say where the part comes from: choose 原厂 (oem), 同质 (equivalent) or 修复 (refurbished)",
            )
        })?;
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &photo.case_id)?.ok_or(CaseError::NotFound("case"))?;
                if case.status != CaseStatus::InRepair {
                    return Err(CaseError::state(
                        "not_in_repair",
                        format!("case is {}; parts are scanned while the car is in repair", case.status),
                    ));
                }
                let mut wo =
                    repo::work_order_of(tx, &case.id)?.ok_or_else(|| CaseError::state("no_work_order", "the case has no work order"))?;
                let lines = repo::lines_of(tx, &wo.id)?;
                let line = part_no.as_deref().and_then(|pn| lines.iter().find(|l| l.kind == "part" && l.code == pn));
                let at = now();
                let seen = match &label.serial {
                    Some(s) => repo::serial_seen(tx, s)?,
                    None => false,
                };
                let p = PartFitted {
                    id: new_id(),
                    work_order_id: wo.id.clone(),
                    line_id: line.map(|l| l.id.clone()),
                    photo_id: Some(photo.id.clone()),
                    symbology: code.symbology.as_str().into(),
                    code_text: code.text.clone(),
                    part_no: part_no.clone(),
                    gtin: label.gtin.clone(),
                    serial: label.serial.clone(),
                    origin: recorded.as_str().into(),
                    scanned_by: actor.username.clone(),
                    scanned_at: at.clone(),
                };
                repo::insert_part(tx, &p)?;
                let billed_origin = line.and_then(|l| l.billed_origin.as_deref()).and_then(Origin::parse);
                let shown = part_no.clone().unwrap_or_else(|| code.text.chars().take(40).collect());
                let proposals = rules::scan_alarms(&shown, label.serial.as_deref(), seen, billed_origin, Some(recorded));
                let flags = raise_all(tx, &case.id, &actor, &proposals, &at)?;
                repo::touch_work_order(tx, &mut wo, &at)?;
                let why = format!(
                    "part scanned: {shown} ({}){}",
                    recorded.name_zh(),
                    if line.is_none() { ", not on the work order" } else { "" }
                );
                store::cases::note(tx, &case.id, &actor, &at, false, Event::note("part_scanned", &why))?;
                audit::record(tx, &actor, "work_order.part_scan", "part_fitted", Some(&p.id), "ok")?;
                Ok(ScanResult { matched_line: p.line_id.clone(), part: p, codes: found, flags })
            })
            .await
    }

    /// The technician hands the car to QC: every labour line finished. Billed parts never scanned
    /// go to the manager's queue (they do not block).
    pub async fn finish(&self, actor: &Actor, case_id: String) -> Result<WorkOrderDoc, CaseError> {
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let mut case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                if case.status != CaseStatus::InRepair {
                    return Err(CaseError::state("not_in_repair", format!("case is {}; a job is finished while in repair", case.status)));
                }
                let mut wo =
                    repo::work_order_of(tx, &case_id)?.ok_or_else(|| CaseError::state("no_work_order", "the case has no work order"))?;
                let at = now();
                let lines = repo::lines_of(tx, &wo.id)?;
                let parts = repo::parts_of(tx, &wo.id)?;
                let done = lines.iter().filter(|l| l.kind == "labour" && l.status == "done").count();
                let why = format!("job finished: {done} labour lines done, {} parts scanned; to QC", parts.len());
                stage_move(tx, &mut case, CaseStatus::Qc, &actor, "qc", Some(&why))?;
                raise_all(tx, &case_id, &actor, &rules::billed_not_scanned(&billed(&lines), &scanned_part_nos(&parts)), &at)?;
                wo.status = "qc".into();
                let doc = repo::touch_work_order(tx, &mut wo, &at)?;
                audit::record(tx, &actor, "work_order.finish", "work_order", Some(&wo.id), "ok")?;
                Ok(doc)
            })
            .await
    }
}
fn tx_order_by_id(tx: &store::Tx, id: &str) -> Result<WorkOrder, CaseError> {
    repo::order(tx, id)?.ok_or(CaseError::NotFound("work order"))
}

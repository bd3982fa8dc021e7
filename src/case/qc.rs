//! The QC stage (seed scenario 2, second half, 维修后对比 and 质检报告): the after-repair shots are
//! compared with the baseline (same viewpoint first, then per part), missed-issue alerts are
//! proposed, the inspector settles them and signs the report; pass → `delivered`, fail → back to
//! `in_repair` with the reasons.
//!
//! Invariants:
//! - A report passes only with every QC alert settled; the customer's copy lists confirmed alerts
//!   only (an unconfirmed proposal is never shown to the customer) and is made from blurred photos
//!   or not at all (fail closed, like the photo route).
//! - The report's data goes to HQ with the PDF's hash, without the vehicle's plate or VIN.

use image::DynamicImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::work_order::{checkpoint_shots, raise_all, CheckpointShot, Phase, WorkshopService};
use super::{photos::privacy_detections, stage_move, CaseError};
use crate::domain::workshop::{self as rules, Comparison, IntakeFinding, PartDamage};
use crate::domain::{new_id, now, validate, Actor, CaseStatus};
use crate::pdf;
use crate::store::cases::Event;
use crate::store::workshop::{self as repo, QcReport};
use crate::store::{self, audit};
use crate::vision::viewpoint::{self, ViewpointConfig};

/// One checkpoint before and after, with the viewpoint check of the pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairView {
    pub checkpoint: String,
    pub name_zh: String,
    pub name_en: String,
    pub before_photo: Option<String>,
    pub after_photo: Option<String>,
    /// `same`, `reshoot` (viewpoint differs), `missing` (no after shot), `pending` (not analysed).
    pub status: String,
    pub inlier_ratio: Option<f32>,
    pub before_damage: Vec<PartDamage>,
    pub after_damage: Vec<PartDamage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComparisonView {
    pub pairs: Vec<PairView>,
    pub resolved: Vec<PartDamage>,
    pub persisting: Vec<PartDamage>,
    pub unchanged: Vec<PartDamage>,
    pub new: Vec<PartDamage>,
    pub compared_at: String,
    /// Seconds the comparison took (viewpoint checks included).
    pub seconds: f64,
}

/// Everything the inspector's screen shows.
#[derive(Debug, Clone, Serialize)]
pub struct QcView {
    pub case_status: CaseStatus,
    pub after: Vec<CheckpointShot>,
    pub comparison: Option<ComparisonView>,
    pub alerts: Vec<repo::Flag>,
    pub report: Option<QcReport>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignReport {
    pub passed: bool,
    /// The inspector's note; for a fail, the reasons the car goes back to the bay.
    pub note: Option<String>,
}

/// Which copy of the report: the store's (original photos) or the customer's (blurred).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Copy {
    Store,
    Customer,
}

/// The thumbnail long side in the PDF (pixels).
const THUMB_PX: u32 = 480;

fn thumb_jpeg(img: &DynamicImage) -> Option<Vec<u8>> {
    let t = img.thumbnail(THUMB_PX, THUMB_PX).to_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 78).encode_image(&t).ok()?;
    Some(out.into_inner())
}

impl WorkshopService {
    pub async fn qc_view(&self, case_id: String) -> Result<QcView, CaseError> {
        let tables = self.tables.clone();
        self.store
            .read(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                let shots = repo::shots_of(tx, &case_id)?;
                let comparison = repo::comparison(tx, &case_id)?.and_then(|v| serde_json::from_value(v).ok());
                Ok(QcView {
                    case_status: case.status,
                    after: checkpoint_shots(tx, &tables, &shots, Phase::After)?,
                    comparison,
                    alerts: repo::flags_of(tx, &case_id)?.into_iter().filter(|f| f.queue == "qc" || f.kind == "not_shot").collect(),
                    report: repo::latest_report(tx, &case_id)?,
                })
            })
            .await
    }

    /// Compare the after-repair shots with the baseline and propose the missed-issue alerts. Runs
    /// at QC; every after shot must be analysed first (`analysis_pending` otherwise).
    pub async fn compare(&self, actor: &Actor, case_id: String) -> Result<QcView, CaseError> {
        let started = std::time::Instant::now();
        let tables = self.tables.clone();
        let cid = case_id.clone();
        // Read what the comparison needs.
        let (before, after, marks, lines, findings) = self
            .store
            .read(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &cid)?.ok_or(CaseError::NotFound("case"))?;
                if case.status != CaseStatus::Qc {
                    return Err(CaseError::state("not_at_qc", format!("case is {}; the comparison runs at QC", case.status)));
                }
                let shots = repo::shots_of(tx, &cid)?;
                let before = checkpoint_shots(tx, &tables, &shots, Phase::Before)?;
                let after = checkpoint_shots(tx, &tables, &shots, Phase::After)?;
                let wo = repo::work_order_of(tx, &cid)?.ok_or_else(|| CaseError::state("no_work_order", "the case has no work order"))?;
                let findings: Vec<IntakeFinding> = store::findings::of_case(tx, &cid)?
                    .into_iter()
                    .filter(|f| f.review_status != "rejected")
                    .map(|f| IntakeFinding { what: PartDamage::new(&f.part, &f.damage_type), id: f.id })
                    .collect();
                let photos: Vec<(String, Option<crate::domain::Photo>)> = before
                    .iter()
                    .chain(after.iter())
                    .filter_map(|c| c.photo_id.clone())
                    .map(|id| {
                        let p = store::photos::get(tx, &id).ok().flatten();
                        (id, p)
                    })
                    .collect();
                Ok(((before, photos), after, repo::marks_of(tx, &cid)?, repo::lines_of(tx, &wo.id)?, findings))
            })
            .await?;
        let (before, photos) = before;
        if let Some(p) = after.iter().find(|c| c.status == "pending") {
            return Err(CaseError::state(
                "analysis_pending",
                format!("the after photo of {} is still being analysed; try again shortly", p.checkpoint),
            ));
        }
        // The viewpoint checks decode both photos of each pair: blocking work, off the runtime.
        let files = self.files.clone();
        let pairs_in: Vec<(CheckpointShot, CheckpointShot)> = before.iter().cloned().zip(after.iter().cloned()).collect();
        let pairs = tokio::task::spawn_blocking(move || {
            let cfg = ViewpointConfig::default();
            let open = |id: &Option<String>| -> Option<DynamicImage> {
                let id = id.as_ref()?;
                let p = photos.iter().find(|(pid, _)| pid == id)?.1.as_ref()?;
                files.open_image(&p.case_id, &p.sha256).ok()
            };
            pairs_in
                .into_iter()
                .map(|(b, a)| {
                    let mut v = PairView {
                        checkpoint: b.checkpoint.clone(),
                        name_zh: b.name_zh.clone(),
                        name_en: b.name_en.clone(),
                        before_photo: b.photo_id.clone(),
                        after_photo: a.photo_id.clone(),
                        status: "missing".into(),
                        inlier_ratio: None,
                        before_damage: b.damage.clone(),
                        after_damage: a.damage.clone(),
                    };
                    if a.photo_id.is_some() && a.status == "ok" {
                        match (open(&b.photo_id), open(&a.photo_id)) {
                            (Some(bi), Some(ai)) => {
                                let c = viewpoint::check(&bi, &ai, &cfg);
                                v.inlier_ratio = Some(c.inlier_ratio);
                                v.status = if c.same_viewpoint { "same" } else { "reshoot" }.into();
                            }
                            _ => v.status = "reshoot".into(),
                        }
                    } else if a.photo_id.is_some() {
                        v.status = "reshoot".into();
                    }
                    v
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|_| CaseError::Unavailable("the viewpoint check stopped".into()))?;
        // Per part, over the pairs whose viewpoints match (a mismatched pair proves nothing).
        let mut before_dmg: Vec<PartDamage> = pairs.iter().flat_map(|p| p.before_damage.clone()).collect();
        before_dmg.extend(marks.iter().map(|m| PartDamage::new(&m.part, &m.damage)));
        let after_dmg: Vec<PartDamage> = pairs.iter().filter(|p| p.status == "same").flat_map(|p| p.after_damage.clone()).collect();
        let repaired: Vec<PartDamage> = lines
            .iter()
            .filter_map(|l| Some(PartDamage::new(l.part.as_deref()?, l.damage.as_deref()?)))
            .filter(|p| p.part != "other")
            .collect();
        let cmp: Comparison = rules::compare(&before_dmg, &after_dmg, &repaired);
        let addressed: Vec<String> = lines.iter().filter_map(|l| l.finding_id.clone()).collect();
        let not_shot: Vec<rules::Checkpoint> =
            pairs.iter().filter(|p| p.status != "same").filter_map(|p| self.tables.checkpoint(&p.checkpoint).cloned()).collect();
        // Only findings a person could repair count: those on a vocabulary part of the car.
        let mut proposals = rules::missed_alerts(&findings, &addressed, &cmp, &not_shot);
        for p in proposals.iter_mut().filter(|p| p.kind == rules::FlagKind::NotShot) {
            if let Some(pv) = pairs.iter().find(|x| x.checkpoint == p.subject && x.status == "reshoot") {
                p.detail = format!(
                    "{}: the after photo is not from the baseline's viewpoint (inlier ratio {:.2}); reshoot it",
                    pv.name_zh,
                    pv.inlier_ratio.unwrap_or(0.0)
                );
            }
        }
        let view = ComparisonView {
            resolved: cmp.resolved,
            persisting: cmp.persisting,
            unchanged: cmp.unchanged,
            new: cmp.new,
            pairs,
            compared_at: now(),
            seconds: started.elapsed().as_secs_f64(),
        };
        let actor = actor.clone();
        let body = serde_json::to_value(&view).map_err(|e| store::StoreError::Encode(e.to_string()))?;
        let cid = case_id.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let at = now();
                repo::save_comparison(tx, &cid, &body, &at)?;
                let raised = raise_all(tx, &cid, &actor, &proposals, &at)?;
                let why = format!(
                    "before/after compared: {} resolved, {} persisting, {} new; {} alerts raised",
                    view.resolved.len(),
                    view.persisting.len(),
                    view.new.len(),
                    raised.len()
                );
                store::cases::note(tx, &cid, &actor, &at, false, Event::note("qc_compared", &why))?;
                audit::record(tx, &actor, "qc.compare", "case", Some(&cid), "ok")?;
                Ok(())
            })
            .await?;
        self.qc_view(case_id).await
    }

    /// The inspector signs the QC report. Pass needs every alert settled and moves the case to
    /// `delivered`; fail needs the reasons and sends the car back to the bay.
    pub async fn sign_report(&self, actor: &Actor, case_id: String, s: SignReport) -> Result<QcReport, CaseError> {
        let note = validate::opt_text("note", s.note.as_deref(), 2000)?;
        if !s.passed && note.is_none() {
            return Err(validate::invalid("note", "a failed QC names the reasons for the rework").into());
        }
        let started = std::time::Instant::now();
        // Gather and render outside the writer (the PDF takes a moment), then re-check in the write.
        // A pass delivers the car and opens its follow-up: the report prints the survey's QR code.
        let token = super::follow_up::new_token();
        let qr = if s.passed { super::follow_up::survey_qr(&self.follow_up, &token) } else { None };
        let doc = self.report_doc(&case_id, Copy::Store, s.passed, actor, note.clone(), qr).await?;
        let (font, labels) = (self.report.font.clone(), self.report.labels.clone());
        let (doc, pdf_bytes) = tokio::task::spawn_blocking(move || -> Result<_, CaseError> {
            let font = pdf::ReportFont::load(&font).map_err(|e| CaseError::Unavailable(e.to_string()))?;
            let bytes = pdf::render(&doc, &font, &labels).map_err(|e| CaseError::Unavailable(e.to_string()))?;
            Ok((doc, bytes))
        })
        .await
        .map_err(|_| CaseError::Unavailable("the report renderer stopped".into()))??;
        let sha = hex::encode(Sha256::digest(&pdf_bytes));
        let mut body = serde_json::to_value(&doc).map_err(|e| store::StoreError::Encode(e.to_string()))?;
        // The report travels to HQ without the vehicle's identity (plate, VIN): HQ has the case ids.
        if let Some(o) = body.as_object_mut() {
            o.remove("vehicle");
            o.insert("render_seconds".into(), serde_json::json!(started.elapsed().as_secs_f64()));
        }
        let actor = actor.clone();
        let (follow_up, delivered) = (self.follow_up.clone(), self.clock.now());
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let mut case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                if case.status != CaseStatus::Qc {
                    return Err(CaseError::state("not_at_qc", format!("case is {}; the report is signed at QC", case.status)));
                }
                if repo::comparison(tx, &case_id)?.is_none() {
                    return Err(CaseError::state("not_compared", "compare the after photos with the baseline first"));
                }
                let open = repo::open_alerts(tx, &case_id)?;
                if s.passed && open > 0 {
                    return Err(CaseError::state(
                        "alerts_open",
                        format!("{open} QC alerts are not settled yet: confirm or dismiss each one"),
                    ));
                }
                let mut wo =
                    repo::work_order_of(tx, &case_id)?.ok_or_else(|| CaseError::state("no_work_order", "the case has no work order"))?;
                let at = now();
                let r = QcReport {
                    id: new_id(),
                    case_id: case_id.clone(),
                    version: repo::next_report_version(tx, &case_id)?,
                    passed: s.passed,
                    body,
                    pdf_sha256: sha,
                    inspector: actor.username.clone(),
                    inspector_id: actor.user_id,
                    signed_at: at.clone(),
                };
                repo::insert_report(tx, &r, &pdf_bytes)?;
                audit::record(tx, &actor, "qc.report_sign", "qc_report", Some(&r.id), "ok")?;
                if s.passed {
                    (wo.status, wo.closed_at) = ("done".into(), Some(at.clone()));
                    repo::touch_work_order(tx, &mut wo, &at)?;
                    let why = format!("QC report v{} passed, signed by {}", r.version, r.inspector);
                    stage_move(tx, &mut case, CaseStatus::Delivered, &actor, "delivered", Some(&why))?;
                    // The follow-up starts at delivery (due 48 h later, in opening hours).
                    super::follow_up::open_task(tx, &case, &follow_up, delivered, token)?;
                } else {
                    wo.status = "open".into();
                    repo::reopen_lines(tx, &wo.id)?;
                    repo::touch_work_order(tx, &mut wo, &at)?;
                    let why = format!("QC report v{} failed: {}", r.version, note.as_deref().unwrap_or_default());
                    stage_move(tx, &mut case, CaseStatus::InRepair, &actor, "rework", Some(&why))?;
                }
                Ok(r)
            })
            .await
    }

    /// The latest report's PDF: the store copy as signed, or the customer's copy rendered now from
    /// blurred photos (refused when a photo cannot be blurred).
    pub async fn report_pdf(&self, actor: &Actor, case_id: String, copy: Copy) -> Result<(QcReport, Vec<u8>), CaseError> {
        let cid = case_id.clone();
        let (report, stored) = self
            .store
            .read(move |tx| -> Result<_, CaseError> {
                let r = repo::latest_report(tx, &cid)?.ok_or(CaseError::NotFound("QC report"))?;
                let pdf = repo::report_pdf(tx, &r.id)?;
                Ok((r, pdf))
            })
            .await?;
        let bytes = match copy {
            Copy::Store => stored.ok_or(CaseError::NotFound("QC report PDF"))?,
            Copy::Customer => {
                let note = report.body.get("inspector_note").and_then(|v| v.as_str()).map(String::from);
                let cid = case_id.clone();
                let task = self.store.read(move |tx| crate::store::follow_up::task_of_case(tx, &cid)).await?;
                let qr = task.and_then(|t| super::follow_up::survey_qr(&self.follow_up, &t.token));
                let doc = self.report_doc(&case_id, Copy::Customer, report.passed, actor, note, qr).await?;
                let (font, labels) = (self.report.font.clone(), self.report.labels.clone());
                tokio::task::spawn_blocking(move || -> Result<_, CaseError> {
                    let font = pdf::ReportFont::load(&font).map_err(|e| CaseError::Unavailable(e.to_string()))?;
                    pdf::render(&doc, &font, &labels).map_err(|e| CaseError::Unavailable(e.to_string()))
                })
                .await
                .map_err(|_| CaseError::Unavailable("the report renderer stopped".into()))??
            }
        };
        let actor = actor.clone();
        let rid = report.id.clone();
        self.store
            .write(move |tx| -> Result<(), CaseError> {
                audit::record(
                    tx,
                    &actor,
                    if copy == Copy::Store { "qc.report_read" } else { "qc.report_customer_copy" },
                    "qc_report",
                    Some(&rid),
                    "ok",
                )?;
                Ok(())
            })
            .await?;
        Ok((report, bytes))
    }

    /// The report's content. The customer's copy: blurred thumbnails (or an error), a masked plate,
    /// confirmed alerts only.
    async fn report_doc(
        &self,
        case_id: &str,
        copy: Copy,
        passed: bool,
        actor: &Actor,
        note: Option<String>,
        survey: Option<pdf::SurveyQr>,
    ) -> Result<pdf::QcReportDoc, CaseError> {
        let cid = case_id.to_string();
        let tables = self.tables.clone();
        let catalog = self.catalog.get();
        let store_name = self.report.store_name.clone();
        let inspector = actor.username.clone();
        let gathered = self
            .store
            .read(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &cid)?.ok_or(CaseError::NotFound("case"))?;
                let vehicle = match &case.vehicle_id {
                    Some(v) => store::people::vehicle(tx, v)?,
                    None => None,
                };
                let wo = repo::doc_of(tx, &cid)?.ok_or_else(|| CaseError::state("no_work_order", "the case has no work order"))?;
                let cmp: Option<ComparisonView> = repo::comparison(tx, &cid)?.and_then(|v| serde_json::from_value(v).ok());
                let cmp = cmp.ok_or_else(|| CaseError::state("not_compared", "compare the after photos with the baseline first"))?;
                let flags = repo::flags_of(tx, &cid)?;
                let mut photos = Vec::new();
                for p in &cmp.pairs {
                    for id in [&p.before_photo, &p.after_photo].into_iter().flatten() {
                        if let Some(ph) = store::photos::get(tx, id)? {
                            let analysis = store::photos::analysis(tx, id);
                            photos.push((id.clone(), ph, analysis));
                        }
                    }
                }
                let seq = repo::next_report_version(tx, &cid)?;
                Ok((case, vehicle, wo, cmp, flags, photos, seq))
            })
            .await?;
        let (case, vehicle, wo, cmp, flags, photos, seq) = gathered;
        let files = self.files.clone();
        // Thumbnails: decoded, blurred for the customer (fail closed), scaled and re-encoded.
        let thumbs = tokio::task::spawn_blocking(move || -> Result<Vec<(String, Vec<u8>)>, CaseError> {
            let mut out = Vec::new();
            for (id, ph, analysis) in photos {
                let img = files.open_image(&ph.case_id, &ph.sha256).map_err(|e| CaseError::state("unreadable_photo", e))?;
                let img = if copy == Copy::Customer {
                    let dets = privacy_detections(analysis)?;
                    DynamicImage::ImageRgb8(crate::vision::blur::blur_pii(&img, &dets))
                } else {
                    img
                };
                if let Some(j) = thumb_jpeg(&img) {
                    out.push((id, j));
                }
            }
            Ok(out)
        })
        .await
        .map_err(|_| CaseError::Unavailable("the thumbnail worker stopped".into()))??;
        let thumb = |id: &Option<String>| id.as_ref().and_then(|id| thumbs.iter().find(|(t, _)| t == id).map(|(_, j)| j.clone()));
        let at_local = chrono::Local::now().format("%Y-%m-%d %H:%M").to_string();
        let vehicle_line = match &vehicle {
            Some(v) => {
                let plate = v.plate.clone().unwrap_or_default();
                let plate = if copy == Copy::Customer { mask(&plate) } else { plate };
                let vin = v.vin.clone().unwrap_or_default();
                let vin = if copy == Copy::Customer { mask(&vin) } else { vin };
                let model = [v.make.clone(), v.model.clone()].into_iter().flatten().collect::<Vec<_>>().join(" ");
                let km = v.mileage_km.map(|k| format!("{k} km")).unwrap_or_default();
                [plate, vin, model, km].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" / ")
            }
            None => String::new(),
        };
        let part_name =
            |id: &str| crate::domain::vocab::Part::from_id(id).map(|p| p.name_zh().to_string()).unwrap_or_else(|| id.to_string());
        let damage_name =
            |id: &str| crate::domain::vocab::DamageType::from_id(id).map(|d| d.name_zh().to_string()).unwrap_or_else(|| id.to_string());
        let mut findings = Vec::new();
        for (list, outcome) in [(&cmp.resolved, "已修复 resolved"), (&cmp.persisting, "仍存在 persisting"), (&cmp.new, "新增 new")]
        {
            for d in list {
                findings.push(pdf::FindingRow { part: part_name(&d.part), damage: damage_name(&d.damage), outcome: outcome.into() });
            }
        }
        let now_s = now();
        let labour = wo
            .lines
            .iter()
            .filter(|l| l.kind == "labour")
            .map(|l| {
                let clocked: f64 = wo.clock.iter().filter(|e| e.line_id == l.id).map(|e| e.hours(&now_s)).sum();
                let flag = flags
                    .iter()
                    .filter(|f| f.subject == l.id)
                    .map(|f| rules::FlagKind::parse(&f.kind).map(|k| k.name_zh()).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("、");
                pdf::LabourRow {
                    operation: format!("{} {}", l.code, l.name_zh),
                    standard_h: l.standard_hours.unwrap_or(0.0),
                    clocked_h: (clocked * 100.0).round() / 100.0,
                    flag,
                }
            })
            .collect();
        let parts = wo
            .parts
            .iter()
            .map(|p| pdf::PartRow {
                part_no: p.part_no.clone().unwrap_or_default(),
                name: p.part_no.as_deref().and_then(|n| catalog.part(n)).map(|c| c.name_zh.clone()).unwrap_or_default(),
                origin: crate::domain::workshop::Origin::parse(&p.origin).map(|o| o.name_zh().to_string()).unwrap_or_default(),
                code: p.gtin.clone().unwrap_or_else(|| p.code_text.chars().take(40).collect()),
                serial: p.serial.clone().unwrap_or_default(),
            })
            .collect();
        let alerts = flags
            .iter()
            .filter(|f| f.queue == "qc")
            .filter(|f| copy == Copy::Store || f.status == "confirmed")
            .map(|f| pdf::AlertRow {
                kind: rules::FlagKind::parse(&f.kind).map(|k| k.name_zh().to_string()).unwrap_or_else(|| f.kind.clone()),
                detail: f.detail.clone(),
                settlement: format!("{} {}", settled_zh(&f.status), f.note.clone().unwrap_or_default()).trim().to_string(),
            })
            .collect();
        let classes: Vec<String> = wo.lines.iter().filter_map(|l| l.labour_class.clone()).collect();
        let class_refs: Vec<&str> = classes.iter().map(String::as_str).collect();
        let w = tables.warranty_for(&class_refs);
        let day = chrono::Local::now().format("%Y%m%d").to_string();
        Ok(pdf::QcReportDoc {
            store_name,
            report_no: format!("QC-{day}-{}-{seq}", &case.id[case.id.len().saturating_sub(6)..]),
            case_id: case.id.clone(),
            vehicle: vehicle_line,
            customer_copy: copy == Copy::Customer,
            opened_at: local_time(&wo.order.opened_at),
            inspected_at: at_local.clone(),
            passed,
            checkpoints: cmp
                .pairs
                .iter()
                .map(|p| pdf::CheckpointRow {
                    name: p.name_zh.clone(),
                    before_jpeg: thumb(&p.before_photo),
                    after_jpeg: thumb(&p.after_photo),
                    note: match p.status.as_str() {
                        "same" => format!("视角一致 same view {:.2}", p.inlier_ratio.unwrap_or(0.0)),
                        "reshoot" => format!("视角不一致 view differs {:.2}", p.inlier_ratio.unwrap_or(0.0)),
                        _ => "未拍摄 not shot".into(),
                    },
                })
                .collect(),
            findings,
            parts,
            labour,
            alerts,
            inspector,
            inspector_note: note,
            certificate: pdf::Certificate {
                certificate_no: format!("JG-{day}-{}", &case.id[case.id.len().saturating_sub(6)..]),
                repair_class: w.name_zh.clone(),
                completed_at: at_local,
                mileage_km: vehicle.as_ref().and_then(|v| v.mileage_km),
                quality_inspector: actor.username.clone(),
                store_licence: if self.report.licence.is_empty() { "未设置 not set".into() } else { self.report.licence.clone() },
            },
            warranty: tables
                .warranty
                .iter()
                .map(|w| pdf::WarrantyRow { repair_class: w.name_zh.clone(), terms: format!("{} 天或 {} 公里", w.days, w.km) })
                .collect(),
            survey,
        })
    }
}

/// A stored UTC time as the store's local "YYYY-MM-DD HH:MM" (as printed on paper).
fn local_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

fn settled_zh(status: &str) -> &'static str {
    match status {
        "confirmed" => "已确认",
        "dismissed" => "已排除",
        "escalated" => "已转人工",
        _ => "待处理",
    }
}

/// Keep the first two and last two characters (京A···45), enough for the customer to recognise.
fn mask(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    if c.len() <= 4 {
        return "*".repeat(c.len());
    }
    format!("{}{}{}", c[..2].iter().collect::<String>(), "*".repeat(c.len() - 4), c[c.len() - 2..].iter().collect::<String>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_keep_the_ends() {
        assert_eq!(super::mask("京A12345"), "京A***45");
        assert_eq!(super::mask("ab"), "**");
    }
}

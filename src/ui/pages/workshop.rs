//! The workshop on the tablet (seed scenario 2, first half): the before-repair baseline at drop-off
//! (15 checkpoints, pre-existing damage, the customer's signature), the technician's bay (the work
//! order's lines and their clock, the parts scan, in-repair photos, the after-shots over the
//! see-through before photo) and the hand-over to QC. Each action is one `WorkshopService` call.

use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use warp::reply::Response;

use super::*;
use crate::case::work_order::{
    BaselineSignature, CheckpointShot, ClockAction, ClockCorrection, NewMark, Phase, ShotTarget, WorkshopService,
};
use crate::domain::workshop::Origin;

// --- shared pieces ---------------------------------------------------------------------------------

/// 303 back to `path` with the flash message and a fragment, so the page opens where the action was.
pub(super) fn back_at(path: &str, anchor: &str, r: Result<&str, ApiError>) -> Response {
    let resp = back(path, r);
    let Some(to) = resp.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok()) else { return resp };
    see_other(&format!("{to}#{anchor}"))
}

fn invalid(field: &str) -> ApiError {
    ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", field, field.to_string())
}

/// A checkpoint's name in the reader's language (the workshop table names each in both).
pub(super) fn checkpoint_name(t: &Strings, zh: &str, en: &str) -> String {
    if t.lang() == UiLang::En {
        en.to_string()
    } else {
        zh.to_string()
    }
}

pub(super) fn damage_words(t: &Strings, list: &[crate::domain::workshop::PartDamage]) -> Vec<String> {
    list.iter().map(|d| format!("{} {}", word(t, "part", &d.part), word(t, "damage", &d.damage))).collect()
}

/// A photo the reader may open (`/photo/{id}`), or nothing.
pub(super) fn photo_src(p: &Page, id: Option<&String>) -> Option<String> {
    id.filter(|_| p.may(RouteId::PhotosGet)).map(|id| format!("/photo/{id}"))
}

/// What the quality gate said about a checkpoint's photo, in catalogue words: the service keeps
/// the gate's messages that count for this checkpoint; their reason codes pick the words.
async fn reasons_in_words(s: &ApiState, t: &Strings, c: &CheckpointShot) -> Result<Vec<String>, ApiError> {
    match c.status.as_str() {
        "failed" => Ok(vec![t.s("photo.failed_hint").to_string()]),
        "reshoot" => {
            let Some(pid) = c.photo_id.clone() else { return Ok(c.reasons.clone()) };
            let a = s.store.read(move |tx| crate::store::photos::analysis(tx, &pid)).await?;
            let q = a.and_then(|a| a.quality).unwrap_or(Value::Null);
            let words: Vec<String> = q["issues"]
                .as_array()
                .into_iter()
                .flatten()
                .zip(q["messages"].as_array().into_iter().flatten())
                .filter(|(_, m)| c.reasons.iter().any(|r| m.as_str() == Some(r.as_str())))
                .filter_map(|(i, _)| i["reason"].as_str())
                .map(|r| t.of("quality", r))
                .collect();
            Ok(if words.is_empty() { c.reasons.clone() } else { words })
        }
        _ => Ok(vec![]),
    }
}

// --- the checkpoint cards --------------------------------------------------------------------------

/// One checkpoint's card: its latest shot of a phase, the gate's words, an upload for it. The
/// page renders it in its list, and the card alone answers the poll while the photo is analysed.
pub struct ShotCard {
    pub t: Strings,
    pub case_id: String,
    pub csrf: String,
    pub phase: &'static str,
    pub checkpoint: String,
    pub name: String,
    pub zone: bool,
    pub img: Option<String>,
    pub status: String,
    pub status_label: String,
    pub reasons: Vec<String>,
    pub damage: Vec<String>,
    /// After-shots: the before photo, laid over the camera or the chosen file to line it up.
    pub before_img: Option<String>,
    pub may_shoot: bool,
    /// The result of the upload that brought the reader back here (ok, text).
    pub flash: Option<(bool, String)>,
}

#[allow(clippy::too_many_arguments)]
async fn shot_card(
    p: &Page,
    s: &ApiState,
    case_id: &str,
    phase: Phase,
    c: &CheckpointShot,
    before: Option<&CheckpointShot>,
    may_shoot: bool,
    q: &Query,
) -> Result<ShotCard, ApiError> {
    let t = p.t;
    let tag = if phase == Phase::Before { "before" } else { "after" };
    let flash = (q.get("cp") == Some(&format!("{tag}-{}", c.checkpoint))).then(|| flash(&t, q)).and_then(|(ok, err)| match (ok, err) {
        (_, Some(e)) => Some((false, e)),
        (Some(o), None) => Some((true, o)),
        _ => None,
    });
    Ok(ShotCard {
        t,
        case_id: case_id.to_string(),
        csrf: p.csrf.clone(),
        phase: tag,
        checkpoint: c.checkpoint.clone(),
        name: checkpoint_name(&t, &c.name_zh, &c.name_en),
        zone: c.zone,
        img: photo_src(p, c.photo_id.as_ref()),
        status: c.status.clone(),
        status_label: t.of("shot_status", &c.status),
        reasons: reasons_in_words(s, &t, c).await?,
        damage: damage_words(&t, &c.damage),
        before_img: before.and_then(|b| photo_src(p, b.photo_id.as_ref())),
        may_shoot,
        flash,
    })
}

#[derive(Template)]
#[template(path = "shot_card_only.html", config = "src/ui/askama.toml")]
struct ShotCardOnly {
    sc: ShotCard,
}

/// One checkpoint's card (`phase` before or after): the page polls it while the photo is analysed.
pub async fn shot_card_poll(id: String, phase: String, cp: String, p: Page, s: Arc<ApiState>) -> Response {
    let r = async {
        let baseline = s.workshop.baseline(id.clone()).await?;
        let signed = baseline.signoff.is_some();
        let (ph, list) = match phase.as_str() {
            "before" => (Phase::Before, baseline.checkpoints.clone()),
            "after" => (Phase::After, s.workshop.qc_view(id.clone()).await?.after),
            _ => return Err(ApiError::not_found("checkpoint")),
        };
        let c = list.iter().find(|c| c.checkpoint == cp).ok_or_else(|| ApiError::not_found("checkpoint"))?;
        let b = (ph == Phase::After).then(|| baseline.checkpoints.iter().find(|x| x.checkpoint == cp)).flatten();
        let v = s.cases.get_case(id.clone()).await?;
        let may = may_shoot(&p, ph, v.case.status, signed);
        Ok::<_, ApiError>(ShotCardOnly { sc: shot_card(&p, &s, &id, ph, c, b, may, &Query::default()).await? })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => crate::ui::harden(warp::reply::with_status("", e.status).into_response()),
    }
}

/// Whether the reader may shoot this phase now: before-shots until the customer signs them, after
/// shots once the repair is done (in repair or at QC), as the service takes them.
fn may_shoot(p: &Page, phase: Phase, status: CaseStatus, signed: bool) -> bool {
    p.may(RouteId::CasesWorkshopPhotos)
        && match phase {
            Phase::Before => status == CaseStatus::Scheduled && !signed,
            Phase::After => matches!(status, CaseStatus::InRepair | CaseStatus::Qc),
            _ => status == CaseStatus::InRepair,
        }
}

// --- the workshop page -----------------------------------------------------------------------------

pub struct MarkRow {
    pub checkpoint: String,
    pub what: String,
    pub note: String,
    pub by: String,
}

pub struct LineRow {
    pub id: String,
    pub labour: bool,
    pub code: String,
    pub name: String,
    pub status: String,
    pub status_label: String,
    pub standard: String,
    pub clocked: String,
    /// Who is clocked on the line now.
    pub running: Vec<String>,
    pub may_start: bool,
    pub may_pause: bool,
    pub may_finish: bool,
    pub qty: i64,
    pub origin: String,
    pub scanned: usize,
}

pub struct ClockRow {
    pub id: String,
    pub line: String,
    pub technician: String,
    pub started: String,
    pub ended: String,
    pub start_value: String,
    pub end_value: String,
    pub corrected: Option<String>,
}

#[derive(Clone)]
pub struct PartRow {
    pub id: String,
    pub part_no: String,
    pub name: String,
    pub origin: String,
    pub code: String,
    pub serial: String,
    pub line: Option<String>,
    pub by: String,
    pub at: String,
}

pub struct ScanView {
    pub part: PartRow,
    pub flags: Vec<String>,
}

#[derive(Template)]
#[template(path = "workshop.html", config = "src/ui/askama.toml")]
struct WorkshopPage {
    c: Chrome,
    h: CaseHead,
    status: String,
    // The baseline at drop-off.
    before: Vec<ShotCard>,
    before_progress: String,
    marks: Vec<MarkRow>,
    may_mark: bool,
    checkpoints: Vec<(String, String)>,
    parts: Vec<(String, String)>,
    damages: Vec<(String, String)>,
    signoff: Option<String>,
    may_sign: bool,
    sign_waits: bool,
    customer: String,
    may_start: bool,
    start_waits: bool,
    // The bay.
    has_order: bool,
    bay: String,
    lines: Vec<LineRow>,
    clock: Vec<ClockRow>,
    may_correct: bool,
    fitted: Vec<PartRow>,
    scan: Option<ScanView>,
    may_scan: bool,
    origins: Vec<(String, String)>,
    in_repair_photos: Vec<String>,
    may_in_repair_photo: bool,
    after: Vec<ShotCard>,
    after_progress: String,
    show_after: bool,
    may_finish: bool,
    labour_open: usize,
    qc_link: bool,
}

fn local_input(at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|d| d.with_timezone(&chrono::Local).format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A `datetime-local` value (the tablet's wall clock) as RFC 3339; RFC 3339 passes through.
fn rfc3339_of(v: &str) -> Option<String> {
    use chrono::TimeZone;
    if chrono::DateTime::parse_from_rfc3339(v).is_ok() {
        return Some(v.to_string());
    }
    let n = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M"))
        .ok()?;
    chrono::Local.from_local_datetime(&n).earliest().map(|d| d.to_rfc3339())
}

pub async fn workshop_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    use crate::domain::vocab::{DamageType, Part};
    let r = async {
        let (h, v) = head(&p, &s, &id, "/workshop").await?;
        let status = v.case.status;
        let t = p.t;
        let baseline = s.workshop.baseline(id.clone()).await?;
        let doc = s.workshop.work_order(id.clone()).await?;
        let qc = s.workshop.qc_view(id.clone()).await?;
        let signed = baseline.signoff.is_some();

        let mut before = vec![];
        for c in &baseline.checkpoints {
            before.push(shot_card(&p, &s, &id, Phase::Before, c, None, may_shoot(&p, Phase::Before, status, signed), &q).await?);
        }
        let ok = |list: &[CheckpointShot]| list.iter().filter(|c| c.status == "ok").count();
        let total = baseline.checkpoints.len().to_string();
        let before_progress = t.f("baseline.progress", &[("n", &ok(&baseline.checkpoints).to_string()), ("total", &total)]);
        let name_of = |cp: &str| {
            baseline
                .checkpoints
                .iter()
                .find(|c| c.checkpoint == cp)
                .map(|c| checkpoint_name(&t, &c.name_zh, &c.name_en))
                .unwrap_or_default()
        };
        let marks = baseline
            .marks
            .iter()
            .map(|m| MarkRow {
                checkpoint: name_of(&m.checkpoint),
                what: format!("{} {}", word(&t, "part", &m.part), word(&t, "damage", &m.damage)),
                note: m.note.clone().unwrap_or_default(),
                by: m.marked_by.clone(),
            })
            .collect();
        let signoff = baseline
            .signoff
            .as_ref()
            .map(|so| t.f("baseline.signed_line", &[("name", &so.signed_by), ("at", &when(&so.at)), ("by", &so.recorded_by)]));
        let scheduled = status == CaseStatus::Scheduled;
        let customer = if p.may(RouteId::CustomersGet) && scheduled && !signed {
            s.cases.get_customer(&p.ctx.actor, v.case.customer_id.clone()).await.map(|(c, _)| c.name).unwrap_or_default()
        } else {
            String::new()
        };

        // The bay: lines and their clock, parts, shots.
        let in_repair = status == CaseStatus::InRepair;
        let me = p.ctx.user.username.as_str();
        let may_clock = p.may(RouteId::WorkOrderLineClock) && in_repair;
        let zh = t.lang() == UiLang::Zh;
        let (mut lines, mut clock, mut fitted, mut bay) = (vec![], vec![], vec![], String::new());
        if let Some(doc) = &doc {
            bay = doc.order.bay.clone().unwrap_or_default();
            // One running line per technician: while on one, the others offer no start.
            let busy = doc.clock.iter().any(|e| e.ended_at.is_none() && e.technician == me);
            for lc in WorkshopService::line_clocks(doc) {
                let l = &lc.line;
                let labour = l.kind == "labour";
                let open = labour && l.status != "done";
                let mine = doc.clock.iter().any(|e| e.line_id == l.id && e.ended_at.is_none() && e.technician == me);
                lines.push(LineRow {
                    id: l.id.clone(),
                    labour,
                    code: l.code.clone(),
                    name: if zh { l.name_zh.clone() } else { l.name_en.clone() },
                    status: l.status.clone(),
                    status_label: t.of("line_status", &l.status),
                    standard: l.standard_hours.map(|h| format!("{h:.1}")).unwrap_or_default(),
                    // + 0.0: the sum of no entries is -0.0 and would show as -0.00.
                    clocked: format!("{:.2}", lc.clocked_hours + 0.0),
                    running: doc.clock.iter().filter(|e| e.line_id == l.id && e.ended_at.is_none()).map(|e| e.technician.clone()).collect(),
                    may_start: may_clock && open && !busy,
                    may_pause: may_clock && mine,
                    // A line is finished by whoever is on it, or once paused.
                    may_finish: may_clock && open && (mine || l.status == "paused"),
                    qty: l.qty,
                    origin: l.billed_origin.as_deref().map(|o| t.of("origin", o)).unwrap_or_default(),
                    scanned: doc.parts.iter().filter(|x| x.line_id.as_deref() == Some(l.id.as_str())).count(),
                });
            }
            let code_of = |lid: &str| doc.lines.iter().find(|l| l.id == lid).map(|l| l.code.clone()).unwrap_or_default();
            clock = doc
                .clock
                .iter()
                .map(|e| ClockRow {
                    id: e.id.clone(),
                    line: code_of(&e.line_id),
                    technician: e.technician.clone(),
                    started: when(&e.started_at),
                    ended: e.ended_at.as_deref().map(when).unwrap_or_else(|| t.s("clock.running").to_string()),
                    start_value: local_input(&e.started_at),
                    end_value: e.ended_at.as_deref().map(local_input).unwrap_or_else(|| local_input(&crate::domain::now())),
                    corrected: e.corrected_by.as_ref().map(|b| format!("{b}: {}", e.correction_reason.as_deref().unwrap_or(""))),
                })
                .collect();
            let catalog = s.workshop.catalog.get();
            fitted = doc
                .parts
                .iter()
                .map(|x| {
                    let line = x.line_id.as_deref().and_then(|lid| doc.lines.iter().find(|l| l.id == lid));
                    let name = line
                        .map(|l| if zh { l.name_zh.clone() } else { l.name_en.clone() })
                        .or_else(|| {
                            x.part_no
                                .as_deref()
                                .and_then(|n| catalog.part(n))
                                .map(|c| if zh { c.name_zh.clone() } else { c.name_en.clone() })
                        })
                        .unwrap_or_default();
                    PartRow {
                        id: x.id.clone(),
                        part_no: x.part_no.clone().unwrap_or_default(),
                        name,
                        origin: t.of("origin", &x.origin),
                        code: format!("{} {}", x.symbology, x.code_text.chars().take(48).collect::<String>()),
                        serial: x.serial.clone().unwrap_or_default(),
                        line: line.map(|l| l.code.clone()),
                        by: x.scanned_by.clone(),
                        at: when(&x.scanned_at),
                    }
                })
                .collect();
        }
        // The scan that brought the technician back: its part and the flags it raised.
        let scan = q.get("part").and_then(|pid| fitted.iter().find(|x| x.id == pid)).map(|x| ScanView {
            part: x.clone(),
            flags: q.get("flags").unwrap_or("").split(',').filter(|k| !k.is_empty() && is_key(k)).map(|k| t.of("flag", k)).collect(),
        });
        fitted.reverse();
        let in_repair_photos = if in_repair && p.may(RouteId::PhotosGet) {
            let cid = id.clone();
            let shots = s.store.read(move |tx| crate::store::workshop::shots_of(tx, &cid)).await?;
            shots.into_iter().filter(|x| x.phase == Phase::InRepair.as_str()).map(|x| format!("/photo/{}", x.photo_id)).collect()
        } else {
            vec![]
        };

        let show_after = matches!(status, CaseStatus::InRepair | CaseStatus::Qc);
        let mut after = vec![];
        if show_after {
            for c in &qc.after {
                let b = baseline.checkpoints.iter().find(|b| b.checkpoint == c.checkpoint);
                after.push(shot_card(&p, &s, &id, Phase::After, c, b, may_shoot(&p, Phase::After, status, false), &q).await?);
            }
        }
        let shot = qc.after.iter().filter(|c| c.status != "missing").count();
        let after_progress =
            t.f("after.progress", &[("n", &shot.to_string()), ("ok", &ok(&qc.after).to_string()), ("total", &qc.after.len().to_string())]);
        let labour_open = lines.iter().filter(|l| l.labour && l.status != "done").count();

        Ok::<_, ApiError>(WorkshopPage {
            c: p.chrome(&format!("{} {}", t.s("workshop.title"), h.short), &q),
            status: status.as_str().to_string(),
            before,
            before_progress,
            marks,
            may_mark: p.may(RouteId::CasesBaselineMark) && scheduled && !signed,
            checkpoints: baseline.checkpoints.iter().map(|c| (c.checkpoint.clone(), checkpoint_name(&t, &c.name_zh, &c.name_en))).collect(),
            parts: vocab(&t, "part", Part::ALL.iter().map(|x| x.id())),
            damages: vocab(&t, "damage", DamageType::ALL.iter().map(|x| x.id())),
            signoff,
            may_sign: p.may(RouteId::CasesBaselineSign) && scheduled && !signed && baseline.complete,
            sign_waits: p.may(RouteId::CasesBaselineSign) && scheduled && !signed && !baseline.complete,
            customer,
            may_start: p.may(RouteId::CasesWorkOrderStart) && scheduled && signed && doc.is_none(),
            start_waits: p.may(RouteId::CasesWorkOrderStart) && scheduled && !signed,
            has_order: doc.is_some(),
            bay,
            lines,
            clock,
            may_correct: p.may(RouteId::ClockEntryCorrect),
            fitted,
            scan,
            may_scan: p.may(RouteId::CasesPartsScan) && in_repair,
            origins: ["oem", "equivalent", "refurbished"].iter().map(|o| (o.to_string(), t.of("origin", o))).collect(),
            in_repair_photos,
            may_in_repair_photo: may_shoot(&p, Phase::InRepair, status, false),
            after,
            after_progress,
            show_after,
            may_finish: p.may(RouteId::CasesWorkOrderFinish) && in_repair,
            labour_open,
            qc_link: matches!(status, CaseStatus::Qc | CaseStatus::Delivered) || qc.report.is_some(),
            h,
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

// --- actions ---------------------------------------------------------------------------------------

fn workshop_path(id: &str) -> String {
    format!("/cases/{id}/workshop")
}

/// A workshop photo (`phase` before, after or in_repair; `checkpoint` for before and after).
pub async fn upload_shot(id: String, p: Page, s: Arc<ApiState>, form: warp::multipart::FormData) -> Response {
    let to = workshop_path(&id);
    let mut up = match read_upload(&s, form).await.and_then(|u| u.checked(&p)) {
        Ok(u) => u,
        Err(e) if e.code == "forbidden" => return error_page(p.t, StatusCode::FORBIDDEN, "err.csrf"),
        Err(e) => return back(&to, Err(e)),
    };
    let phase = up.fields.get("phase").and_then(|x| Phase::parse(x)).filter(|x| *x != Phase::PartLabel);
    let checkpoint = up.fields.remove("checkpoint").filter(|c| !c.is_empty());
    let (anchor, cp) = match (phase, &checkpoint) {
        (Some(Phase::InRepair), _) | (None, _) => ("in-repair".to_string(), None),
        (Some(ph), Some(c)) => (format!("cp-{}-{c}", ph.as_str()), Some(format!("{}-{c}", ph.as_str()))),
        (Some(ph), None) => (ph.as_str().to_string(), None),
    };
    let r = async {
        let phase = phase.ok_or_else(|| invalid("phase"))?;
        let file = up.photo()?;
        crate::api::handlers::save_photo(&s, &p.ctx, id.clone(), file, None, Some(ShotTarget { phase, checkpoint })).await
    };
    let path = match cp {
        Some(cp) => format!("{to}?cp={}", urlencode(&cp)),
        None => to,
    };
    back_at(&path, &anchor, r.await.map(|_| "shot_uploaded"))
}

pub async fn mark(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let m = NewMark {
        checkpoint: f.get("checkpoint").unwrap_or("").to_string(),
        part: f.get("part").unwrap_or("").to_string(),
        damage_type: f.get("damage_type").unwrap_or("").to_string(),
        note: opt(&f, "note"),
    };
    let r = s.workshop.mark(&p.ctx.actor, id.clone(), m).await.map_err(ApiError::from);
    back_at(&workshop_path(&id), "marks", r.map(|_| "marked"))
}

pub async fn sign_baseline(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let b = BaselineSignature { signed_by: f.get("signed_by").unwrap_or("").to_string(), signature_png: opt(&f, "signature_png") };
    let r = s.workshop.sign_baseline(&p.ctx.actor, id.clone(), b).await.map_err(ApiError::from);
    back_at(&workshop_path(&id), "signoff", r.map(|_| "baseline_signed"))
}

pub async fn start_job(id: String, p: Page, _f: Form, s: Arc<ApiState>) -> Response {
    let r = s.workshop.start(&p.ctx.actor, id.clone()).await.map_err(ApiError::from);
    back_at(&workshop_path(&id), "bay", r.map(|_| "job_started"))
}

pub async fn finish_job(id: String, p: Page, _f: Form, s: Arc<ApiState>) -> Response {
    let r = s.workshop.finish(&p.ctx.actor, id.clone()).await.map_err(ApiError::from);
    back_at(&workshop_path(&id), if r.is_ok() { "bay" } else { "finish" }, r.map(|_| "job_finished"))
}

/// Start, pause or finish a labour line of this case's work order.
pub async fn clock(id: String, lid: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async {
        let (action, key) = match f.get("action") {
            Some("start") => (ClockAction::Start, "clock_started"),
            Some("pause") => (ClockAction::Pause, "clock_paused"),
            Some("finish") => (ClockAction::Finish, "clock_finished"),
            _ => return Err(invalid("action")),
        };
        let doc = s.workshop.work_order(id.clone()).await?.ok_or_else(|| ApiError::not_found("work order"))?;
        if !doc.lines.iter().any(|l| l.id == lid) {
            return Err(ApiError::not_found("work order line"));
        }
        s.workshop.clock(&p.ctx.actor, lid.clone(), action).await?;
        Ok(key)
    };
    back_at(&workshop_path(&id), &format!("line-{lid}"), r.await)
}

/// A manager's correction of a clock entry (the times as the tablet's wall clock).
pub async fn correct_clock(id: String, eid: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async {
        let started_at = f.get("started_at").and_then(rfc3339_of).ok_or_else(|| invalid("started_at"))?;
        let ended_at = f.get("ended_at").and_then(rfc3339_of).ok_or_else(|| invalid("ended_at"))?;
        let c = ClockCorrection { started_at, ended_at, reason: f.get("reason").unwrap_or("").to_string() };
        s.workshop.correct_clock(&p.ctx.actor, eid.clone(), c).await.map_err(ApiError::from)
    };
    back_at(&workshop_path(&id), "clock", r.await.map(|_| "clock_corrected"))
}

/// The parts scan: the label's photo (and the origin where the label does not say). The page
/// comes back with the part and the kinds of the flags the scan raised.
pub async fn scan_part(id: String, p: Page, s: Arc<ApiState>, form: warp::multipart::FormData) -> Response {
    let to = workshop_path(&id);
    let mut up = match read_upload(&s, form).await.and_then(|u| u.checked(&p)) {
        Ok(u) => u,
        Err(e) if e.code == "forbidden" => return error_page(p.t, StatusCode::FORBIDDEN, "err.csrf"),
        Err(e) => return back(&to, Err(e)),
    };
    let r = async {
        let origin = match up.fields.get("origin").map(String::as_str) {
            None | Some("") => None,
            Some(o) => Some(Origin::parse(o).ok_or_else(|| invalid("origin"))?),
        };
        let file = up.photo()?;
        let target = ShotTarget { phase: Phase::PartLabel, checkpoint: None };
        let photo = crate::api::handlers::save_photo(&s, &p.ctx, id.clone(), file, None, Some(target)).await?;
        Ok::<_, ApiError>(s.workshop.scan_part(&p.ctx.actor, photo, origin).await?)
    };
    match r.await {
        Ok(res) => {
            let kinds: Vec<&str> = res.flags.iter().map(|f| f.kind.as_str()).collect();
            see_other(&format!("{to}?ok=part_scanned&part={}&flags={}#parts", urlencode(&res.part.id), urlencode(&kinds.join(","))))
        }
        Err(e) => back_at(&to, "parts", Err(e)),
    }
}

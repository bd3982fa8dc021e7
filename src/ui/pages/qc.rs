//! Quality control (seed scenario 2, second half): the inspector's queue, the before/after
//! comparison with its alerts and the signed report. Each action is one `WorkshopService` call.

use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use warp::reply::Response;

use super::*;
use crate::case::qc::{Copy, SignReport};
use crate::case::work_order::{Decision as Settle, Settlement};
use crate::store::workshop::Flag;

// --- flags and alerts ------------------------------------------------------------------------------

pub struct FlagRow {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub kind_label: String,
    /// What the flag is about, in words: the work-order line or the checkpoint.
    pub subject: String,
    pub detail: String,
    pub status: String,
    pub status_label: String,
    pub raised: String,
    pub settled: Option<String>,
    pub may_settle: bool,
}

/// Whether the reader may settle this flag, as the service decides it: a manager settles any flag
/// not yet confirmed or dismissed; an inspector settles open QC alerts. The page offers the buttons
/// only where they would work.
fn may_settle(p: &Page, f: &Flag) -> bool {
    let open = matches!(f.status.as_str(), "open" | "escalated");
    p.may(RouteId::WorkshopFlagSettle)
        && open
        && (p.ctx.user.role == Role::Manager || (f.queue == "qc" && f.status == "open" && p.ctx.user.role == Role::QcInspector))
}

/// A flag's subject in words: a work-order line (`BP-DOOR-PANEL 车门钣金修复`) or a checkpoint;
/// other subjects (a part number, a serial) as they are.
pub(super) fn subject_of(t: &Strings, subject: &str, lines: &[crate::store::workshop::Line], checkpoints: &[(String, String)]) -> String {
    if let Some(l) = lines.iter().find(|l| l.id == subject) {
        return format!("{} {}", l.code, if t.lang() == UiLang::Zh { &l.name_zh } else { &l.name_en });
    }
    if let Some((_, name)) = checkpoints.iter().find(|(id, _)| id == subject) {
        return name.clone();
    }
    // An id of something the page does not show (a finding) says nothing to the reader.
    if subject.len() == 36 && subject.bytes().filter(|b| *b == b'-').count() == 4 {
        return String::new();
    }
    subject.to_string()
}

pub(super) fn flag_row(p: &Page, f: &Flag, subject: String) -> FlagRow {
    let t = p.t;
    FlagRow {
        id: f.id.clone(),
        queue: f.queue.clone(),
        kind: f.kind.clone(),
        kind_label: t.of("flag", &f.kind),
        subject,
        detail: f.detail.clone(),
        status: f.status.clone(),
        status_label: t.of("flag_status", &f.status),
        raised: when(&f.raised_at),
        settled: f.settled_by.as_ref().map(|by| {
            let at = f.settled_at.as_deref().map(when).unwrap_or_default();
            let note = f.note.as_deref().map(|n| format!(" · {n}")).unwrap_or_default();
            format!("{by} {at}{note}")
        }),
        may_settle: may_settle(p, f),
    }
}

pub(super) fn settlement(f: &Form) -> Result<Settlement, ApiError> {
    let decision = match f.get("decision") {
        Some("confirm") => Settle::Confirm,
        Some("dismiss") => Settle::Dismiss,
        Some("escalate") => Settle::Escalate,
        _ => return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "decision", "decision")),
    };
    Ok(Settlement { decision, note: opt(f, "note") })
}

// --- the inspector's queue -------------------------------------------------------------------------

pub struct QcRow {
    pub case: CaseRow,
    pub alerts: usize,
}

#[derive(Template)]
#[template(path = "qc_queue.html", config = "src/ui/askama.toml")]
struct QcQueuePage {
    c: Chrome,
    rows: Vec<QcRow>,
}

/// 质检: the cases at QC, with how many alerts each still has open.
pub async fn qc_queue(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let mut f = filter(None, 100);
        f.status = Some(CaseStatus::Qc);
        let cases = s.cases.list_cases(f).await?;
        let alerts = if p.may(RouteId::WorkshopFlags) { s.workshop.queue("qc".into(), true).await? } else { vec![] };
        let rows =
            cases.iter().map(|c| QcRow { case: case_row(&p.t, c), alerts: alerts.iter().filter(|a| a.case_id == c.id).count() }).collect();
        Ok::<_, ApiError>(QcQueuePage { c: p.chrome(p.t.s("qc.queue_title"), &q), rows })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

// --- one case's QC -----------------------------------------------------------------------------------

pub struct PairRow {
    pub checkpoint: String,
    pub name: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub status: String,
    pub status_label: String,
    pub ratio: String,
}

pub struct ReportView {
    pub version: i64,
    pub passed: bool,
    pub verdict: String,
    pub inspector: String,
    pub at: String,
    pub note: String,
}

#[derive(Template)]
#[template(path = "qc.html", config = "src/ui/askama.toml")]
struct QcPage {
    c: Chrome,
    h: CaseHead,
    after_progress: String,
    compared: Option<String>,
    pairs: Vec<PairRow>,
    outcome: Vec<(String, String, Vec<String>)>,
    alerts: Vec<FlagRow>,
    settle_base: String,
    open_alerts: usize,
    report: Option<ReportView>,
    status_label: String,
    may_compare: bool,
    may_sign: bool,
    may_pdf: bool,
    may_reshoot: bool,
}

pub async fn qc_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "/qc").await?;
        let t = p.t;
        let view = s.workshop.qc_view(id.clone()).await?;
        let at_qc = view.case_status == CaseStatus::Qc;
        let shot = view.after.iter().filter(|c| c.status != "missing").count();
        let ok = view.after.iter().filter(|c| c.status == "ok").count();
        let after_progress =
            t.f("after.progress", &[("n", &shot.to_string()), ("ok", &ok.to_string()), ("total", &view.after.len().to_string())]);
        let (mut pairs, mut outcome, mut compared) = (vec![], vec![], None);
        if let Some(cmp) = &view.comparison {
            compared = Some(t.f("qc.compared_at", &[("at", &when(&cmp.compared_at)), ("s", &format!("{:.1}", cmp.seconds))]));
            pairs = cmp
                .pairs
                .iter()
                .map(|x| PairRow {
                    checkpoint: x.checkpoint.clone(),
                    name: checkpoint_name(&t, &x.name_zh, &x.name_en),
                    before: photo_src(&p, x.before_photo.as_ref()),
                    after: photo_src(&p, x.after_photo.as_ref()),
                    status: x.status.clone(),
                    status_label: t.of("pair", &x.status),
                    ratio: x.inlier_ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
                })
                .collect();
            for (key, list) in
                [("resolved", &cmp.resolved), ("persisting", &cmp.persisting), ("unchanged", &cmp.unchanged), ("new", &cmp.new)]
            {
                outcome.push((key.to_string(), t.s(&format!("outcome.{key}")).to_string(), damage_words(&t, list)));
            }
        }
        pairs.sort_by_key(|x| x.status == "same");
        let lines = s.workshop.work_order(id.clone()).await?.map(|d| d.lines).unwrap_or_default();
        let names: Vec<(String, String)> =
            view.after.iter().map(|c| (c.checkpoint.clone(), checkpoint_name(&t, &c.name_zh, &c.name_en))).collect();
        let alerts: Vec<FlagRow> = view.alerts.iter().map(|f| flag_row(&p, f, subject_of(&t, &f.subject, &lines, &names))).collect();
        let open_alerts = view.alerts.iter().filter(|f| f.queue == "qc" && matches!(f.status.as_str(), "open" | "escalated")).count();
        let report = view.report.as_ref().map(|r| ReportView {
            version: r.version,
            passed: r.passed,
            verdict: t.s(if r.passed { "qc.passed" } else { "qc.failed" }).to_string(),
            inspector: r.inspector.clone(),
            at: when(&r.signed_at),
            note: r.body.get("inspector_note").and_then(|n| n.as_str()).unwrap_or("").to_string(),
        });
        Ok::<_, ApiError>(QcPage {
            c: p.chrome(&format!("{} {}", t.s("qc.title"), h.short), &q),
            after_progress,
            compared,
            pairs,
            outcome,
            open_alerts,
            alerts,
            settle_base: format!("/cases/{id}/qc/alerts/"),
            may_pdf: p.may(RouteId::CasesQcReportPdf) && report.is_some(),
            report,
            status_label: t.of("status", v.case.status.as_str()),
            may_compare: p.may(RouteId::CasesQcCompare) && at_qc,
            may_sign: p.may(RouteId::CasesQcReport) && at_qc && view.comparison.is_some(),
            may_reshoot: p.may(RouteId::CasesWorkshopPhotos) && at_qc,
            h,
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

fn qc_path(id: &str) -> String {
    format!("/cases/{id}/qc")
}

pub async fn compare(id: String, p: Page, _f: Form, s: Arc<ApiState>) -> Response {
    let r = s.workshop.compare(&p.ctx.actor, id.clone()).await.map_err(ApiError::from);
    back_at(&qc_path(&id), "pairs", r.map(|_| "compared"))
}

pub async fn settle_alert(id: String, fid: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async {
        let d = settlement(&f)?;
        // The alert must be this case's: the page posts only its own.
        let view = s.workshop.qc_view(id.clone()).await?;
        if !view.alerts.iter().any(|a| a.id == fid) {
            return Err(ApiError::not_found("flag"));
        }
        s.workshop.settle(&p.ctx.actor, fid.clone(), d).await.map_err(ApiError::from)
    };
    back_at(&qc_path(&id), "alerts", r.await.map(|_| "alert_settled"))
}

pub async fn sign_report(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async {
        let passed = match f.get("verdict") {
            Some("pass") => true,
            Some("fail") => false,
            _ => return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "verdict", "verdict")),
        };
        s.workshop.sign_report(&p.ctx.actor, id.clone(), SignReport { passed, note: opt(&f, "note") }).await.map_err(ApiError::from)
    };
    match r.await {
        Ok(rep) => back_at(&qc_path(&id), "report", Ok(if rep.passed { "report_passed" } else { "report_failed" })),
        Err(e) => back_at(&qc_path(&id), "sign", Err(e)),
    }
}

/// The latest report as a PDF: `?copy=store` (as signed) or `customer` (blurred, confirmed alerts).
pub async fn report_pdf(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let copy = if q.get("copy") == Some("customer") { Copy::Customer } else { Copy::Store };
    match s.workshop.report_pdf(&p.ctx.actor, id, copy).await {
        Ok((r, bytes)) => crate::ui::harden(crate::api::workshop::pdf_download(&r.case_id, r.version, copy, bytes)),
        Err(e) => failed(&p, e.into()),
    }
}

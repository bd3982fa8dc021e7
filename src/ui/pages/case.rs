//! One case: its head (status, tabs, take / hand to a person), the overview and timeline, the
//! intake conversation with the model's rewording streamed in.

use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use warp::reply::Response;

use super::*;

// ---------------------------------------------------------------------------------------------
// The case: its head (status, tabs, hand to a person) and its pages.

pub struct Tab {
    pub href: String,
    pub label: String,
    pub active: bool,
}

pub struct CaseHead {
    pub id: String,
    pub short: String,
    pub status: String,
    pub status_label: String,
    pub needs_review: bool,
    pub summary: String,
    pub vehicle: String,
    pub tabs: Vec<Tab>,
    pub may_escalate: bool,
    pub may_take: bool,
    pub may_hand_back: bool,
    pub csrf: String,
}

pub(super) async fn head(p: &Page, s: &ApiState, id: &str, active: &str) -> Result<(CaseHead, crate::case::CaseView), ApiError> {
    let v = s.cases.get_case(id.to_string()).await?;
    // The workshop from drop-off on; QC once the car has been handed to it.
    use CaseStatus::{Closed, Delivered, FollowUp, InRepair, Qc, Scheduled};
    let st = v.case.status;
    let workshop = matches!(st, Scheduled | InRepair | Qc | Delivered);
    let qc = matches!(st, Qc | Delivered);
    // Delivery (consent, the sheet) and the follow-up call once the car is handed back.
    let handed_back = matches!(st, Delivered | FollowUp | Closed);
    let tabs = [
        ("", "tab.overview", RouteId::CasesGet, true),
        ("/intake", "tab.intake", RouteId::CasesMessagesList, true),
        ("/photos", "tab.photos", RouteId::CasesGet, true),
        ("/findings", "tab.findings", RouteId::CasesFindings, true),
        ("/estimate", "tab.estimate", RouteId::CasesEstimateGet, true),
        ("/workshop", "tab.workshop", RouteId::CasesWorkshop, workshop),
        ("/qc", "tab.qc", RouteId::CasesWorkshop, qc),
        ("/delivery", "fu_tab.delivery", RouteId::CasesConsent, handed_back),
        ("/follow-up", "fu_tab.follow_up", RouteId::CasesFollowUp, handed_back),
    ]
    .iter()
    .filter(|(_, _, r, shown)| *shown && p.may(*r))
    .map(|(suffix, key, _, _)| Tab { href: format!("/cases/{id}{suffix}"), label: p.t.s(key).to_string(), active: *suffix == active })
    .collect();
    let vehicle = v
        .vehicle
        .as_ref()
        .map(|x| [x.plate.clone(), x.make.clone(), x.model.clone(), x.vin.clone()].into_iter().flatten().collect::<Vec<_>>().join(" · "))
        .unwrap_or_default();
    let escalated = v.case.status == CaseStatus::Escalated;
    let h = CaseHead {
        id: id.to_string(),
        short: short_id(id),
        status: v.case.status.as_str().to_string(),
        status_label: p.t.of("status", v.case.status.as_str()),
        needs_review: v.case.needs_review,
        summary: v.case.summary.clone(),
        vehicle,
        tabs,
        may_escalate: p.may(RouteId::CasesEscalate) && !escalated,
        may_take: p.may(RouteId::CasesAssign) && v.case.assigned_to != Some(p.ctx.user.id),
        may_hand_back: p.may(RouteId::CasesHandBack) && escalated,
        csrf: p.csrf.clone(),
    };
    Ok((h, v))
}

pub struct TimelineRow {
    pub at: String,
    pub actor: String,
    pub what: String,
    pub reason: String,
}

pub struct PhotoRow {
    pub id: String,
    /// What the page shows: the annotated photo once analysed, the original before.
    pub img: Option<String>,
    /// A bad photo's reshoot button: (link, label).
    pub retake: Option<(String, String)>,
    pub shot: String,
    pub state: String,
    pub ok: bool,
    pub reasons: Vec<String>,
    pub pending: bool,
    pub case_id: String,
}

#[derive(Template)]
#[template(path = "case.html", config = "src/ui/askama.toml")]
struct CasePage {
    c: Chrome,
    h: CaseHead,
    customer: String,
    timeline: Vec<TimelineRow>,
    photos: Vec<PhotoRow>,
    estimate: Option<String>,
    appointment: Option<String>,
    history: Vec<HistoryLine>,
}

/// One earlier visit of the car (DMS history), newest first.
pub struct HistoryLine {
    pub date: String,
    pub mileage: String,
    pub ro_no: String,
    pub operations: String,
    /// It touched a part one of the case's findings names.
    pub same_part: bool,
}

pub async fn case_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "").await?;
        let customer = if p.may(RouteId::CustomersGet) {
            s.cases.get_customer(&p.ctx.actor, v.case.customer_id.clone()).await.map(|(c, _)| c.name).unwrap_or_default()
        } else {
            String::new()
        };
        let timeline = v
            .timeline
            .iter()
            .rev()
            .map(|e| TimelineRow {
                at: when(&e.at),
                actor: e.actor.clone(),
                what: match e.to_status {
                    Some(st) => p.t.f("timeline.moved", &[("status", &p.t.of("status", st.as_str()))]),
                    None => p.t.of("event", &e.kind),
                },
                reason: e.reason.clone().unwrap_or_default(),
            })
            .collect();
        let mut photos = vec![];
        for ph in &v.photos {
            photos.push(photo_row(&p, &s, &id, ph).await?);
        }
        let estimate = match s.estimates.latest(id.clone()).await {
            Ok(e) => Some(p.t.f(
                "case.estimate_line",
                &[
                    ("v", &e.version.to_string()),
                    ("total", &money(e.total_fen as f64 / 100.0)),
                    ("state", &p.t.of("estimate_state", &e.status)),
                ],
            )),
            Err(crate::case::CaseError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let appointment = appointment_text(&p.t, &s, &id).await?;
        let history = s
            .imports
            .dms
            .case_history(id.clone())
            .await?
            .into_iter()
            .map(|r| HistoryLine {
                date: r.visit.visit_date.clone(),
                mileage: r.visit.mileage_km.map(|km| p.t.f("history.km", &[("km", &km.to_string())])).unwrap_or_default(),
                ro_no: r.visit.ro_no.clone(),
                operations: r.visit.operations.iter().chain(&r.visit.parts).cloned().collect::<Vec<_>>().join("、"),
                same_part: r.same_part,
            })
            .collect();
        Ok::<_, ApiError>(CasePage {
            c: p.chrome(&format!("{} {}", p.t.s("case.title"), h.short), &q),
            h,
            customer,
            timeline,
            photos,
            estimate,
            appointment,
            history,
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

pub(super) async fn appointment_text(t: &Strings, s: &ApiState, id: &str) -> Result<Option<String>, ApiError> {
    match s.schedule.appointment(id.to_string()).await {
        Ok(a) if a.status == "booked" => Ok(Some(t.f(
            "case.appointment_line",
            &[
                ("start", &a.starts_at.replace('T', " ")[..16.min(a.starts_at.len())]),
                ("end", a.ends_at.get(11..16).unwrap_or("")),
                ("bay", &a.bay),
            ],
        ))),
        Ok(_) | Err(crate::case::CaseError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn photo_row(p: &Page, s: &ApiState, case_id: &str, ph: &crate::domain::Photo) -> Result<PhotoRow, ApiError> {
    let t = &p.t;
    let pid = ph.id.clone();
    let a = s.store.read(move |tx| crate::store::photos::analysis(tx, &pid)).await?;
    let done = a.as_ref().is_some_and(|a| a.status == "done");
    let (state, ok, reasons, pending) = match a {
        None => (t.s("photo.pending").to_string(), false, vec![], true),
        Some(a) if a.status == "done" => {
            let quality = a.quality.unwrap_or(Value::Null);
            let ok = quality["ok"].as_bool().unwrap_or(false);
            let reasons: Vec<String> = quality["issues"]
                .as_array()
                .map(|v| v.iter().filter_map(|i| i["reason"].as_str()).map(|r| t.of("quality", r)).collect())
                .unwrap_or_default();
            (if ok { t.s("photo.ok").to_string() } else { t.s("photo.retake").to_string() }, ok, reasons, false)
        }
        Some(_) => (t.s("photo.failed").to_string(), false, vec![t.s("photo.failed_hint").to_string()], false),
    };
    let img = if done && p.may(RouteId::PhotosAnnotated) {
        Some(format!("/photo/{}/annotated", ph.id))
    } else if p.may(RouteId::PhotosGet) {
        Some(format!("/photo/{}", ph.id))
    } else {
        None
    };
    let retake = (done && !ok && p.may(RouteId::PhotosUpload)).then(|| {
        (format!("/cases/{case_id}/photos?shot={}", ph.shot.as_deref().unwrap_or("close_up")), t.s("photo.retake_button").to_string())
    });
    Ok(PhotoRow {
        id: ph.id.clone(),
        img,
        retake,
        shot: t.of("shot", ph.shot.as_deref().unwrap_or("other")),
        state,
        ok,
        reasons,
        pending,
        case_id: case_id.to_string(),
    })
}

// --- intake --------------------------------------------------------------------------------------

pub struct ChatRow {
    pub customer: bool,
    pub text: String,
    pub at: String,
    pub degraded: bool,
    /// Where the model's rewording of this question streams from, while it is pending.
    pub stream: Option<String>,
}

#[derive(Template)]
#[template(path = "intake.html", config = "src/ui/askama.toml")]
struct IntakePage {
    c: Chrome,
    h: CaseHead,
    chat: Vec<ChatRow>,
    may_post: bool,
    next_photos: bool,
}

pub async fn intake_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "/intake").await?;
        let messages = s.intake.messages(&p.ctx.actor, id.clone()).await?;
        let last = messages.last().map(|m| m.id);
        let may_phrase = p.may(RouteId::CasesMessagesPost) && s.intake.can_phrase();
        let chat = messages
            .into_iter()
            .map(|m| ChatRow {
                customer: m.sender == "customer",
                degraded: m.meta.as_ref().and_then(|x| x["degraded"].as_bool()).unwrap_or(false),
                stream: (may_phrase && Some(m.id) == last && crate::case::intake::phrase_pending(&m))
                    .then(|| format!("/cases/{id}/intake/phrase")),
                text: m.text,
                at: when(&m.at),
            })
            .collect::<Vec<_>>();
        let next_photos = matches!(v.case.status, CaseStatus::Intake);
        Ok::<_, ApiError>(IntakePage {
            c: p.chrome(p.t.s("intake.title"), &q),
            h,
            chat,
            may_post: p.may(RouteId::CasesMessagesPost),
            next_photos,
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

pub async fn post_message(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let to = format!("/cases/{id}/intake");
    let text = f.get("text").unwrap_or("").to_string();
    // The template's question at once; the page streams the model's wording in after.
    match s.intake.message_now(&p.ctx.actor, id, text).await {
        Ok(_) => see_other(&format!("{to}#last")),
        Err(e) => back(&to, Err(e.into())),
    }
}

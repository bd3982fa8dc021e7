//! The estimate and what follows it: the priced lines, the streamed wording, the printable
//! quote, the customer's signed approval and the booking.

use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use warp::reply::Response;

use super::*;

// --- estimate, approval, booking -----------------------------------------------------------------

pub struct LineRow {
    pub name: String,
    pub detail: String,
    pub amount: String,
}

pub struct SlotRow {
    pub start: String,
    pub label: String,
}

pub struct EstimateView {
    pub version: i64,
    pub lines: Vec<LineRow>,
    pub total: String,
    pub range: String,
    pub days: u32,
    pub hours: String,
    pub explanation: String,
    pub from_model: bool,
    pub approved: bool,
    pub parts_choice: String,
    pub awaiting: Vec<String>,
    pub created: String,
}

#[derive(Template)]
#[template(path = "estimate.html", config = "src/ui/askama.toml")]
struct EstimatePage {
    c: Chrome,
    h: CaseHead,
    e: Option<EstimateView>,
    may_create: bool,
    may_approve: bool,
    may_book: bool,
    stream: bool,
    customer: String,
    slots: Vec<SlotRow>,
    appointment: Option<String>,
    may_cancel: bool,
    approval_lead: String,
}

pub(super) fn estimate_view(t: &Strings, e: &crate::store::estimates::StoredEstimate) -> EstimateView {
    let plan = &e.plan;
    let zh = t.lang() == UiLang::Zh;
    let name = |x: &Value| x[if zh { "name_zh" } else { "name_en" }].as_str().unwrap_or("").to_string();
    let mut lines = vec![];
    for l in plan["labour"].as_array().into_iter().flatten() {
        lines.push(LineRow {
            name: name(l),
            detail: t.f("estimate.labour_detail", &[("h", &format!("{:.1}", l["hours"].as_f64().unwrap_or(0.0)))]),
            amount: money(l["amount"].as_f64().unwrap_or(0.0)),
        });
    }
    let mut choice = "oem".to_string();
    for x in plan["parts"].as_array().into_iter().flatten() {
        choice = x["chosen"].as_str().unwrap_or("oem").to_string();
        lines.push(LineRow {
            name: name(x),
            detail: format!("× {} · {}", x["qty"].as_u64().unwrap_or(1), t.of("parts_choice", &choice)),
            amount: money(x["amount"].as_f64().unwrap_or(0.0)),
        });
    }
    let range = plan["range"]
        .as_array()
        .filter(|r| r.len() == 2)
        .map(|r| format!("¥{} – ¥{}", money(r[0].as_f64().unwrap_or(0.0)), money(r[1].as_f64().unwrap_or(0.0))))
        .unwrap_or_default();
    let awaiting = plan["awaiting_review"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!("{} {}", word(t, "part", a["part"].as_str().unwrap_or("")), word(t, "damage", a["damage_type"].as_str().unwrap_or("")))
        })
        .collect();
    EstimateView {
        version: e.version,
        lines,
        total: money(e.total_fen as f64 / 100.0),
        range,
        days: plan["days"].as_u64().unwrap_or(1) as u32,
        hours: format!("{:.1}", plan["hours"].as_f64().unwrap_or(0.0)),
        explanation: e.explanation.clone(),
        from_model: e.explanation_from_llm,
        approved: e.status == "approved",
        parts_choice: choice,
        awaiting,
        created: when(&e.created_at),
    }
}

pub async fn estimate_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "/estimate").await?;
        let stored = match s.estimates.latest(id.clone()).await {
            Ok(e) => Some(e),
            Err(crate::case::CaseError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let e = stored.as_ref().map(|x| estimate_view(&p.t, x));
        let booked = s.schedule.appointment(id.clone()).await.ok().filter(|a| a.status == "booked");
        let approved = e.as_ref().is_some_and(|e| e.approved);
        let slots = match (&stored, approved, &booked, p.may(RouteId::SlotsList)) {
            (Some(st), true, None, true) => {
                let hours = st.plan["hours"].as_f64().unwrap_or(1.0).max(0.5);
                s.schedule
                    .slots(hours, 14)
                    .await?
                    .slots
                    .into_iter()
                    .take(12)
                    .map(|x| SlotRow { label: slot_label(&p.t, &x.start), start: x.start })
                    .collect()
            }
            _ => vec![],
        };
        let customer = if p.may(RouteId::CustomersGet) {
            s.cases.get_customer(&p.ctx.actor, v.case.customer_id.clone()).await.map(|(c, _)| c.name).unwrap_or_default()
        } else {
            String::new()
        };
        let stream = e.as_ref().is_some_and(|e| !e.from_model) && p.may(RouteId::CasesEstimateCreate) && s.estimates.can_phrase();
        Ok::<_, ApiError>(EstimatePage {
            c: p.chrome(p.t.s("estimate.title"), &q),
            may_create: p.may(RouteId::CasesEstimateCreate)
                && matches!(v.case.status, CaseStatus::Assessed | CaseStatus::Estimated | CaseStatus::Scheduled),
            may_approve: p.may(RouteId::CasesApprove) && e.as_ref().is_some_and(|e| !e.approved),
            may_book: p.may(RouteId::CasesAppointmentBook),
            may_cancel: p.may(RouteId::CasesAppointmentCancel) && booked.is_some() && v.case.status == CaseStatus::Scheduled,
            appointment: appointment_text(&p.t, &s, &id).await?,
            approval_lead: p.t.f("approval.lead", &[("total", e.as_ref().map(|x| x.total.as_str()).unwrap_or(""))]),
            h,
            e,
            stream,
            customer,
            slots,
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

pub(super) fn slot_label(t: &Strings, start: &str) -> String {
    let Some(d) = crate::case::estimate::parse_local(start) else { return start.to_string() };
    use chrono::Datelike;
    let wd = t.of("weekday", &d.weekday().num_days_from_monday().to_string());
    format!("{} {} {}", d.format("%m-%d"), wd, d.format("%H:%M"))
}

pub async fn create_estimate(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let choice = match f.get("parts_choice") {
        Some("aftermarket") => PartsChoice::Aftermarket,
        _ => PartsChoice::Oem,
    };
    let r = s.estimates.create(&p.ctx.actor, id.clone(), choice).await;
    match r {
        Ok(_) => see_other(&format!("/cases/{id}/estimate?ok=estimate_created")),
        Err(e) => back(&format!("/cases/{id}/findings"), Err(e.into())),
    }
}

/// Server-sent events: the model's wording of the latest estimate as it is generated, then
/// `done` with the text and whether it passed the number check (only then is it stored).
pub async fn explain_stream(id: String, p: Page, s: Arc<ApiState>) -> Response {
    let (estimates, actor) = (s.estimates.clone(), p.ctx.actor.clone());
    stream_words(move |on_delta| async move {
        estimates.phrase(&actor, id, on_delta).await.map(|x| (x.text, x.from_llm)).map_err(ApiError::from)
    })
}

/// Server-sent events: the model's rewording of the assistant's latest question, then `done`
/// (stored only if it passed the intake's check).
pub async fn phrase_stream(id: String, p: Page, s: Arc<ApiState>) -> Response {
    let (intake, actor) = (s.intake.clone(), p.ctx.actor.clone());
    stream_words(move |on_delta| async move { intake.phrase_last(&actor, id, on_delta).await.map_err(ApiError::from) })
}

/// Model text as server-sent events (what `static/stream.js` reads): `{"delta"}` pieces as they
/// are generated, then `done` with `{"text","accepted"}`, or `error` with the error code. A page
/// that goes away stops the generation (its callback then answers false).
pub(super) fn stream_words<F, Fut>(work: F) -> Response
where
    F: FnOnce(Box<dyn FnMut(&str) -> bool + Send>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(String, bool), ApiError>> + Send + 'static,
{
    use futures_util::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<warp::sse::Event>(64);
    tokio::spawn(async move {
        let delta_tx = tx.clone();
        let on_delta = Box::new(move |d: &str| {
            let ev = warp::sse::Event::default().data(serde_json::json!({ "delta": d }).to_string());
            // Called on the generating thread (blocking work), never on the runtime's.
            delta_tx.blocking_send(ev).is_ok()
        });
        let ev = match work(on_delta).await {
            Ok((text, accepted)) => {
                warp::sse::Event::default().event("done").data(serde_json::json!({ "text": text, "accepted": accepted }).to_string())
            }
            Err(e) => warp::sse::Event::default().event("error").data(serde_json::json!({ "code": e.code }).to_string()),
        };
        let _ = tx.send(ev).await;
    });
    let stream = tokio_stream_of(rx).map(Ok::<_, std::convert::Infallible>);
    crate::ui::harden(warp::sse::reply(stream).into_response())
}

pub(super) fn tokio_stream_of<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[derive(Template)]
#[template(path = "quote.html", config = "src/ui/askama.toml")]
struct QuotePage {
    c: Chrome,
    h: CaseHead,
    e: EstimateView,
    customer: String,
    store_name: String,
    printed: String,
}

pub async fn quote_page(id: String, p: Page, s: Arc<ApiState>) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "/estimate").await?;
        let e = estimate_view(&p.t, &s.estimates.latest(id.clone()).await?);
        let customer = if p.may(RouteId::CustomersGet) {
            s.cases.get_customer(&p.ctx.actor, v.case.customer_id.clone()).await.map(|(c, _)| c.name).unwrap_or_default()
        } else {
            String::new()
        };
        Ok::<_, ApiError>(QuotePage {
            c: p.chrome(p.t.s("quote.title"), &Query::default()),
            h,
            e,
            customer,
            store_name: s.site.store_name.clone(),
            printed: chrono::Local::now().format("%Y-%m-%d %H:%M").to_string(),
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

pub async fn approve(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let to = format!("/cases/{id}/estimate");
    let r = async {
        let version = f
            .get("estimate_version")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "estimate_version", "estimate_version"))?;
        let channel = match f.get("channel") {
            Some("in_person") => Channel::InPerson,
            Some("phone") => Channel::Phone,
            _ => Channel::Tablet,
        };
        let n = NewApproval {
            estimate_version: version,
            approved_by: f.get("approved_by").unwrap_or("").to_string(),
            channel,
            signature_png: opt(&f, "signature_png"),
        };
        s.schedule.approve(&p.ctx.actor, id.clone(), n).await.map_err(ApiError::from)
    };
    back(&to, r.await.map(|_| "approved"))
}

pub async fn book(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let start = f.get("start").unwrap_or("").to_string();
    let r = s.schedule.book(&p.ctx.actor, id.clone(), start).await.map_err(ApiError::from);
    back(&format!("/cases/{id}/estimate"), r.map(|_| "booked"))
}

pub async fn cancel(id: String, p: Page, _f: Form, s: Arc<ApiState>) -> Response {
    let r = s.schedule.cancel(&p.ctx.actor, id.clone()).await.map_err(ApiError::from);
    back(&format!("/cases/{id}/estimate"), r.map(|_| "cancelled"))
}

/// 转人工: one tap hands the case to a person (it leaves the AI's hands and enters the queue).
pub async fn escalate(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let reason = f.get("reason").map(str::to_string).unwrap_or_else(|| "handed to a person from the tablet".into());
    let r = s.cases.escalate(&p.ctx.actor, id.clone(), reason).await.map_err(ApiError::from);
    back(&format!("/cases/{id}"), r.map(|_| "escalated"))
}

pub async fn take(id: String, p: Page, _f: Form, s: Arc<ApiState>) -> Response {
    let r = s.cases.assign(&p.ctx.actor, id.clone(), p.ctx.user.id).await.map_err(ApiError::from);
    back(&format!("/cases/{id}"), r.map(|_| "taken"))
}

pub async fn hand_back(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = s.cases.hand_back(&p.ctx.actor, id.clone(), opt(&f, "reason")).await.map_err(ApiError::from);
    back(&format!("/cases/{id}"), r.map(|_| "handed_back"))
}

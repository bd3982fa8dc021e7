//! Follow-up after delivery (回访, seed scenario 3) on the tablet: customer service's task queue,
//! the call (case summary, the script, the answer form, call attempts), the hot-alert queue with
//! its SLA, and the delivery page (the customer's consent, the printable delivery sheet with the
//! survey QR code, consent withdrawal). Each action is one `FollowUpService` call.
//!
//! Invariants: times are shown in the store's own time zone (the follow-up policy's), not the
//! box's; error `code`s pick the words (`fu_err.<code>`, else the shared `err.<code>`); a page
//! offers an action only where the route table lets the reader call it.

use std::sync::Arc;

use askama::Template;
use chrono::FixedOffset;
use http::StatusCode;
use warp::reply::Response;

use super::*;
use crate::case::follow_up::{AlertAction, AlertView, Attempt, ConsentInput, Outcome, PhoneAnswer, QueueState, CHANNELS};
use crate::domain::follow_up::{Answer, Fixed, FixedAnswer};
use crate::store::follow_up::{Consent, Survey};

/// The service's limit on a comment (`FollowUpService::answer`); the form says it up front.
const COMMENT_MAX: usize = 2000;
/// The digital channels a customer can agree to at delivery (the call is opted out of instead).
const DIGITAL: [&str; 3] = ["sms", "wechat", "hq_relay"];

// --- shared pieces ---------------------------------------------------------------------------------

/// A stored RFC 3339 time in the store's time zone (`%m-%d %H:%M`, or with the year for the sheet).
fn local(tz: FixedOffset, at: &str, year: bool) -> String {
    match crate::clock::parse(at) {
        Some(t) => t.with_timezone(&tz).format(if year { "%Y-%m-%d %H:%M" } else { "%m-%d %H:%M" }).to_string(),
        None => at.replace('T', " ").chars().take(16).collect(),
    }
}

/// A duration in words: "1 天 2 小时" or "3 小时 5 分".
fn span(t: &Strings, d: chrono::Duration) -> String {
    let mins = d.num_minutes().abs();
    let (days, hours, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    if days > 0 {
        t.f("fu_time.days_hours", &[("d", &days.to_string()), ("h", &hours.to_string())])
    } else {
        t.f("fu_time.hours_minutes", &[("h", &hours.to_string()), ("m", &m.to_string())])
    }
}

/// Flash messages of these pages: `fu_ok.<key>` / `fu_err.<code>` first, then the shared words.
fn fu_flash(t: &Strings, q: &Query) -> (Option<String>, Option<String>) {
    let ok = q.get("ok").filter(|k| is_key(k)).map(|k| t.or(&format!("fu_ok.{k}"), &t.or(&format!("ok.{k}"), t.s("ok.saved"))));
    let err = q.get("err").filter(|k| is_key(k)).map(|k| {
        let base = t.or(&format!("fu_err.{k}"), &t.or(&format!("err.{k}"), t.s("err.generic")));
        match q.get("field").filter(|f| is_key(f)) {
            Some(f) => format!("{base}（{}）", t.or(&format!("fu_field.{f}"), &t.or(&format!("field.{f}"), f))),
            None => base,
        }
    });
    (ok, err)
}

fn chrome(p: &Page, title: &str, q: &Query) -> Chrome {
    let mut c = p.chrome(title, &Query::default());
    (c.ok, c.err) = fu_flash(&p.t, q);
    c
}

/// A service error on a page that cannot show its content, in these pages' words.
fn fu_failed(p: &Page, e: ApiError) -> Response {
    if e.status.is_server_error() {
        tracing::warn!(code = e.code, "a follow-up page could not be shown");
    }
    let c = p.chrome(p.t.s("err.title"), &Query::default());
    let message = p.t.or(&format!("fu_err.{}", e.code), &p.t.or(&format!("err.{}", e.code), p.t.s("err.generic")));
    html(&ErrorPage { c, message }, e.status)
}

fn bad(field: &str) -> ApiError {
    ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", field, field.to_string())
}

fn state_key(s: QueueState) -> &'static str {
    match s {
        QueueState::Upcoming => "upcoming",
        QueueState::Due => "due",
        QueueState::Overdue => "overdue",
        QueueState::Done => "done",
    }
}

/// A serde enum's wire name (`low_csat`, `not_fixed`, `yes`).
fn wire<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn call_path(id: &str) -> String {
    format!("/cases/{id}/follow-up")
}

fn delivery_path(id: &str) -> String {
    format!("/cases/{id}/delivery")
}

const ALERTS_PATH: &str = "/follow-up/alerts";

// --- 回访任务: the queue ---------------------------------------------------------------------------

struct QueueRow {
    pub case_id: String,
    pub short: String,
    pub customer: String,
    pub complaint: String,
    pub delivered: String,
    pub due: String,
    pub state: &'static str,
    pub status_label: String,
    /// "called n times", once someone has tried.
    pub attempts: Option<String>,
    pub opt_out: bool,
}

struct QueueGroup {
    pub state: &'static str,
    pub label: String,
    pub rows: Vec<QueueRow>,
}

#[derive(Template)]
#[template(path = "follow_up_queue.html", config = "src/ui/askama.toml")]
struct QueuePage {
    c: Chrome,
    groups: Vec<QueueGroup>,
    total: usize,
    may_alerts: bool,
}

/// 回访任务: overdue, due, upcoming and recently done follow-ups, each opening its call.
pub async fn follow_up_queue(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let t = p.t;
    let tz = s.follow_up.setup().policy.tz;
    let items = match s.follow_up.queue(&p.ctx.actor).await {
        Ok(v) => v,
        Err(e) => return fu_failed(&p, e.into()),
    };
    let total = items.len();
    let mut groups: Vec<QueueGroup> = [QueueState::Overdue, QueueState::Due, QueueState::Upcoming, QueueState::Done]
        .into_iter()
        .map(|st| QueueGroup { state: state_key(st), label: t.s(&format!("fu_state.{}", state_key(st))).to_string(), rows: vec![] })
        .collect();
    for it in items {
        let row = QueueRow {
            short: short_id(&it.task.case_id),
            case_id: it.task.case_id.clone(),
            customer: it.customer_name.clone(),
            complaint: it.case_summary.chars().take(80).collect(),
            delivered: local(tz, &it.task.delivered_at, false),
            due: local(tz, &it.task.due_at, false),
            state: state_key(it.state),
            status_label: t.of("fu_task", &it.task.status),
            attempts: (it.task.attempts > 0).then(|| t.f("fu_queue.attempts", &[("n", &it.task.attempts.to_string())])),
            opt_out: it.call_opt_out,
        };
        if let Some(g) = groups.iter_mut().find(|g| g.state == row.state) {
            g.rows.push(row);
        }
    }
    let c = chrome(&p, t.s("fu_queue.title"), &q);
    html(&QueuePage { c, groups, total, may_alerts: p.may(RouteId::FollowUpAlerts) }, StatusCode::OK)
}

// --- alerts, shared by the call page and the alert queue ------------------------------------------

struct AlertRow {
    pub id: String,
    pub case_id: String,
    pub case_short: String,
    pub customer: String,
    pub complaint: String,
    pub kind: String,
    pub hot: bool,
    pub open: bool,
    pub category: String,
    pub summary: String,
    pub reasons: Vec<String>,
    pub proposed: Vec<String>,
    pub raised: String,
    /// The SLA in words: time left, or how long it is overdue (open hot alerts only).
    pub sla: Option<String>,
    /// Seconds to the SLA's due time at the server's clock when the page was made (negative:
    /// overdue). The page's script counts down from it (`app.js`), not from the tablet's own clock,
    /// which may be wrong (and is not the tests' injected clock).
    pub sla_in: Option<i64>,
    pub overdue: bool,
    pub escalated: Option<String>,
    pub responded: Option<String>,
    pub resolved: Option<String>,
    pub resolution: String,
    pub new_case: Option<(String, String)>,
    pub may_respond: bool,
    pub may_resolve: bool,
}

fn alert_row(p: &Page, tz: FixedOffset, now: chrono::DateTime<chrono::Utc>, v: &AlertView, who: Option<&(String, String)>) -> AlertRow {
    let t = p.t;
    let a = &v.alert;
    let hot = a.kind == "hot";
    let due = match (hot && v.open, a.due_at.as_deref().and_then(crate::clock::parse)) {
        (true, Some(due)) if a.first_response_at.is_none() => Some(due),
        _ => None,
    };
    let sla = due.map(|due| {
        if due >= now {
            t.f("fu_alert.sla_left", &[("t", &span(&t, due - now))])
        } else {
            t.f("fu_alert.sla_over", &[("t", &span(&t, now - due))])
        }
    });
    let proposed = a
        .proposed
        .as_ref()
        .and_then(|v| v.as_array())
        .map(|list| {
            list.iter()
                .map(|f| {
                    if t.lang() == UiLang::Zh {
                        if let Some(l) = f["label_zh"].as_str() {
                            return l.to_string();
                        }
                    }
                    ["position", "part", "damage_type"]
                        .iter()
                        .filter_map(|k| f[*k].as_str().map(|id| word(&t, if *k == "damage_type" { "damage" } else { k }, id)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        })
        .unwrap_or_default();
    AlertRow {
        id: a.id.clone(),
        case_id: a.case_id.clone(),
        case_short: short_id(&a.case_id),
        customer: who.map(|w| w.0.clone()).unwrap_or_default(),
        complaint: who.map(|w| w.1.chars().take(80).collect()).unwrap_or_default(),
        kind: a.kind.clone(),
        hot,
        open: v.open,
        category: t.of("fu_cat", &a.category),
        summary: a.summary.clone(),
        reasons: a.reasons.iter().map(|r| t.of("fu_reason", &wire(r))).collect(),
        proposed,
        raised: local(tz, &a.raised_at, false),
        sla,
        sla_in: due.map(|due| (due - now).num_seconds()),
        overdue: v.overdue,
        escalated: a.escalated_at.as_deref().map(|at| local(tz, at, false)),
        responded: a
            .first_response_at
            .as_deref()
            .map(|at| format!("{} {}", a.first_response_by.as_deref().unwrap_or(""), local(tz, at, false))),
        resolved: a.resolved_at.as_deref().map(|at| format!("{} {}", a.resolved_by.as_deref().unwrap_or(""), local(tz, at, false))),
        resolution: a.resolution.clone().unwrap_or_default(),
        new_case: a.new_case_id.as_ref().map(|id| (id.clone(), short_id(id))),
        may_respond: v.open && a.first_response_at.is_none() && p.may(RouteId::FollowUpAlertRespond),
        may_resolve: v.open && p.may(RouteId::FollowUpAlertResolve),
    }
}

// --- the call ----------------------------------------------------------------------------------------

struct SurveyRow {
    pub id: String,
    pub channel: String,
    pub csat: u8,
    pub nps: u8,
    pub fixed: Vec<(String, String, String)>,
    pub comment: String,
    pub hot: bool,
    pub review_invited: bool,
    pub at: String,
    pub by: String,
}

fn survey_row(t: &Strings, tz: FixedOffset, s: &Survey) -> SurveyRow {
    SurveyRow {
        id: s.id.clone(),
        channel: t.of("fu_src", &s.channel),
        csat: s.csat,
        nps: s.nps,
        fixed: s.fixed.iter().map(|f| (f.label.clone(), wire(&f.answer), t.of("fu_fixed", &wire(&f.answer)))).collect(),
        comment: s.comment.clone().unwrap_or_default(),
        hot: s.hot,
        review_invited: s.review_invited,
        at: local(tz, &s.answered_at, false),
        by: s.recorded_by.clone(),
    }
}

struct QuestionRow {
    pub finding_id: String,
    pub label: String,
}

struct AttemptButton {
    pub outcome: &'static str,
    pub label: String,
    /// Ends the follow-up: asked once more before it is sent.
    pub confirm: Option<String>,
}

#[derive(Template)]
#[template(path = "follow_up_call.html", config = "src/ui/askama.toml")]
struct CallPage {
    c: Chrome,
    h: CaseHead,
    state: &'static str,
    state_label: String,
    task_status: String,
    task_label: String,
    delivered: String,
    due: String,
    attempts: i64,
    last_attempt: Option<String>,
    customer: String,
    phone: String,
    complaint: String,
    repairs: Vec<String>,
    intro: String,
    from_llm: bool,
    llm_note: Option<String>,
    script_questions: Vec<String>,
    closing: String,
    questions: Vec<QuestionRow>,
    fixed_choices: Vec<(&'static str, String)>,
    csats: Vec<u8>,
    npss: Vec<u8>,
    comment_max: usize,
    opt_out: bool,
    may_answer: bool,
    may_attempt: bool,
    attempt_buttons: Vec<AttemptButton>,
    surveys: Vec<SurveyRow>,
    invited: bool,
    alerts: Vec<AlertRow>,
    /// The alert rows here link to the queue; they are settled there.
    with_actions: bool,
    may_alerts: bool,
    may_delivery: bool,
}

/// 回访: everything the call needs on one page, then what was recorded.
pub async fn follow_up_call(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, _) = head(&p, &s, &id, "/follow-up").await?;
        let v = s.follow_up.call_view(&p.ctx.actor, id.clone()).await?;
        let t = p.t;
        let tz = s.follow_up.setup().policy.tz;
        let now = s.follow_up.clock().now();
        let pending = v.task.status == "pending";
        let who = (v.customer_name.clone(), v.complaint.clone());
        let surveys: Vec<SurveyRow> = v.surveys.iter().map(|x| survey_row(&t, tz, x)).collect();
        let attempt_buttons = [("no_answer", false), ("unreachable", true), ("declined", true), ("opt_out", true)]
            .into_iter()
            .map(|(o, ends)| AttemptButton {
                outcome: o,
                label: t.s(&format!("fu_outcome.{o}")).to_string(),
                confirm: ends.then(|| t.s("fu_call.attempt_confirm").to_string()),
            })
            .collect();
        Ok::<_, ApiError>(CallPage {
            c: chrome(&p, &format!("{} {}", t.s("fu_call.title"), h.short), &q),
            state: state_key(v.state),
            state_label: t.s(&format!("fu_state.{}", state_key(v.state))).to_string(),
            task_label: t.of("fu_task", &v.task.status),
            task_status: v.task.status.clone(),
            delivered: local(tz, &v.task.delivered_at, false),
            due: local(tz, &v.task.due_at, false),
            attempts: v.task.attempts,
            last_attempt: v.task.last_attempt_at.as_deref().map(|at| {
                let note = v.task.last_attempt_note.as_deref().map(|n| format!(" · {n}")).unwrap_or_default();
                format!("{}{note}", local(tz, at, false))
            }),
            customer: v.customer_name.clone(),
            phone: v.customer_phone.clone().unwrap_or_default(),
            complaint: v.complaint.clone(),
            repairs: v.repairs.clone(),
            intro: v.script.intro.clone(),
            from_llm: v.script.from_llm,
            llm_note: v.script.llm_rejected.clone(),
            script_questions: v.script.questions.clone(),
            closing: v.script.closing.clone(),
            questions: v
                .questions
                .iter()
                .map(|x| QuestionRow {
                    finding_id: x.finding_id.clone(),
                    label: if t.lang() == UiLang::En { x.label_en.clone() } else { x.label_zh.clone() },
                })
                .collect(),
            fixed_choices: ["yes", "partly", "no"].into_iter().map(|k| (k, t.s(&format!("fu_fixed.{k}")).to_string())).collect(),
            csats: (1..=5).collect(),
            npss: (0..=10).collect(),
            comment_max: COMMENT_MAX,
            opt_out: v.call_opt_out,
            may_answer: pending && p.may(RouteId::CasesFollowUpAnswer),
            may_attempt: pending && p.may(RouteId::CasesFollowUpAttempt),
            attempt_buttons,
            invited: surveys.iter().any(|x| x.review_invited),
            surveys,
            alerts: v.alerts.iter().map(|a| alert_row(&p, tz, now, a, Some(&who))).collect(),
            with_actions: false,
            may_alerts: p.may(RouteId::FollowUpAlerts),
            may_delivery: p.may(RouteId::CasesConsent),
            h,
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => fu_failed(&p, e),
    }
}

/// The answer form as the service's `Answer`: scores, one "was it fixed" per question
/// (`fixed_<finding id>`), the comment. The service checks ranges and that every question is
/// answered once.
fn answer_of(f: &Form) -> Result<Answer, ApiError> {
    let score = |k: &str| f.get(k).and_then(|v| v.parse::<u8>().ok()).ok_or_else(|| bad(k));
    let (csat, nps) = (score("csat")?, score("nps")?);
    let mut fixed = vec![];
    for (k, v) in &f.0 {
        let Some(finding_id) = k.strip_prefix("fixed_") else { continue };
        let answer = match v.trim() {
            "yes" => Fixed::Yes,
            "partly" => Fixed::Partly,
            "no" => Fixed::No,
            _ => return Err(bad("fixed")),
        };
        fixed.push(FixedAnswer { finding_id: finding_id.to_string(), answer });
    }
    // Text areas count what was typed; the service's limit counts the same.
    Ok(Answer { csat, nps, fixed, comment: f.0.get("comment").filter(|c| !c.trim().is_empty()).cloned() })
}

pub async fn follow_up_answer(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async {
        let answer = answer_of(&f)?;
        let long = answer.comment.as_deref().is_some_and(|c| c.chars().count() > COMMENT_MAX);
        match s.follow_up.record_phone(&p.ctx.actor, id.clone(), PhoneAnswer { answer }).await {
            Ok(sv) => Ok(if sv.hot { "answer_hot" } else { "answer_saved" }),
            // Say what is wrong with the comment rather than only which field.
            Err(crate::case::CaseError::Invalid(i)) if i.field == "comment" && long => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, "comment_too_long", i.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    };
    match r.await {
        Ok(k) => back_at(&call_path(&id), "recorded", Ok(k)),
        Err(e) => back_at(&call_path(&id), "answer", Err(e)),
    }
}

pub async fn follow_up_attempt(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async {
        let outcome: Outcome =
            f.get("outcome").and_then(|o| serde_json::from_value(serde_json::json!(o)).ok()).ok_or_else(|| bad("outcome"))?;
        s.follow_up.attempt(&p.ctx.actor, id.clone(), Attempt { outcome, note: opt(&f, "note") }).await.map_err(ApiError::from)
    };
    match r.await {
        Ok(task) => back_at(&call_path(&id), "attempts", Ok(if task.status == "pending" { "attempt_saved" } else { "follow_up_ended" })),
        Err(e) => back_at(&call_path(&id), "attempts", Err(e)),
    }
}

// --- 回访告警: the alert queue -----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "alerts.html", config = "src/ui/askama.toml")]
struct AlertsPage {
    c: Chrome,
    hot: Vec<AlertRow>,
    suggestions: Vec<AlertRow>,
    resolved: Vec<AlertRow>,
    with_actions: bool,
}

/// 回访告警: open hot alerts by due time (SLA, escalation), suggestions, then the recently resolved.
pub async fn follow_up_alerts(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let list = s.follow_up.alerts().await?;
        let tz = s.follow_up.setup().policy.tz;
        let now = s.follow_up.clock().now();
        // Who each alert is about: the queue knows names; the case its complaint.
        let mut who: BTreeMap<String, (String, String)> = BTreeMap::new();
        if p.may(RouteId::FollowUpsList) && !list.is_empty() {
            for it in s.follow_up.queue(&p.ctx.actor).await? {
                who.insert(it.task.case_id.clone(), (it.customer_name, it.case_summary));
            }
        }
        for a in &list {
            if !who.contains_key(&a.alert.case_id) && who.len() < 200 {
                let summary = s.cases.get_case(a.alert.case_id.clone()).await.map(|v| v.case.summary).unwrap_or_default();
                who.insert(a.alert.case_id.clone(), (String::new(), summary));
            }
        }
        let rows: Vec<(bool, AlertRow)> =
            list.iter().map(|a| (a.alert.kind == "hot", alert_row(&p, tz, now, a, who.get(&a.alert.case_id)))).collect();
        let mut hot = vec![];
        let mut suggestions = vec![];
        let mut resolved = vec![];
        for (is_hot, row) in rows {
            match (row.open, is_hot) {
                (true, true) => hot.push(row),
                (true, false) => suggestions.push(row),
                (false, _) => resolved.push(row),
            }
        }
        // Open hot alerts by first-response due time (the service sorts too; the page's promise).
        let due_of = |id: &str| list.iter().find(|a| a.alert.id == id).and_then(|a| a.alert.due_at.clone()).unwrap_or_default();
        hot.sort_by_key(|r| due_of(&r.id));
        Ok::<_, ApiError>(AlertsPage { c: chrome(&p, p.t.s("fu_alerts.title"), &q), hot, suggestions, resolved, with_actions: true })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => fu_failed(&p, e),
    }
}

pub async fn follow_up_alert_respond(aid: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let act = AlertAction { note: opt(&f, "note"), open_case: false };
    let r = s.follow_up.respond(&p.ctx.actor, aid.clone(), act).await.map_err(ApiError::from);
    back_at(ALERTS_PATH, &format!("alert-{aid}"), r.map(|_| "alert_taken"))
}

pub async fn follow_up_alert_resolve(aid: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let act = AlertAction { note: opt(&f, "note"), open_case: f.get("open_case").is_some() };
    let r = s.follow_up.resolve(&p.ctx.actor, aid.clone(), act).await.map_err(ApiError::from);
    let key = match &r {
        Ok(v) if v.alert.new_case_id.is_some() => "alert_resolved_case",
        _ => "alert_resolved",
    };
    back_at(ALERTS_PATH, &format!("alert-{aid}"), r.map(|_| key))
}

// --- 交车: consent and the delivery sheet --------------------------------------------------------

struct ConsentRow {
    pub channel: String,
    pub label: String,
    pub granted: bool,
    pub live: bool,
    pub version: String,
    pub recorded: String,
    pub revoked: Option<String>,
}

struct ChannelBox {
    pub key: &'static str,
    pub name: String,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "delivery.html", config = "src/ui/askama.toml")]
struct DeliveryPage {
    c: Chrome,
    h: CaseHead,
    store_name: String,
    customer: String,
    delivered: Option<String>,
    due: Option<String>,
    task_label: Option<String>,
    repairs: Vec<String>,
    version: String,
    consent_zh: String,
    consent_en: String,
    channels: Vec<ChannelBox>,
    opt_out: bool,
    may_consent: bool,
    may_revoke: bool,
    may_call: bool,
    consents: Vec<ConsentRow>,
    live: usize,
    agreed_zh: String,
    agreed_en: String,
    agreed_version: Option<String>,
    qr: Option<String>,
    survey_url: Option<String>,
    printed: String,
}

/// The survey link as a QR code, a PNG data URI (the page's CSP allows `data:` images).
fn qr_data_uri(url: &str) -> Option<String> {
    use base64::Engine;
    let img = crate::vision::codes::encode(crate::vision::codes::Symbology::QrCode, url, 6).ok()?;
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img).write_to(&mut png, image::ImageFormat::Png).ok()?;
    Some(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png.into_inner())))
}

/// 交车: the consent form (the current text, as shown, with its version), the printable delivery
/// sheet (交车单) with the survey QR code, and the customer's consents with withdrawal.
pub async fn fu_delivery_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "/delivery").await?;
        let t = p.t;
        let setup = s.follow_up.setup();
        let tz = setup.policy.tz;
        let task = s.follow_up.task_of_case(id.clone()).await?;
        let (_, consents) = s.follow_up.consents_of_case(&p.ctx.actor, id.clone()).await?;
        let customer = if p.may(RouteId::CustomersGet) {
            s.cases.get_customer(&p.ctx.actor, v.case.customer_id.clone()).await.map(|(c, _)| c.name).unwrap_or_default()
        } else {
            String::new()
        };
        let repairs = match s.workshop.work_order(id.clone()).await? {
            Some(wo) => wo.lines.iter().map(|l| if t.lang() == UiLang::En { l.name_en.clone() } else { l.name_zh.clone() }).collect(),
            None => vec![],
        };
        let texts = &setup.texts;
        let current = texts.current_consent();
        let name = |ch: &str| texts.channel_names.get(ch).cloned().unwrap_or_else(|| ch.to_string());
        let offered = DIGITAL.iter().map(|c| name(c)).collect::<Vec<_>>();
        let live: Vec<&Consent> = consents.iter().filter(|c| c.revoked_at.is_none()).collect();
        let granted: Vec<String> = live.iter().filter(|c| c.granted).map(|c| c.channel.clone()).collect();
        let opt_out = live.iter().any(|c| c.channel == "call" && !c.granted);
        let agreed_version = live.first().map(|c| c.text_version.clone());
        // The text the customer agreed to, for the sheet: the version they saw, their channels.
        let agreed = agreed_version.as_ref().and_then(|ver| texts.consent.iter().find(|x| &x.version == ver));
        let agreed_names = granted.iter().map(|c| name(c)).collect::<Vec<_>>().join("、");
        let (agreed_zh, agreed_en) = match agreed {
            Some(x) if !granted.is_empty() => (x.zh.replace("{channels}", &agreed_names), x.en.replace("{channels}", &agreed_names)),
            _ => (String::new(), String::new()),
        };
        let survey_url = task.as_ref().and_then(|t| s.follow_up.survey_link(t));
        let channel_label = |ch: &str| t.of("fu_channel", ch);
        Ok::<_, ApiError>(DeliveryPage {
            c: chrome(&p, &format!("{} {}", t.s("fu_delivery.title"), h.short), &q),
            store_name: setup.store_name.clone(),
            customer,
            delivered: task.as_ref().map(|x| local(tz, &x.delivered_at, true)),
            due: task.as_ref().map(|x| local(tz, &x.due_at, true)),
            task_label: task.as_ref().map(|x| t.of("fu_task", &x.status)),
            repairs,
            version: current.version.clone(),
            consent_zh: current.zh.replace("{channels}", &offered.join("、")),
            consent_en: current.en.replace("{channels}", &offered.join(", ")),
            channels: DIGITAL.iter().map(|k| ChannelBox { key: k, name: name(k), checked: granted.iter().any(|g| g == k) }).collect(),
            opt_out,
            may_consent: p.may(RouteId::CasesConsent),
            may_revoke: p.may(RouteId::CustomersConsentRevoke),
            may_call: task.is_some() && p.may(RouteId::CasesFollowUp),
            live: live.len(),
            consents: consents
                .iter()
                .filter(|c| CHANNELS.contains(&c.channel.as_str()))
                .map(|c| ConsentRow {
                    channel: c.channel.clone(),
                    label: channel_label(&c.channel),
                    granted: c.granted,
                    live: c.revoked_at.is_none(),
                    version: c.text_version.clone(),
                    recorded: format!("{} {}", c.recorded_by, local(tz, &c.recorded_at, false)),
                    revoked: c
                        .revoked_at
                        .as_deref()
                        .map(|at| format!("{} {}", c.revoked_by.as_deref().unwrap_or(""), local(tz, at, false))),
                })
                .collect(),
            agreed_zh,
            agreed_en,
            agreed_version,
            qr: survey_url.as_deref().and_then(qr_data_uri),
            survey_url,
            printed: local(tz, &s.follow_up.clock().stamp(), true),
            h,
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => fu_failed(&p, e),
    }
}

pub async fn fu_record_consent(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let input = ConsentInput {
        channels: DIGITAL.iter().filter(|k| f.get(&format!("ch_{k}")).is_some()).map(|k| k.to_string()).collect(),
        call_opt_out: f.get("call_opt_out").is_some(),
        text_version: f.get("text_version").unwrap_or("").to_string(),
    };
    let r = s.follow_up.record_consent(&p.ctx.actor, id.clone(), input).await.map_err(ApiError::from);
    back_at(&delivery_path(&id), "consents", r.map(|_| "consent_saved"))
}

pub async fn fu_revoke_consent(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async {
        let channel = f.get("channel").ok_or_else(|| bad("channel"))?.to_string();
        let customer = s.cases.get_case(id.clone()).await?.case.customer_id;
        s.follow_up.revoke_consent(&p.ctx.actor, customer, channel).await.map_err(ApiError::from)
    };
    back_at(&delivery_path(&id), "consents", r.await.map(|_| "consent_revoked"))
}

//! The boards: Today (counts, appointments, my cases, search), the review queue, a new case.

use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use warp::reply::Response;

use super::*;

// ---------------------------------------------------------------------------------------------
// Today, search and the review queue.

pub struct CaseRow {
    pub id: String,
    pub short: String,
    pub status: String,
    pub status_label: String,
    pub summary: String,
    pub needs_review: bool,
    pub updated: String,
}

pub(super) fn case_row(t: &Strings, c: &crate::domain::case::Case) -> CaseRow {
    CaseRow {
        id: c.id.clone(),
        short: short_id(&c.id),
        status: c.status.as_str().to_string(),
        status_label: t.of("status", c.status.as_str()),
        summary: c.summary.chars().take(60).collect(),
        needs_review: c.needs_review,
        updated: when(&c.updated_at),
    }
}

pub(super) fn short_id(id: &str) -> String {
    let n = id.len();
    id[n.saturating_sub(6)..].to_uppercase()
}

pub struct Tile {
    pub status: String,
    pub label: String,
    pub n: i64,
}

pub struct ApptRow {
    pub case_id: String,
    pub short: String,
    pub time: String,
    pub bay: String,
}

#[derive(Template)]
#[template(path = "today.html", config = "src/ui/askama.toml")]
struct TodayPage {
    c: Chrome,
    tiles: Vec<Tile>,
    waiting: i64,
    appointments: Vec<ApptRow>,
    /// The cases assigned to the signed-in person (what a technician or inspector works on).
    mine: Vec<CaseRow>,
    recent: Vec<CaseRow>,
    q: String,
    results: Option<Vec<CaseRow>>,
    may_search: bool,
    may_create: bool,
}

const OPEN_STATUSES: [CaseStatus; 9] = [
    CaseStatus::Reported,
    CaseStatus::Intake,
    CaseStatus::Assessed,
    CaseStatus::Estimated,
    CaseStatus::Scheduled,
    CaseStatus::InRepair,
    CaseStatus::Qc,
    CaseStatus::Delivered,
    CaseStatus::Escalated,
];

pub async fn today(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let counts = s.cases.status_counts().await?;
        let tiles = OPEN_STATUSES
            .iter()
            .map(|st| Tile {
                status: st.as_str().to_string(),
                label: p.t.of("status", st.as_str()),
                n: counts.iter().find(|(k, _)| k == st.as_str()).map(|(_, n)| *n).unwrap_or(0),
            })
            .collect();
        let waiting = s.cases.waiting_for_a_person().await?;
        let day = chrono::Local::now().date_naive();
        let appointments = s
            .schedule
            .on_day(day)
            .await?
            .into_iter()
            .map(|a| ApptRow {
                short: short_id(&a.case_id),
                case_id: a.case_id,
                time: format!("{}–{}", a.starts_at.get(11..16).unwrap_or(""), a.ends_at.get(11..16).unwrap_or("")),
                bay: a.bay,
            })
            .collect();
        let recent = s.cases.list_cases(filter(None, 20)).await?.iter().map(|c| case_row(&p.t, c)).collect();
        let mut f = filter(None, 50);
        f.assigned_to = Some(p.ctx.user.id);
        let mine = s.cases.list_cases(f).await?.iter().filter(|c| !c.status.is_terminal()).map(|c| case_row(&p.t, c)).collect();
        let may_search = p.may(RouteId::CustomersList);
        let query = q.get("q").map(|x| x.chars().take(64).collect::<String>());
        let results = match (&query, may_search) {
            (Some(text), true) => {
                let mut rows = vec![];
                for cust in s.cases.list_customers(&p.ctx.actor, Some(text.clone()), None, 10).await? {
                    let mut f = filter(None, 10);
                    f.customer_id = Some(cust.id.clone());
                    rows.extend(s.cases.list_cases(f).await?.iter().map(|c| case_row(&p.t, c)));
                }
                Some(rows)
            }
            _ => None,
        };
        Ok::<_, ApiError>(TodayPage {
            c: p.chrome(p.t.s("today.title"), &q),
            tiles,
            waiting,
            appointments,
            mine,
            recent,
            q: query.unwrap_or_default(),
            results,
            may_search,
            may_create: p.may(RouteId::CasesCreate),
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

pub(super) fn filter(needs_review: Option<bool>, limit: u32) -> CaseFilter {
    CaseFilter { status: None, customer_id: None, assigned_to: None, needs_review, before: None, limit }
}

pub struct ReviewRow {
    pub case: CaseRow,
    pub why: String,
    pub mine: bool,
}

#[derive(Template)]
#[template(path = "review.html", config = "src/ui/askama.toml")]
struct ReviewPage {
    c: Chrome,
    rows: Vec<ReviewRow>,
    may_take: bool,
}

/// Every case whose AI decision waits for a person, oldest first.
pub async fn review_queue(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let mut cases = s.cases.list_cases(filter(Some(true), 100)).await?;
        cases.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        let mut rows = vec![];
        for c in &cases {
            // Why it waits: the latest reason on its timeline (escalation, low confidence, disagreement).
            let why = s.cases.get_case(c.id.clone()).await?.timeline.iter().rev().find_map(|e| e.reason.clone()).unwrap_or_default();
            rows.push(ReviewRow { case: case_row(&p.t, c), why, mine: c.assigned_to == Some(p.ctx.user.id) });
        }
        Ok::<_, ApiError>(ReviewPage { c: p.chrome(p.t.s("review.title"), &q), rows, may_take: p.may(RouteId::CasesAssign) })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

// ---------------------------------------------------------------------------------------------
// New case.

pub struct CustomerRow {
    pub id: String,
    pub name: String,
    pub phone: String,
}

#[derive(Template)]
#[template(path = "case_new.html", config = "src/ui/askama.toml")]
struct NewCasePage {
    c: Chrome,
    q: String,
    customers: Vec<CustomerRow>,
    may_vehicle: bool,
}

pub async fn new_case_page(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let query = q.get("q").map(|x| x.chars().take(64).collect::<String>());
    let customers = match &query {
        Some(text) => match s.cases.list_customers(&p.ctx.actor, Some(text.clone()), None, 10).await {
            Ok(v) => v.into_iter().map(|c| CustomerRow { id: c.id, name: c.name, phone: c.phone.unwrap_or_default() }).collect(),
            Err(e) => return failed(&p, e.into()),
        },
        None => vec![],
    };
    let c = p.chrome(p.t.s("new.title"), &q);
    html(&NewCasePage { c, q: query.unwrap_or_default(), customers, may_vehicle: p.may(RouteId::VehiclesCreate) }, StatusCode::OK)
}

pub(super) fn opt(f: &Form, k: &str) -> Option<String> {
    f.get(k).map(str::to_string)
}

pub async fn new_case(p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async {
        let customer_id = match f.get("customer_id") {
            Some(id) => id.to_string(),
            None => {
                let name =
                    f.get("name").ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "name", "name: required"))?;
                let c = NewCustomer { name: name.to_string(), phone: opt(&f, "phone"), email: None, preferred_language: None };
                s.cases.create_customer(&p.ctx.actor, c).await?.id
            }
        };
        let vehicle_id = if (f.get("plate").is_some() || f.get("vin").is_some()) && p.may(RouteId::VehiclesCreate) {
            let year = f
                .get("year")
                .map(|y| y.parse::<i32>())
                .transpose()
                .map_err(|_| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "year", "year: a number such as 2021"))?;
            let v = NewVehicle {
                customer_id: customer_id.clone(),
                vin: opt(&f, "vin"),
                plate: opt(&f, "plate"),
                make: opt(&f, "make"),
                model: opt(&f, "model"),
                year,
                mileage_km: None,
            };
            Some(s.cases.create_vehicle(&p.ctx.actor, v).await?.id)
        } else {
            None
        };
        // The summary is the desk's one-line note; the customer's words go into the conversation next.
        let summary = f.get("summary").unwrap_or("").to_string();
        let case = s.cases.create_case(&p.ctx.actor, NewCase { customer_id, vehicle_id, summary }).await?;
        Ok::<_, ApiError>(case.id)
    };
    match r.await {
        Ok(id) => see_other(&format!("/cases/{id}/intake")),
        Err(e) => back("/cases/new", Err(e)),
    }
}

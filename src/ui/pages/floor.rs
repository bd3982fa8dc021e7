//! The floor: the technician's bay (我的工位), the manager's bay board (车间看板) and anomaly queue
//! (异常). Each is one `WorkshopService` call and a render.

use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use warp::reply::Response;

use super::*;
use crate::case::work_order::BoardJob;

// --- my bay ----------------------------------------------------------------------------------------

/// A job on a board: the case, its bay, how far the labour is, who is on it, what it waits for.
pub struct JobRow {
    pub case_id: String,
    pub short: String,
    pub status: String,
    pub status_label: String,
    pub bay: String,
    pub summary: String,
    pub progress: String,
    pub technicians: Vec<String>,
    pub parts_waiting: Vec<String>,
    pub flags: usize,
}

pub(super) fn job_row(t: &Strings, j: &BoardJob) -> JobRow {
    JobRow {
        case_id: j.case_id.clone(),
        short: short_id(&j.case_id),
        status: j.case_status.as_str().to_string(),
        status_label: t.of("status", j.case_status.as_str()),
        bay: j.bay.clone().unwrap_or_default(),
        summary: j.summary.clone(),
        progress: t.f("board.lines_done", &[("done", &j.lines_done.to_string()), ("total", &j.lines_total.to_string())]),
        technicians: j.technicians_on.clone(),
        parts_waiting: j.parts_waiting.clone(),
        flags: j.open_flags,
    }
}

#[derive(Template)]
#[template(path = "bay.html", config = "src/ui/askama.toml")]
struct BayPage {
    c: Chrome,
    mine: Vec<JobRow>,
    others: Vec<JobRow>,
    waiting: Vec<CaseRow>,
}

/// 我的工位: the jobs this technician is clocked on, the other cars in the bays, the cars waiting.
pub async fn bay_page(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let board = s.workshop.board(s.bays).await?;
        let me = &p.ctx.user.username;
        let (mine, others): (Vec<&BoardJob>, Vec<&BoardJob>) =
            board.in_progress.iter().chain(&board.waiting_for_parts).partition(|j| j.technicians_on.contains(me));
        let mut f = filter(None, 50);
        f.status = Some(CaseStatus::Scheduled);
        let waiting = s.cases.list_cases(f).await?.iter().map(|c| case_row(&p.t, c)).collect();
        Ok::<_, ApiError>(BayPage {
            c: p.chrome(p.t.s("bay.title"), &q),
            mine: mine.into_iter().map(|j| job_row(&p.t, j)).collect(),
            others: others.into_iter().map(|j| job_row(&p.t, j)).collect(),
            waiting,
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

// --- the manager's floor -------------------------------------------------------------------------

pub struct BookingRow {
    pub case_id: String,
    pub short: String,
    pub time: String,
    pub bay: String,
}

#[derive(Template)]
#[template(path = "bay_board.html", config = "src/ui/askama.toml")]
struct BoardPage {
    c: Chrome,
    bays: u32,
    columns: Vec<(String, String, Vec<JobRow>)>,
    today: Vec<BookingRow>,
}

/// 车间看板: jobs in the bays, waiting for parts, at QC, and today's bookings.
pub async fn board_page(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let b = s.workshop.board(s.bays).await?;
        let t = p.t;
        let col = |key: &str, jobs: &[crate::case::work_order::BoardJob]| {
            (key.to_string(), t.s(&format!("board.{key}")).to_string(), jobs.iter().map(|j| job_row(&t, j)).collect::<Vec<_>>())
        };
        let columns = vec![col("in_progress", &b.in_progress), col("waiting_for_parts", &b.waiting_for_parts), col("at_qc", &b.at_qc)];
        let today = b
            .today
            .iter()
            .map(|a| BookingRow {
                short: short_id(&a.case_id),
                case_id: a.case_id.clone(),
                time: format!("{}–{}", a.starts_at.get(11..16).unwrap_or(""), a.ends_at.get(11..16).unwrap_or("")),
                bay: a.bay.clone(),
            })
            .collect();
        Ok::<_, ApiError>(BoardPage { c: p.chrome(t.s("board.title"), &q), bays: b.bays, columns, today })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

/// One case's flags on the anomaly queue.
pub struct CaseFlags {
    pub case_id: String,
    pub short: String,
    pub rows: Vec<FlagRow>,
}

#[derive(Template)]
#[template(path = "anomalies.html", config = "src/ui/askama.toml")]
struct AnomaliesPage {
    c: Chrome,
    groups: Vec<CaseFlags>,
    all: bool,
    settle_base: String,
}

/// 异常: the manager's queue (labour, serials, origins, unscanned parts, repairs without damage)
/// and the QC alerts an inspector handed over; open ones first, `?all=1` for the settled too.
pub async fn anomalies_page(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let all = q.get("all") == Some("1");
        let mut flags = s.workshop.queue("manager".into(), !all).await?;
        flags.extend(s.workshop.queue("qc".into(), true).await?.into_iter().filter(|f| f.status == "escalated"));
        flags.sort_by(|a, b| b.raised_at.cmp(&a.raised_at));
        // Grouped by case, the most recently flagged first; each case's lines name the subjects.
        let mut groups: Vec<(CaseFlags, Vec<crate::store::workshop::Line>)> = vec![];
        for f in &flags {
            if !groups.iter().any(|(g, _)| g.case_id == f.case_id) {
                let lines = s.workshop.work_order(f.case_id.clone()).await?.map(|d| d.lines).unwrap_or_default();
                groups.push((CaseFlags { case_id: f.case_id.clone(), short: short_id(&f.case_id), rows: vec![] }, lines));
            }
            if let Some((g, lines)) = groups.iter_mut().find(|(g, _)| g.case_id == f.case_id) {
                g.rows.push(flag_row(&p, f, subject_of(&p.t, &f.subject, lines, &[])));
            }
        }
        let groups = groups.into_iter().map(|(g, _)| g).collect();
        Ok::<_, ApiError>(AnomaliesPage {
            c: p.chrome(p.t.s("anomalies.title"), &q),
            groups,
            all,
            settle_base: "/manager/anomalies/".into(),
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

pub async fn settle_flag(fid: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async { s.workshop.settle(&p.ctx.actor, fid.clone(), settlement(&f)?).await.map_err(ApiError::from) };
    back_at("/manager/anomalies", &format!("flag-{fid}"), r.await.map(|_| "flag_settled"))
}

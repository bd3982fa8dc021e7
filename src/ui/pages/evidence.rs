//! What is wrong with the car: photos (camera, quality gate, analysis), the one finding list,
//! review and measurement.

use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use warp::reply::Response;

use super::*;

// --- photos --------------------------------------------------------------------------------------

pub struct ShotSlot {
    pub shot: &'static str,
    pub label: String,
    pub done: bool,
}

#[derive(Template)]
#[template(path = "photos.html", config = "src/ui/askama.toml")]
struct PhotosPage {
    c: Chrome,
    h: CaseHead,
    photos: Vec<PhotoRow>,
    shots: Vec<ShotSlot>,
    shot: String,
    may_upload: bool,
    may_waive: bool,
    progress: String,
}

pub async fn photos_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "/photos").await?;
        let mut photos = vec![];
        for ph in &v.photos {
            photos.push(photo_row(&p, &s, &id, ph).await?);
        }
        let passed = photos.iter().filter(|x| x.ok).count();
        let taken = |shot: &str| v.photos.iter().any(|x| x.shot.as_deref() == Some(shot));
        let shots: Vec<ShotSlot> =
            ["front", "side", "close_up"].into_iter().map(|sh| ShotSlot { shot: sh, label: p.t.of("shot", sh), done: taken(sh) }).collect();
        let shot = q
            .get("shot")
            .filter(|x| matches!(*x, "front" | "side" | "close_up"))
            .map(str::to_string)
            .or_else(|| shots.iter().find(|x| !x.done).map(|x| x.shot.to_string()))
            .unwrap_or_else(|| "close_up".into());
        Ok::<_, ApiError>(PhotosPage {
            c: p.chrome(p.t.s("photos.title"), &q),
            h,
            photos,
            shots,
            shot,
            may_upload: p.may(RouteId::PhotosUpload),
            may_waive: p.may(RouteId::CasesPhotosWaive) && matches!(v.case.status, CaseStatus::Intake),
            progress: p
                .t
                .f("photos.progress", &[("n", &passed.to_string()), ("needed", &crate::domain::case::REQUESTED_PHOTOS.to_string())]),
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

/// The photo form: `csrf`, `shot` and `photo` (the file), read within the photo cap.
pub async fn upload_photo(id: String, p: Page, s: Arc<ApiState>, form: warp::multipart::FormData) -> Response {
    let to = format!("/cases/{id}/photos");
    let r = async {
        let up = read_upload(&s, form).await?.checked(&p)?;
        let shot = up.fields.get("shot").cloned().filter(|x| matches!(x.as_str(), "front" | "side" | "close_up"));
        let file = up.file.ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "invalid_photo", "file", "no photo"))?;
        crate::api::handlers::save_photo(&s, &p.ctx, id.clone(), file, shot, None).await
    };
    match r.await {
        Ok(_) => see_other(&format!("{to}?ok=photo_uploaded")),
        Err(e) if e.code == "forbidden" => error_page(p.t, StatusCode::FORBIDDEN, "err.csrf"),
        Err(e) => back(&to, Err(e)),
    }
}

#[derive(Template)]
#[template(path = "photo_card.html", config = "src/ui/askama.toml")]
struct PhotoCard {
    ph: PhotoRow,
}

/// One photo's card: the page polls it (htmx) while the analysis is pending.
pub async fn photo_card(id: String, pid: String, p: Page, s: Arc<ApiState>) -> Response {
    let r = async {
        let ph = s.cases.photo(&p.ctx.actor, pid).await?;
        if ph.case_id != id {
            return Err(ApiError::not_found("photo"));
        }
        Ok::<_, ApiError>(PhotoCard { ph: photo_row(&p, &s, &id, &ph).await? })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => crate::ui::harden(warp::reply::with_status("", e.status).into_response()),
    }
}

pub async fn waive_photos(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let reason = f.get("reason").unwrap_or("").to_string();
    let r = crate::case::photos::waive_photos(&s.store, &p.ctx.actor, id.clone(), reason).await;
    match r {
        Ok(_) => see_other(&format!("/cases/{id}/findings?ok=photos_waived")),
        Err(e) => back(&format!("/cases/{id}/photos"), Err(e.into())),
    }
}

pub async fn photo_raw(pid: String, p: Page, s: Arc<ApiState>) -> Response {
    crate::ui::harden(crate::api::handlers::get_photo(pid, s, p.ctx).await)
}

pub async fn photo_annotated(pid: String, p: Page, s: Arc<ApiState>) -> Response {
    crate::ui::harden(crate::api::handlers::photo_render(pid, s, p.ctx, false).await)
}

// --- findings ------------------------------------------------------------------------------------

pub struct FindingRow {
    pub id: String,
    pub text: String,
    pub sources: Vec<String>,
    pub confidence: String,
    pub review: bool,
    pub state: String,
    pub state_label: String,
    pub length: String,
    pub measurable: bool,
    pub part: String,
    pub position: String,
    pub damage_type: String,
}

#[derive(Template)]
#[template(path = "findings.html", config = "src/ui/askama.toml")]
struct FindingsPage {
    c: Chrome,
    h: CaseHead,
    rows: Vec<FindingRow>,
    may_review: bool,
    may_add: bool,
    may_estimate: bool,
    parts: Vec<(String, String)>,
    damages: Vec<(String, String)>,
    positions: Vec<(String, String)>,
}

/// A vocabulary word in the reader's language: the domain's own Chinese names (one source for
/// them), the wire id in English.
pub(super) fn word(t: &Strings, kind: &str, id: &str) -> String {
    use crate::domain::vocab::{DamageType, Part, Position};
    if t.lang() == UiLang::En {
        return id.replace('_', " ");
    }
    let zh = match kind {
        "part" => Part::from_id(id).map(Part::name_zh),
        "damage" => DamageType::from_id(id).map(DamageType::name_zh),
        "position" => Position::from_id(id).map(Position::name_zh),
        _ => None,
    };
    zh.map(str::to_string).unwrap_or_else(|| id.to_string())
}

pub(super) fn vocab(t: &Strings, kind: &str, ids: impl Iterator<Item = &'static str>) -> Vec<(String, String)> {
    ids.map(|k| (k.to_string(), word(t, kind, k))).collect()
}

pub async fn findings_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    use crate::domain::vocab::{DamageType, Part, Position};
    let r = async {
        let (h, v) = head(&p, &s, &id, "/findings").await?;
        let threshold = s.estimates.review_threshold();
        let rows = s
            .cases
            .findings(id.clone())
            .await?
            .into_iter()
            .map(|f| {
                let pending = f.review_status == "pending";
                let low = f.source == "vision" && f.confidence.unwrap_or(0.0) < threshold;
                let text = [
                    f.position.as_deref().map(|x| word(&p.t, "position", x)),
                    Some(word(&p.t, "part", &f.part)),
                    Some(word(&p.t, "damage", &f.damage_type)),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
                FindingRow {
                    id: f.id.clone(),
                    text,
                    sources: f.sources.iter().map(|x| p.t.of("source", x)).collect(),
                    confidence: f.confidence.map(|c| format!("{:.0}%", c * 100.0)).unwrap_or_default(),
                    review: pending && low,
                    state: f.review_status.clone(),
                    state_label: p.t.of("review_state", &f.review_status),
                    length: f.length_cm.or(f.measured_cm).map(|l| format!("{l:.0} cm")).unwrap_or_default(),
                    measurable: f.photo_id.is_some() && p.may(RouteId::FindingsMeasure),
                    part: f.part.clone(),
                    position: f.position.clone().unwrap_or_default(),
                    damage_type: f.damage_type.clone(),
                }
            })
            .collect();
        let may_estimate = p.may(RouteId::CasesEstimateCreate)
            && matches!(v.case.status, CaseStatus::Assessed | CaseStatus::Estimated | CaseStatus::Scheduled);
        Ok::<_, ApiError>(FindingsPage {
            c: p.chrome(p.t.s("findings.title"), &q),
            h,
            rows,
            may_review: p.may(RouteId::FindingsReview),
            may_add: p.may(RouteId::CasesFindingsAdd),
            may_estimate,
            parts: vocab(&p.t, "part", Part::ALL.iter().map(|x| x.id())),
            damages: vocab(&p.t, "damage", DamageType::ALL.iter().map(|x| x.id())),
            positions: vocab(&p.t, "position", Position::ALL.iter().map(|x| x.id())),
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

pub(super) fn num(f: &Form, k: &str) -> Result<Option<f64>, ApiError> {
    f.get(k)
        .map(|x| x.parse::<f64>())
        .transpose()
        .map_err(|_| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", k, format!("{k}: a number")))
}

pub async fn add_finding(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let to = format!("/cases/{id}/findings");
    let r = async {
        let n = NewFinding {
            part: f.get("part").unwrap_or("").to_string(),
            position: opt(&f, "position"),
            damage_type: f.get("damage_type").unwrap_or("").to_string(),
            length_cm: num(&f, "length_cm")?,
            note: opt(&f, "note"),
        };
        s.cases.add_finding(&p.ctx.actor, id.clone(), n).await.map_err(ApiError::from)
    };
    back(&to, r.await.map(|_| "finding_added"))
}

pub async fn review_finding(id: String, fid: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let to = format!("/cases/{id}/findings");
    let r = async {
        let decision = match f.get("decision") {
            Some("confirm") => Decision::Confirm,
            Some("correct") => Decision::Correct,
            Some("reject") => Decision::Reject,
            _ => return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "decision", "decision")),
        };
        let correcting = matches!(decision, Decision::Correct);
        let r = Review {
            decision,
            part: if correcting { opt(&f, "part") } else { None },
            position: if correcting { opt(&f, "position") } else { None },
            damage_type: if correcting { opt(&f, "damage_type") } else { None },
            length_cm: if correcting { num(&f, "length_cm")? } else { None },
            reason: opt(&f, "reason"),
        };
        s.cases.review_finding(&p.ctx.actor, fid, r).await.map_err(ApiError::from)
    };
    back(&to, r.await.map(|_| "finding_reviewed"))
}

#[derive(Template)]
#[template(path = "measure.html", config = "src/ui/askama.toml")]
struct MeasurePage {
    c: Chrome,
    h: CaseHead,
    finding_id: String,
    photo_id: String,
    text: String,
}

pub async fn measure_page(id: String, fid: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, _) = head(&p, &s, &id, "/findings").await?;
        let f = s.cases.findings(id.clone()).await?.into_iter().find(|f| f.id == fid).ok_or_else(|| ApiError::not_found("finding"))?;
        let photo_id = f.photo_id.clone().ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "no_photo", "no photo"))?;
        let text = format!("{} {}", word(&p.t, "part", &f.part), word(&p.t, "damage", &f.damage_type));
        Ok::<_, ApiError>(MeasurePage { c: p.chrome(p.t.s("measure.title"), &q), h, finding_id: fid, photo_id, text })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

pub async fn measure(id: String, fid: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async {
        let n = |k: &str| -> Result<f64, ApiError> {
            num(&f, k)?.ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", k, format!("{k}: required")))
        };
        let m = MarkedReference {
            from: [n("from_x")? as f32, n("from_y")? as f32],
            to: [n("to_x")? as f32, n("to_y")? as f32],
            length_cm: n("length_cm")?,
        };
        s.cases.measure_finding(&p.ctx.actor, fid.clone(), m).await.map_err(ApiError::from)
    };
    match r.await {
        Ok(_) => see_other(&format!("/cases/{id}/findings?ok=measured")),
        Err(e) => back(&format!("/cases/{id}/findings/{fid}/measure"), Err(e)),
    }
}

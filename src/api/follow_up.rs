//! The follow-up routes (seed scenario 3): the customer-service queue, a case's call view with
//! its script, phone answers and call attempts, consent at delivery and its withdrawal, and the
//! alert queue with respond/resolve. One service call each (`case::follow_up`).

use std::sync::Arc;

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::reply::{json as js, Response};
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::policy::RouteId::*;
use super::{auth, json_body, with, ApiState, Ctx};
use crate::case::follow_up::{AlertAction, Attempt, ConsentInput, PhoneAnswer};

fn ok<T: serde::Serialize>(r: Result<T, crate::case::CaseError>) -> Response {
    respond(r.map(|v| js(&v).into_response()).map_err(ApiError::from))
}

async fn queue(s: Arc<ApiState>, c: Ctx) -> Response {
    ok(s.follow_up.queue(&c.actor).await)
}

async fn call_view(id: String, s: Arc<ApiState>, c: Ctx) -> Response {
    ok(s.follow_up.call_view(&c.actor, id).await)
}

async fn answer(id: String, s: Arc<ApiState>, c: Ctx, req: PhoneAnswer) -> Response {
    ok(s.follow_up.record_phone(&c.actor, id, req).await)
}

async fn attempt(id: String, s: Arc<ApiState>, c: Ctx, req: Attempt) -> Response {
    ok(s.follow_up.attempt(&c.actor, id, req).await)
}

async fn consent(id: String, s: Arc<ApiState>, c: Ctx, req: ConsentInput) -> Response {
    ok(s.follow_up.record_consent(&c.actor, id, req).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    pub channel: String,
}

async fn revoke(id: String, s: Arc<ApiState>, c: Ctx, req: Revoke) -> Response {
    ok(s.follow_up.revoke_consent(&c.actor, id, req.channel).await)
}

async fn consent_text(s: Arc<ApiState>, _c: Ctx) -> Response {
    let t = s.follow_up.setup().texts.clone();
    js(&serde_json::json!({ "current": t.current_consent(), "versions": t.consent, "channel_names": t.channel_names })).into_response()
}

async fn alerts(s: Arc<ApiState>, _c: Ctx) -> Response {
    ok(s.follow_up.alerts().await)
}

async fn alert_respond(id: String, s: Arc<ApiState>, c: Ctx, req: AlertAction) -> Response {
    ok(s.follow_up.respond(&c.actor, id, req).await)
}

async fn alert_resolve(id: String, s: Arc<ApiState>, c: Ctx, req: AlertAction) -> Response {
    ok(s.follow_up.resolve(&c.actor, id, req).await)
}

/// The routes, for `api::routes` to fold in with the rest.
pub(super) fn routes(s: &Arc<ApiState>) -> Vec<BoxedFilter<(Response,)>> {
    let json = s.limits.json_body;
    let st = || with(s.clone());
    let a = |id| auth(s.clone(), id);
    let v1 = || warp::path!("api" / "v1" / ..);
    vec![
        v1().and(warp::path!("follow-ups")).and(warp::get()).and(st()).and(a(FollowUpsList)).then(queue).boxed(),
        v1().and(warp::path!("follow-up" / "consent-text"))
            .and(warp::get())
            .and(st())
            .and(a(FollowUpConsentText))
            .then(consent_text)
            .boxed(),
        v1().and(warp::path!("follow-up" / "alerts")).and(warp::get()).and(st()).and(a(FollowUpAlerts)).then(alerts).boxed(),
        v1().and(warp::path!("follow-up" / "alerts" / String / "respond"))
            .and(warp::post())
            .and(st())
            .and(a(FollowUpAlertRespond))
            .and(json_body(json))
            .then(alert_respond)
            .boxed(),
        v1().and(warp::path!("follow-up" / "alerts" / String / "resolve"))
            .and(warp::post())
            .and(st())
            .and(a(FollowUpAlertResolve))
            .and(json_body(json))
            .then(alert_resolve)
            .boxed(),
        v1().and(warp::path!("cases" / String / "follow-up")).and(warp::get()).and(st()).and(a(CasesFollowUp)).then(call_view).boxed(),
        v1().and(warp::path!("cases" / String / "follow-up" / "answer"))
            .and(warp::post())
            .and(st())
            .and(a(CasesFollowUpAnswer))
            .and(json_body(json))
            .then(answer)
            .boxed(),
        v1().and(warp::path!("cases" / String / "follow-up" / "attempt"))
            .and(warp::post())
            .and(st())
            .and(a(CasesFollowUpAttempt))
            .and(json_body(json))
            .then(attempt)
            .boxed(),
        v1().and(warp::path!("cases" / String / "consent"))
            .and(warp::post())
            .and(st())
            .and(a(CasesConsent))
            .and(json_body(json))
            .then(consent)
            .boxed(),
        v1().and(warp::path!("customers" / String / "consent" / "revoke"))
            .and(warp::post())
            .and(st())
            .and(a(CustomersConsentRevoke))
            .and(json_body(json))
            .then(revoke)
            .boxed(),
    ]
}

//! The alerts follow-up answers raise: the queue, the SLA (escalation to the manager when a hot
//! alert is still unresolved at its escalation time, checked every minute and before every
//! listing), a person's first response, and resolution (closing the case when no hot alert is left,
//! optionally opening the comeback case from the problems read in the customer's words).

use std::sync::Arc;
use std::time::Duration;

use super::{close_if_settled, AlertAction, AlertView, FollowUpService};
use crate::case::CaseError;
use crate::clock;
use crate::domain::case::Case;
use crate::domain::validate;
use crate::domain::{new_id, Actor, CaseStatus};
use crate::store::follow_up::{self as repo, Alert};
use crate::store::{self, audit, cases::Event, Tx};

impl FollowUpService {
    // ---- alerts --------------------------------------------------------------------------------

    /// The alert queue: open ones first (hot by due time), then those resolved in the last 7 days.
    /// Escalates what is past its escalation time first, so the list never shows a stale state.
    pub async fn alerts(&self) -> Result<Vec<AlertView>, CaseError> {
        self.escalate_due().await?;
        let now = self.clock.now();
        let since = clock::stamp(now - chrono::Duration::days(7));
        let list = self.store.read(move |tx| repo::alerts(tx, &since, 500)).await?;
        let stamp = clock::stamp(now);
        Ok(list.into_iter().map(|a| self.alert_view(a, &stamp)).collect())
    }

    /// Hot alerts still unresolved at their escalation time go to the manager (flagged on the
    /// case). Returns how many were escalated now.
    pub async fn escalate_due(&self) -> Result<usize, CaseError> {
        let at = self.clock.stamp();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let due = repo::due_for_escalation(tx, &at)?;
                let actor = Actor::system("follow-up-sla");
                for mut a in due.iter().cloned() {
                    a.escalated_at = Some(at.clone());
                    repo::save_alert(tx, &mut a, &at)?;
                    let why = format!("hot follow-up alert unresolved past its escalation time: {}", a.summary);
                    store::cases::note(tx, &a.case_id, &actor, &at, true, Event::note("follow_up_escalated", &why))?;
                    audit::record(tx, &actor, "follow_up.escalate", "follow_up_alert", Some(&a.id), "ok")?;
                }
                Ok(due.len())
            })
            .await
    }

    /// A person takes the alert (the first response stops the SLA clock).
    pub async fn respond(&self, actor: &Actor, alert_id: String, act: AlertAction) -> Result<AlertView, CaseError> {
        self.change_alert(actor, alert_id, act, false).await
    }

    /// The alert is settled (with what was done); the case closes when no hot alert is left.
    pub async fn resolve(&self, actor: &Actor, alert_id: String, act: AlertAction) -> Result<AlertView, CaseError> {
        self.change_alert(actor, alert_id, act, true).await
    }

    async fn change_alert(&self, actor: &Actor, alert_id: String, act: AlertAction, resolve: bool) -> Result<AlertView, CaseError> {
        let note = validate::opt_text("note", act.note.as_deref(), 1000)?;
        if resolve && note.is_none() {
            return Err(validate::invalid("note", "say what was done for the customer").into());
        }
        let (actor2, store_id, at) = (actor.clone(), self.store_id.clone(), self.clock.stamp());
        let alert = self
            .store
            .write(move |tx| -> Result<_, CaseError> {
                let actor = actor2;
                let mut a = repo::alert(tx, &alert_id)?.ok_or(CaseError::NotFound("alert"))?;
                if a.resolved_at.is_some() {
                    return Err(CaseError::state("alert_resolved", "this alert is already resolved"));
                }
                if a.first_response_at.is_none() {
                    a.first_response_at = Some(at.clone());
                    a.first_response_by = Some(actor.username.clone());
                }
                if resolve {
                    a.resolved_at = Some(at.clone());
                    a.resolved_by = Some(actor.username.clone());
                    a.resolution = note.clone();
                    if act.open_case {
                        a.new_case_id = Some(open_comeback_case(tx, &a, &store_id, &actor, &at)?);
                    }
                }
                repo::save_alert(tx, &mut a, &at)?;
                let what = if resolve { "follow_up_alert_resolved" } else { "follow_up_alert_taken" };
                let why = note.clone().unwrap_or_else(|| format!("{} took the alert", actor.username));
                store::cases::note(tx, &a.case_id, &actor, &at, false, Event::note(what, &why))?;
                audit::record(
                    tx,
                    &actor,
                    &format!("follow_up.{}", if resolve { "resolve" } else { "respond" }),
                    "follow_up_alert",
                    Some(&a.id),
                    "ok",
                )?;
                if resolve {
                    let mut case = store::cases::get(tx, &a.case_id)?.ok_or(CaseError::NotFound("case"))?;
                    close_if_settled(tx, &mut case, &actor, "follow-up alert resolved")?;
                }
                Ok(a)
            })
            .await?;
        Ok(self.alert_view(alert, &self.clock.stamp()))
    }

    /// Escalate due alerts every minute, so a hot alert reaches the manager even when nobody
    /// opens the queue.
    pub fn watch_sla(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let Some(s) = weak.upgrade() else { return };
                if let Err(e) = s.escalate_due().await {
                    tracing::warn!(error = %e, "follow-up SLA check failed; it runs again in a minute");
                }
            }
        });
    }
}

/// A new case for the same customer and vehicle from what the alert read in the customer's
/// words (its comment as the summary); the new case starts at `reported` like any other.
fn open_comeback_case(tx: &Tx, a: &Alert, store_id: &str, actor: &Actor, at: &str) -> Result<String, CaseError> {
    let old = store::cases::get(tx, &a.case_id)?.ok_or(CaseError::NotFound("case"))?;
    let survey_comment: Option<String> =
        tx.conn().query_row("SELECT comment FROM surveys WHERE id = ?1", [&a.survey_id], |r| r.get(0)).ok().flatten();
    let summary: String = survey_comment.filter(|c| !c.trim().is_empty()).unwrap_or_else(|| a.summary.clone()).chars().take(2000).collect();
    let case = Case {
        id: new_id(),
        store_id: store_id.to_string(),
        customer_id: old.customer_id.clone(),
        vehicle_id: old.vehicle_id.clone(),
        status: CaseStatus::Reported,
        prior_status: None,
        summary: if summary.trim().is_empty() { format!("回访问题 follow-up of case {}", old.id) } else { summary },
        assigned_to: None,
        needs_review: true,
        created_at: at.to_string(),
        updated_at: at.to_string(),
        version: 1,
    };
    let why = format!("from the follow-up alert on case {}", old.id);
    store::cases::insert(tx, &case, actor, Event { kind: "created", from: None, to: Some(CaseStatus::Reported), reason: Some(&why) })?;
    audit::record(tx, actor, "case.create", "case", Some(&case.id), "ok")?;
    Ok(case.id)
}

//! What the store's KPIs are computed from (read-only queries over cases, messages, the timeline,
//! findings, surveys, alerts and the labour clock), and the daily KPI snapshots with their outbox
//! records.
//!
//! Invariants:
//! - Reads only, except `save_snapshot`, which writes the snapshot row and its outbox record in the
//!   caller's transaction: HQ gets exactly the snapshots the store keeps.
//! - Period bounds are compared with `julianday()`, not as text: stamps from HQ (survey answers) may
//!   carry another offset than our own `…Z` stamps, and they must still fall on the right day.
//! - A snapshot's version grows by one each time its day is recomputed (HQ keeps the newest);
//!   it is kept in the stored body (`version`), which the outbox body leaves out (HQ's contract).

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::outbox::{self, Record};
use super::{StoreError, Tx};
use crate::clock::{parse, stamp};
use crate::domain::kpi::{AnswerFact, Delivery, Facts, HotAlert, LabourLine, LaterCase, PartAt, Reviewed};

/// Everything the figures of `[from, to)` need; hot alerts are judged live at `as_of`.
pub fn facts(tx: &Tx, from: DateTime<Utc>, to: DateTime<Utc>, as_of: DateTime<Utc>, comeback_days: i64) -> Result<Facts, StoreError> {
    let (a, b, now) = (stamp(from), stamp(to), stamp(as_of));
    let c = tx.conn();
    let mut f = Facts::default();

    // Cases reported in the period, and minutes to the assistant's first answer.
    let mut st = c.prepare_cached(
        "SELECT ((SELECT MIN(julianday(m.at)) FROM messages m WHERE m.case_id = c.id AND m.sender = 'assistant')
                 - julianday(c.created_at)) * 1440.0
           FROM cases c
          WHERE julianday(c.created_at) >= julianday(?1) AND julianday(c.created_at) < julianday(?2)",
    )?;
    for m in st.query_map(params![a, b], |r| r.get::<_, Option<f64>>(0))? {
        f.cases += 1;
        if let Some(m) = m?.filter(|m| *m >= 0.0) {
            f.response_minutes.push(m);
        }
    }

    // Escalations in the period: minutes to the first action of a person after it. A person other
    // than the one who escalated, or anyone taking the case (assign) or handing it back.
    let mut st = c.prepare_cached(
        "SELECT ((SELECT MIN(julianday(n.at)) FROM case_events n
                   WHERE n.case_id = e.case_id AND n.id > e.id AND n.actor_id IS NOT NULL AND n.kind != 'escalated'
                     AND (n.kind IN ('assigned', 'handed_back') OR e.actor_id IS NULL OR n.actor_id != e.actor_id))
                 - julianday(e.at)) * 1440.0
           FROM case_events e
          WHERE e.to_status = 'escalated' AND julianday(e.at) >= julianday(?1) AND julianday(e.at) < julianday(?2)",
    )?;
    for m in st.query_map(params![a, b], |r| r.get::<_, Option<f64>>(0))? {
        if let Some(m) = m?.filter(|m| *m >= 0.0) {
            f.escalation_minutes.push(m);
        }
    }

    const ALERT: &str = "SELECT raised_at, due_at, escalate_at, first_response_at, resolved_at FROM follow_up_alerts WHERE kind = 'hot'";
    let alert = |r: &rusqlite::Row| -> rusqlite::Result<Option<HotAlert>> {
        let t = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> { Ok(r.get::<_, Option<String>>(i)?.as_deref().and_then(parse)) };
        let Some(raised_at) = t(0)? else { return Ok(None) };
        Ok(Some(HotAlert { raised_at, due_at: t(1)?, escalate_at: t(2)?, first_response_at: t(3)?, resolved_at: t(4)? }))
    };
    let mut st =
        c.prepare_cached(&format!("{ALERT} AND julianday(raised_at) >= julianday(?1) AND julianday(raised_at) < julianday(?2)"))?;
    for h in st.query_map(params![a, b], alert)? {
        f.alerts_raised.extend(h?);
    }
    let mut st = c.prepare_cached(&format!(
        "{ALERT} AND julianday(raised_at) <= julianday(?1) AND (resolved_at IS NULL OR julianday(resolved_at) > julianday(?1))"
    ))?;
    for h in st.query_map(params![now], alert)? {
        f.alerts_live.extend(h?);
    }

    // Findings of the period's cases that a person decided on, with every source that reported them.
    let mut st = c.prepare_cached(
        "SELECT f.source, f.sources, f.review_status FROM findings f JOIN cases c ON c.id = f.case_id
          WHERE f.review_status IN ('confirmed', 'corrected', 'rejected')
            AND julianday(c.created_at) >= julianday(?1) AND julianday(c.created_at) < julianday(?2)",
    )?;
    for row in st.query_map(params![a, b], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?)))? {
        let (first, sources, status) = row?;
        let mut sources: Vec<String> = sources.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        if sources.is_empty() {
            sources.push(first);
        }
        f.reviewed.push(Reviewed { sources, status });
    }

    // Survey answers given in the period.
    let mut st = c.prepare_cached(
        "SELECT follow_up_id, answered_at, recorded_at, csat, nps, fixed FROM surveys
          WHERE julianday(answered_at) >= julianday(?1) AND julianday(answered_at) < julianday(?2)",
    )?;
    let rows = st.query_map(params![a, b], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, u8>(3)?,
            r.get::<_, u8>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    for row in rows {
        let (follow_up_id, answered, recorded_at, csat, nps, fixed) = row?;
        let Some(answered_at) = parse(&answered) else { continue };
        let fixed: Vec<Value> = serde_json::from_str(&fixed).map_err(|e| StoreError::Corrupt(format!("a survey's fixed answers: {e}")))?;
        let fixed = fixed.iter().filter_map(|x| x["answer"].as_str().map(str::to_string)).collect();
        f.answers.push(AnswerFact { follow_up_id, answered_at, recorded_at, csat, nps, fixed });
    }

    // Cases delivered in the period (first delivery), and the cases of the same car after them.
    let mut st = c.prepare_cached(
        "SELECT e.case_id, c.vehicle_id, MIN(e.at) FROM case_events e JOIN cases c ON c.id = e.case_id
          WHERE e.to_status = 'delivered' AND c.vehicle_id IS NOT NULL
          GROUP BY e.case_id
         HAVING julianday(MIN(e.at)) >= julianday(?1) AND julianday(MIN(e.at)) < julianday(?2)",
    )?;
    let delivered: Vec<(String, String, String)> =
        st.query_map(params![a, b], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    let mut later = c.prepare_cached(
        "SELECT id, created_at FROM cases
          WHERE vehicle_id = ?1 AND id != ?2 AND julianday(created_at) > julianday(?3) AND julianday(created_at) <= julianday(?3) + ?4",
    )?;
    for (case_id, vehicle_id, at) in delivered {
        let Some(at) = parse(&at) else { continue };
        let next: Vec<(String, String)> = later
            .query_map(params![vehicle_id, case_id, stamp(at), comeback_days], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (id, created) in next {
            if let Some(created_at) = parse(&created) {
                f.later_cases.push(LaterCase { parts: parts_of(tx, &id)?, case_id: id, vehicle_id: vehicle_id.clone(), created_at });
            }
        }
        f.deliveries.push(Delivery { parts: parts_of(tx, &case_id)?, case_id, vehicle_id, at });
    }

    // Earlier workshop visits from the DMS import (`service_history`): a visit in the period counts
    // as a delivery of that car with the parts its lines named, so a case of the same car within
    // `comeback_days` after it is a comeback. The visit's day is its local date at 00:00.
    let mut st = c.prepare_cached(
        "SELECT h.id, h.vehicle_id, h.visit_date, h.part_keys, EXISTS(SELECT 1 FROM cases k WHERE k.vehicle_id = h.vehicle_id)
           FROM service_history h
          WHERE julianday(h.visit_date) >= julianday(?1) AND julianday(h.visit_date) < julianday(?2)",
    )?;
    let visits: Vec<(String, String, String, String, bool)> =
        st.query_map(params![a, b], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?.collect::<Result<_, _>>()?;
    for (id, vehicle_id, day, keys, has_cases) in visits {
        let Some(at) = chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
        else {
            continue;
        };
        let keys: Vec<String> =
            serde_json::from_str(&keys).map_err(|e| StoreError::Corrupt(format!("a service visit's part keys: {e}")))?;
        let case_id = format!("dms:{id}");
        // Only a car that has cases can come back (most imported cars have none: no query for them).
        if has_cases {
            let next: Vec<(String, String)> = later
                .query_map(params![vehicle_id, case_id, stamp(at), comeback_days], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (id, created) in next {
                if let Some(created_at) = parse(&created) {
                    if !f.later_cases.iter().any(|l| l.case_id == id) {
                        f.later_cases.push(LaterCase {
                            parts: parts_of(tx, &id)?,
                            case_id: id,
                            vehicle_id: vehicle_id.clone(),
                            created_at,
                        });
                    }
                }
            }
        }
        let parts = keys.into_iter().map(|part| PartAt { part, position: None }).collect();
        f.deliveries.push(Delivery { parts, case_id, vehicle_id, at });
    }

    // Finished labour lines whose clock stopped last in the period: standard against clocked hours.
    let mut st = c.prepare_cached(
        "SELECT l.standard_hours, SUM((julianday(e.ended_at) - julianday(e.started_at)) * 24.0)
           FROM work_order_lines l JOIN clock_entries e ON e.line_id = l.id
          WHERE l.kind = 'labour' AND l.status = 'done' AND l.standard_hours IS NOT NULL AND e.ended_at IS NOT NULL
          GROUP BY l.id
         HAVING MAX(julianday(e.ended_at)) >= julianday(?1) AND MAX(julianday(e.ended_at)) < julianday(?2)",
    )?;
    for row in
        st.query_map(params![a, b], |r| Ok(LabourLine { standard_h: r.get(0)?, clocked_h: r.get::<_, Option<f64>>(1)?.unwrap_or(0.0) }))?
    {
        f.labour.push(row?);
    }
    Ok(f)
}

/// The parts a case's findings name (rejected findings named nothing real).
fn parts_of(tx: &Tx, case_id: &str) -> Result<Vec<PartAt>, StoreError> {
    let mut st = tx.conn().prepare_cached("SELECT part, position FROM findings WHERE case_id = ?1 AND review_status != 'rejected'")?;
    let v = st.query_map([case_id], |r| Ok(PartAt { part: r.get(0)?, position: r.get(1)? }))?.collect::<Result<_, _>>()?;
    Ok(v)
}

/// When this store's database was first set up (no snapshot is made for a day before it).
pub fn store_since(tx: &Tx) -> Result<Option<DateTime<Utc>>, StoreError> {
    let s: Option<String> = tx.conn().query_row("SELECT MIN(created_at) FROM stores", [], |r| r.get(0))?;
    Ok(s.as_deref().and_then(parse))
}

/// The stored snapshot of a local day (`YYYY-MM-DD`): its body (with `version`) and when it was made.
pub fn snapshot(tx: &Tx, day: &str) -> Result<Option<(Value, String)>, StoreError> {
    let row: Option<(String, String)> =
        tx.conn().query_row("SELECT body, at FROM kpi_snapshots WHERE day = ?1", [day], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    row.map(|(body, at)| Ok((decode(&body, day)?, at))).transpose()
}

fn decode(body: &str, day: &str) -> Result<Value, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("the KPI snapshot of {day}: {e}")))
}

/// Snapshots of the days in `[from, to)` (`YYYY-MM-DD`), oldest first.
pub fn snapshots(tx: &Tx, from: &str, to: &str) -> Result<Vec<(String, Value)>, StoreError> {
    let mut st = tx.conn().prepare_cached("SELECT day, body FROM kpi_snapshots WHERE day >= ?1 AND day < ?2 ORDER BY day")?;
    let rows: Vec<(String, String)> = st.query_map(params![from, to], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    rows.into_iter().map(|(day, body)| decode(&body, &day).map(|v| (day, v))).collect()
}

/// Store a day's snapshot (replacing an earlier one of the same day) and append it to the outbox,
/// in the caller's transaction. Returns the new version.
pub fn save_snapshot(tx: &Tx, day: &str, body: &Value, at: &str) -> Result<i64, StoreError> {
    let version = match snapshot(tx, day)? {
        Some((old, _)) => old["version"].as_i64().unwrap_or(0) + 1,
        None => 1,
    };
    let mut stored = body.clone();
    if let Some(o) = stored.as_object_mut() {
        o.insert("version".into(), Value::from(version));
    }
    tx.conn().execute(
        "INSERT INTO kpi_snapshots (day, body, at) VALUES (?1, ?2, ?3)
         ON CONFLICT (day) DO UPDATE SET body = excluded.body, at = excluded.at",
        params![day, stored.to_string(), at],
    )?;
    outbox::append(tx, &Record::KpiSnapshot { day, version, body }, at)?;
    Ok(version)
}

//! `DmsImport`: a DMS export into the store in one write transaction, and the reads of the cars'
//! history that the case page and intake use.
//!
//! The counting and the writing are one code path (`apply` with `write` off or on), inside the
//! store's writer: a dry run reports exactly what the real run then does, against the same data.

use std::collections::HashMap;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tracing::instrument;

use super::parse::{parse, Parsed};
use super::{fields, Counts, DmsError, DmsReport};
use crate::domain::vocab::Part;
use crate::domain::{new_id, now, Actor, Customer, Vehicle};
use crate::import::table::{self, Mapping};
use crate::store::history::{self, ImportRun, Visit};
use crate::store::{audit, people, Store, StoreError, Tx};

/// A visit of the car's history on the case page: `same_part` when it touched a part one of the
/// case's findings names ("上次维修同一部位").
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct HistoryRow {
    #[serde(flatten)]
    pub visit: Visit,
    pub same_part: bool,
}

/// Visits shown on a case page.
pub const CASE_HISTORY_LIMIT: u32 = 20;

#[derive(Clone)]
pub struct DmsImport {
    store: Store,
}

impl DmsImport {
    pub fn new(store: Store) -> DmsImport {
        DmsImport { store }
    }

    /// Read, check and (unless `dry_run`, and only when no row was refused) import a DMS export.
    /// `Ok` with `refused()` when rows were refused: the report lists them, nothing was imported.
    #[instrument(skip_all, fields(import.bytes = bytes.len(), import.dry_run = dry_run))]
    pub async fn run(
        &self,
        actor: &Actor,
        file_name: &str,
        bytes: Vec<u8>,
        mapping: &Mapping,
        dry_run: bool,
    ) -> Result<DmsReport, DmsError> {
        self.run_named(actor, file_name, bytes, "custom", mapping, dry_run).await
    }

    /// `run`, recording which mapping (a built-in name or a file path) read the file.
    pub async fn run_named(
        &self,
        actor: &Actor,
        file_name: &str,
        bytes: Vec<u8>,
        mapping_name: &str,
        mapping: &Mapping,
        dry_run: bool,
    ) -> Result<DmsReport, DmsError> {
        let started = Instant::now();
        let today = chrono::Local::now().date_naive();
        let (name, m) = (file_name.to_string(), mapping.clone());
        // Reading and checking 100,000 rows is CPU work: off the async runtime.
        let (sha, parsed) = tokio::task::spawn_blocking(move || -> Result<(String, Parsed), DmsError> {
            let sha = hex::encode(Sha256::digest(&bytes));
            let t = table::read(&name, &bytes)?;
            drop(bytes);
            Ok((sha, parse(&t, &m, today)?))
        })
        .await
        .map_err(|_| DmsError::Store(StoreError::Panicked))??;

        let mut report = DmsReport {
            import_id: new_id(),
            file_sha256: sha,
            mapping: mapping_name.to_string(),
            rows: parsed.rows,
            errors_total: parsed.errors_total,
            dry_run,
            ..DmsReport::default()
        };
        report.errors = parsed.errors.clone();
        let (actor, file_name) = (actor.clone(), file_name.to_string());
        let r = report.clone();
        let counts = self
            .store
            .write(move |tx| -> Result<[Counts; 3], StoreError> {
                let at = now();
                let counts = if r.refused() { [Counts::default(); 3] } else { apply(tx, &parsed, &r.import_id, &at, !r.dry_run)? };
                let [c, v, h] = counts;
                let body = serde_json::json!({
                    "rows": r.rows, "customers": c, "vehicles": v, "visits": h, "errors_total": r.errors_total,
                });
                history::insert_run(
                    tx,
                    &ImportRun {
                        id: &r.import_id,
                        kind: "dms",
                        file_name: &file_name,
                        file_sha256: &r.file_sha256,
                        mapping: &r.mapping,
                        dry_run: r.dry_run,
                        counts: &body.to_string(),
                        actor: &actor.username,
                        at: &at,
                    },
                )?;
                // Counts and the file's hash only: the audit log never holds the people imported.
                let outcome = format!(
                    "{}rows {}; customers +{} ~{}; vehicles +{} ~{}; visits +{} ~{}; refused {}; sha256 {}",
                    if r.dry_run { "dry run: " } else { "" },
                    r.rows,
                    c.new,
                    c.updated,
                    v.new,
                    v.updated,
                    h.new,
                    h.updated,
                    r.errors_total,
                    r.file_sha256
                );
                audit::record(tx, &actor, "import.dms", "import_run", Some(&r.import_id), &outcome)?;
                Ok(counts)
            })
            .await?;
        [report.customers, report.vehicles, report.visits] = counts;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            rows = report.rows,
            refused = report.errors_total,
            customers_new = report.customers.new,
            vehicles_new = report.vehicles.new,
            visits_new = report.visits.new,
            elapsed_ms = report.elapsed_ms,
            "DMS import"
        );
        Ok(report)
    }

    /// A car's visits that touched one of `parts`, newest first (intake: "fixed there before").
    pub async fn previous_repairs(&self, vehicle_id: String, parts: Vec<Part>) -> Result<Vec<Visit>, DmsError> {
        self.store
            .read(move |tx| {
                let ids: Vec<&str> = parts.iter().map(|p| p.id()).collect();
                history::previous_repairs(tx, &vehicle_id, &ids)
            })
            .await
            .map_err(DmsError::from)
    }

    /// The history of a case's car, newest first, each visit marked when it touched a part the
    /// case's findings name. Empty when the case has no car or the car no history.
    pub async fn case_history(&self, case_id: String) -> Result<Vec<HistoryRow>, DmsError> {
        self.store
            .read(move |tx| -> Result<Vec<HistoryRow>, StoreError> {
                let (vehicle, parts) = history::case_parts(tx, &case_id)?;
                let Some(vehicle) = vehicle else { return Ok(vec![]) };
                let visits = history::of_vehicle(tx, &vehicle, CASE_HISTORY_LIMIT)?;
                Ok(visits.into_iter().map(|v| HistoryRow { same_part: v.part_keys.iter().any(|k| parts.contains(k)), visit: v }).collect())
            })
            .await
            .map_err(DmsError::from)
    }
}

/// The phone a stored customer is found by: the import's form when it parses, its digits otherwise.
fn phone_key(stored: &str) -> String {
    fields::phone(stored).unwrap_or_else(|_| stored.chars().filter(char::is_ascii_digit).collect())
}

/// Count — and with `write`, make — the changes `p` brings: customers by phone, vehicles by VIN,
/// visits by (vehicle, day, repair order). A value changes only where the file has one and it
/// differs (mileage only upwards: an odometer does not run back).
fn apply(tx: &Tx, p: &Parsed, import_id: &str, at: &str, write: bool) -> Result<[Counts; 3], StoreError> {
    let mut cc = Counts::default();
    let mut customers: HashMap<String, Customer> = HashMap::new();
    for c in history::live_customers_with_phone(tx)? {
        let key = phone_key(c.phone.as_deref().unwrap_or(""));
        customers.entry(key).or_insert(c); // the oldest customer with that number keeps it
    }
    let mut customer_id: HashMap<&str, String> = HashMap::with_capacity(p.customers.len());
    for c in &p.customers {
        match customers.get(&c.phone) {
            Some(old) if old.name == c.name => cc.unchanged += 1,
            Some(old) => {
                cc.updated += 1;
                if write {
                    people::update_customer(tx, &Customer { name: c.name.clone(), updated_at: at.to_string(), ..old.clone() })?;
                }
            }
            None => {
                cc.new += 1;
                let new = Customer {
                    id: new_id(),
                    name: c.name.clone(),
                    phone: Some(c.phone.clone()),
                    email: None,
                    preferred_language: "zh-CN".into(),
                    created_at: at.to_string(),
                    updated_at: at.to_string(),
                };
                if write {
                    people::insert_customer(tx, &new)?;
                }
                customers.insert(c.phone.clone(), new);
            }
        }
        customer_id.insert(&c.phone, customers[&c.phone].id.clone());
    }

    let mut vc = Counts::default();
    let mut vehicles: HashMap<String, Vehicle> =
        history::vehicles_with_vin(tx)?.into_iter().filter_map(|v| v.vin.clone().map(|k| (k, v))).collect();
    let mut vehicle_id: HashMap<&str, String> = HashMap::with_capacity(p.vehicles.len());
    for v in &p.vehicles {
        let owner = customer_id.get(v.phone.as_str()).cloned().ok_or(StoreError::NotFound("the owner of an imported vehicle"))?;
        match vehicles.get(&v.vin) {
            Some(old) => {
                let mut next = old.clone();
                next.customer_id = owner;
                for (slot, new) in [(&mut next.plate, &v.plate), (&mut next.make, &v.make), (&mut next.model, &v.model)] {
                    if new.is_some() {
                        slot.clone_from(new);
                    }
                }
                next.year = v.year.or(next.year);
                next.mileage_km = next.mileage_km.max(v.mileage_km);
                if next == *old {
                    vc.unchanged += 1;
                } else {
                    vc.updated += 1;
                    next.updated_at = at.to_string();
                    if write {
                        history::update_vehicle(tx, &next)?;
                    }
                }
                vehicle_id.insert(&v.vin, old.id.clone());
            }
            None => {
                vc.new += 1;
                let new = Vehicle {
                    id: new_id(),
                    customer_id: owner,
                    vin: Some(v.vin.clone()),
                    plate: v.plate.clone(),
                    make: v.make.clone(),
                    model: v.model.clone(),
                    year: v.year,
                    mileage_km: v.mileage_km,
                    created_at: at.to_string(),
                    updated_at: at.to_string(),
                };
                if write {
                    people::insert_vehicle(tx, &new)?;
                }
                vehicle_id.insert(&v.vin, new.id.clone());
                vehicles.insert(v.vin.clone(), new);
            }
        }
    }

    let mut hc = Counts::default();
    let stored: HashMap<(String, String, String), Visit> =
        history::all_visits(tx)?.into_iter().map(|v| ((v.vehicle_id.clone(), v.visit_date.clone(), v.ro_no.clone()), v)).collect();
    for v in &p.visits {
        let vid = vehicle_id.get(v.vin.as_str()).cloned().ok_or(StoreError::NotFound("the vehicle of an imported visit"))?;
        match stored.get(&(vid.clone(), v.visit_date.clone(), v.ro_no.clone())) {
            Some(old) => {
                let mut next = old.clone();
                next.mileage_km = v.mileage_km.or(old.mileage_km);
                next.amount_fen = v.amount_fen.or(old.amount_fen);
                for (slot, new) in [(&mut next.operations, &v.operations), (&mut next.parts, &v.parts), (&mut next.part_keys, &v.part_keys)]
                {
                    if !new.is_empty() {
                        slot.clone_from(new);
                    }
                }
                if next == *old {
                    hc.unchanged += 1;
                } else {
                    hc.updated += 1;
                    next.import_id = import_id.to_string();
                    next.updated_at = at.to_string();
                    if write {
                        history::update_visit(tx, &next)?;
                    }
                }
            }
            None => {
                hc.new += 1;
                if write {
                    history::insert_visit(
                        tx,
                        &Visit {
                            id: new_id(),
                            vehicle_id: vid,
                            visit_date: v.visit_date.clone(),
                            mileage_km: v.mileage_km,
                            ro_no: v.ro_no.clone(),
                            operations: v.operations.clone(),
                            parts: v.parts.clone(),
                            part_keys: v.part_keys.clone(),
                            amount_fen: v.amount_fen,
                            source: "dms".into(),
                            import_id: import_id.to_string(),
                            created_at: at.to_string(),
                            updated_at: at.to_string(),
                        },
                    )?;
                }
            }
        }
    }
    Ok([cc, vc, hc])
}

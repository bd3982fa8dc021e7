//! Cars' earlier workshop visits (`service_history`, from the DMS import), the import runs, and the
//! reads the import's upserts need (live customers and registered vehicles).
//!
//! Invariants: a visit is unique per (vehicle, day, repair order); list columns are JSON arrays of
//! text and are never reset silently when they do not parse (`Corrupt`). Nothing here writes to
//! the outbox: this is the store's own record of its customers' cars.

use rusqlite::{params, Row};
use serde::Serialize;

use super::{StoreError, Tx};
use crate::domain::{Customer, Vehicle};

/// One earlier visit of a car.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Visit {
    pub id: String,
    pub vehicle_id: String,
    pub visit_date: String,
    pub mileage_km: Option<i64>,
    pub ro_no: String,
    pub operations: Vec<String>,
    pub parts: Vec<String>,
    pub part_keys: Vec<String>,
    pub amount_fen: Option<i64>,
    pub source: String,
    pub import_id: String,
    pub created_at: String,
    pub updated_at: String,
}

const VISIT_COLS: &str =
    "id, vehicle_id, visit_date, mileage_km, ro_no, operations, parts, part_keys, amount_fen, source, import_id, created_at, updated_at";

fn list(r: &Row, i: usize) -> rusqlite::Result<Vec<String>> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

fn row_visit(r: &Row) -> rusqlite::Result<Visit> {
    Ok(Visit {
        id: r.get(0)?,
        vehicle_id: r.get(1)?,
        visit_date: r.get(2)?,
        mileage_km: r.get(3)?,
        ro_no: r.get(4)?,
        operations: list(r, 5)?,
        parts: list(r, 6)?,
        part_keys: list(r, 7)?,
        amount_fen: r.get(8)?,
        source: r.get(9)?,
        import_id: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

/// A JSON column that does not parse is an operator's problem, not an empty list.
fn corrupt(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, inner) => StoreError::Corrupt(format!("a service_history list: {inner}")),
        e => StoreError::from(e),
    }
}

fn json(v: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Encode(e.to_string()))
}

pub fn insert_visit(tx: &Tx, v: &Visit) -> Result<(), StoreError> {
    tx.conn()
        .prepare_cached(&format!(
            "INSERT INTO service_history ({VISIT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ))?
        .execute(params![
            v.id,
            v.vehicle_id,
            v.visit_date,
            v.mileage_km,
            v.ro_no,
            json(&v.operations)?,
            json(&v.parts)?,
            json(&v.part_keys)?,
            v.amount_fen,
            v.source,
            v.import_id,
            v.created_at,
            v.updated_at
        ])?;
    Ok(())
}

/// Rewrite a visit's content (its key and creation stay).
pub fn update_visit(tx: &Tx, v: &Visit) -> Result<(), StoreError> {
    let n = tx
        .conn()
        .prepare_cached(
            "UPDATE service_history SET mileage_km = ?2, operations = ?3, parts = ?4, part_keys = ?5, amount_fen = ?6,
                    import_id = ?7, updated_at = ?8 WHERE id = ?1",
        )?
        .execute(params![
            v.id,
            v.mileage_km,
            json(&v.operations)?,
            json(&v.parts)?,
            json(&v.part_keys)?,
            v.amount_fen,
            v.import_id,
            v.updated_at
        ])?;
    if n == 0 {
        return Err(StoreError::NotFound("service visit"));
    }
    Ok(())
}

/// Every stored visit (the import compares the file against them).
pub fn all_visits(tx: &Tx) -> Result<Vec<Visit>, StoreError> {
    let mut st = tx.conn().prepare(&format!("SELECT {VISIT_COLS} FROM service_history"))?;
    let v = st.query_map([], row_visit)?.collect::<Result<_, _>>().map_err(corrupt)?;
    Ok(v)
}

/// A car's visits, newest first.
pub fn of_vehicle(tx: &Tx, vehicle_id: &str, limit: u32) -> Result<Vec<Visit>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!(
        "SELECT {VISIT_COLS} FROM service_history WHERE vehicle_id = ?1 ORDER BY visit_date DESC, ro_no DESC LIMIT ?2"
    ))?;
    let v = st.query_map(params![vehicle_id, limit], row_visit)?.collect::<Result<_, _>>().map_err(corrupt)?;
    Ok(v)
}

/// A car's visits that touched one of `parts` (`Part` ids), newest first.
pub fn previous_repairs(tx: &Tx, vehicle_id: &str, parts: &[&str]) -> Result<Vec<Visit>, StoreError> {
    Ok(of_vehicle(tx, vehicle_id, u32::MAX)?.into_iter().filter(|v| v.part_keys.iter().any(|k| parts.contains(&k.as_str()))).collect())
}

/// The parts a case's findings name (not rejected ones) and its car, for the same-part mark.
pub fn case_parts(tx: &Tx, case_id: &str) -> Result<(Option<String>, Vec<String>), StoreError> {
    let vehicle: Option<String> = tx
        .conn()
        .query_row("SELECT vehicle_id FROM cases WHERE id = ?1", [case_id], |r| r.get(0))
        .map_err(|e| if matches!(e, rusqlite::Error::QueryReturnedNoRows) { StoreError::NotFound("case") } else { e.into() })?;
    let mut st = tx.conn().prepare_cached("SELECT DISTINCT part FROM findings WHERE case_id = ?1 AND review_status != 'rejected'")?;
    let parts = st.query_map([case_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok((vehicle, parts))
}

/// Customers that are not erased and have a phone: the import's keys.
pub fn live_customers_with_phone(tx: &Tx) -> Result<Vec<Customer>, StoreError> {
    let mut st = tx.conn().prepare(
        "SELECT id, name, phone, email, preferred_language, created_at, updated_at FROM customers
          WHERE erased_at IS NULL AND phone IS NOT NULL ORDER BY created_at, id",
    )?;
    let v = st
        .query_map([], |r| {
            Ok(Customer {
                id: r.get(0)?,
                name: r.get(1)?,
                phone: r.get(2)?,
                email: r.get(3)?,
                preferred_language: r.get(4)?,
                created_at: r.get(5)?,
                updated_at: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

/// Vehicles with a VIN.
pub fn vehicles_with_vin(tx: &Tx) -> Result<Vec<Vehicle>, StoreError> {
    let mut st = tx.conn().prepare(&format!("SELECT {} FROM vehicles WHERE vin IS NOT NULL", super::people::VEHICLE_COLS))?;
    let v = st.query_map([], super::people::row_vehicle)?.collect::<Result<_, _>>()?;
    Ok(v)
}

/// Rewrite a vehicle's owner and descriptive fields (the VIN is its key and stays).
pub fn update_vehicle(tx: &Tx, v: &Vehicle) -> Result<(), StoreError> {
    let n = tx
        .conn()
        .prepare_cached(
            "UPDATE vehicles SET customer_id = ?2, plate = ?3, make = ?4, model = ?5, year = ?6, mileage_km = ?7, updated_at = ?8
              WHERE id = ?1",
        )?
        .execute(params![v.id, v.customer_id, v.plate, v.make, v.model, v.year, v.mileage_km, v.updated_at])?;
    if n == 0 {
        return Err(StoreError::NotFound("vehicle"));
    }
    Ok(())
}

/// One import's record (`counts` is JSON of numbers only).
pub struct ImportRun<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub file_name: &'a str,
    pub file_sha256: &'a str,
    pub mapping: &'a str,
    pub dry_run: bool,
    pub counts: &'a str,
    pub actor: &'a str,
    pub at: &'a str,
}

pub fn insert_run(tx: &Tx, r: &ImportRun) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO import_runs (id, kind, file_name, file_sha256, mapping, dry_run, counts, actor, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![r.id, r.kind, r.file_name, r.file_sha256, r.mapping, r.dry_run, r.counts, r.actor, r.at],
    )?;
    Ok(())
}

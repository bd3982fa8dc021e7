//! Customers and their vehicles: the personal data the audit log watches.

use rusqlite::{params, OptionalExtension, Row};

use super::{StoreError, Tx};
use crate::domain::{Customer, Vehicle};

const CUSTOMER_COLS: &str = "id, name, phone, email, preferred_language, created_at, updated_at";
pub(super) const VEHICLE_COLS: &str = "id, customer_id, vin, plate, make, model, year, mileage_km, created_at, updated_at";

fn row_customer(r: &Row) -> rusqlite::Result<Customer> {
    Ok(Customer {
        id: r.get(0)?,
        name: r.get(1)?,
        phone: r.get(2)?,
        email: r.get(3)?,
        preferred_language: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

pub(super) fn row_vehicle(r: &Row) -> rusqlite::Result<Vehicle> {
    Ok(Vehicle {
        id: r.get(0)?,
        customer_id: r.get(1)?,
        vin: r.get(2)?,
        plate: r.get(3)?,
        make: r.get(4)?,
        model: r.get(5)?,
        year: r.get(6)?,
        mileage_km: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

pub fn insert_customer(tx: &Tx, c: &Customer) -> Result<(), StoreError> {
    tx.conn().execute(
        &format!("INSERT INTO customers ({CUSTOMER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![c.id, c.name, c.phone, c.email, c.preferred_language, c.created_at, c.updated_at],
    )?;
    Ok(())
}

pub fn update_customer(tx: &Tx, c: &Customer) -> Result<(), StoreError> {
    let n = tx.conn().execute(
        "UPDATE customers SET name = ?2, phone = ?3, email = ?4, preferred_language = ?5, updated_at = ?6 WHERE id = ?1",
        params![c.id, c.name, c.phone, c.email, c.preferred_language, c.updated_at],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound("customer"));
    }
    Ok(())
}

pub fn customer(tx: &Tx, id: &str) -> Result<Option<Customer>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {CUSTOMER_COLS} FROM customers WHERE id = ?1"), [id], row_customer).optional()?)
}

pub fn customer_exists(tx: &Tx, id: &str) -> Result<bool, StoreError> {
    Ok(tx.conn().query_row("SELECT EXISTS(SELECT 1 FROM customers WHERE id = ?1)", [id], |r| r.get(0))?)
}

/// Search by name or phone fragment; newest first, keyset pagination by id.
pub fn list_customers(tx: &Tx, q: Option<&str>, before: Option<&str>, limit: u32) -> Result<Vec<Customer>, StoreError> {
    let like = q.map(|q| format!("%{}%", q.replace('%', "\\%").replace('_', "\\_")));
    let mut st = tx.conn().prepare(&format!(
        "SELECT {CUSTOMER_COLS} FROM customers
         WHERE (?1 IS NULL OR name LIKE ?1 ESCAPE '\\' OR phone LIKE ?1 ESCAPE '\\'
                OR id IN (SELECT customer_id FROM vehicles WHERE plate LIKE ?1 ESCAPE '\\' OR vin LIKE ?1 ESCAPE '\\'))
           AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let v = st.query_map(params![like, before, limit], row_customer)?.collect::<Result<_, _>>()?;
    Ok(v)
}

pub fn insert_vehicle(tx: &Tx, v: &Vehicle) -> Result<(), StoreError> {
    if let Some(vin) = &v.vin {
        let taken: bool = tx.conn().query_row("SELECT EXISTS(SELECT 1 FROM vehicles WHERE vin = ?1)", [vin], |r| r.get(0))?;
        if taken {
            return Err(StoreError::Conflict(format!("a vehicle with VIN {vin} is already registered")));
        }
    }
    tx.conn().execute(
        &format!("INSERT INTO vehicles ({VEHICLE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![v.id, v.customer_id, v.vin, v.plate, v.make, v.model, v.year, v.mileage_km, v.created_at, v.updated_at],
    )?;
    Ok(())
}

pub fn vehicle(tx: &Tx, id: &str) -> Result<Option<Vehicle>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {VEHICLE_COLS} FROM vehicles WHERE id = ?1"), [id], row_vehicle).optional()?)
}

pub fn vehicles_of(tx: &Tx, customer_id: &str) -> Result<Vec<Vehicle>, StoreError> {
    let mut st = tx.conn().prepare(&format!("SELECT {VEHICLE_COLS} FROM vehicles WHERE customer_id = ?1 ORDER BY id"))?;
    let v = st.query_map([customer_id], row_vehicle)?.collect::<Result<_, _>>()?;
    Ok(v)
}

//! A read table → checked customers, vehicles and visits. Pure: no store, no clock (today is given).
//!
//! Rules:
//! - Every row is checked field by field; all bad cells are reported, each with its line.
//! - A customer is keyed by phone, a vehicle by VIN, a visit by (VIN, day, repair order). Where rows
//!   disagree, the latest visit (then the later line) wins, field by field, and an empty cell
//!   never replaces a value: the vehicle's owner is the one of its latest row (a car sold on).
//! - Rows of one repair order fold into one visit: operations and parts in file order without
//!   repeats, the highest mileage, the line amounts summed.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use super::fields::{self, MAX_MAKE, MAX_NAME, MAX_RO};
use super::{RowError, FIELDS, MAX_ERRORS, REQUIRED};
use crate::domain::vocab::Part;
use crate::import::table::{Columns, Mapping, Row, Table, TableError};

#[derive(Debug, Clone, PartialEq)]
pub struct CustomerIn {
    pub phone: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct VehicleIn {
    pub vin: String,
    /// The owner's phone (a key of `Parsed::customers`).
    pub phone: String,
    pub plate: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub year: Option<i32>,
    pub mileage_km: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisitIn {
    pub vin: String,
    pub visit_date: String,
    pub ro_no: String,
    pub mileage_km: Option<i64>,
    pub operations: Vec<String>,
    pub parts: Vec<String>,
    /// `Part` ids named by the operations and parts.
    pub part_keys: Vec<String>,
    pub amount_fen: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub rows: usize,
    pub customers: Vec<CustomerIn>,
    pub vehicles: Vec<VehicleIn>,
    pub visits: Vec<VisitIn>,
    /// The first `MAX_ERRORS` refused cells, in line order; `errors_total` counts all.
    pub errors: Vec<RowError>,
    pub errors_total: usize,
}

/// One checked row.
#[derive(Debug, Default)]
struct Line {
    line: usize,
    name: String,
    phone: String,
    vin: String,
    plate: Option<String>,
    make: Option<String>,
    model: Option<String>,
    year: Option<i32>,
    mileage_km: Option<i64>,
    visit_date: Option<String>,
    ro_no: String,
    operations: Vec<String>,
    parts: Vec<String>,
    amount_fen: Option<i64>,
}

/// Check every row of `table` read through `mapping`. A missing required column is an error of the
/// whole file; bad cells are collected in `Parsed::errors` (then nothing else is returned).
pub fn parse(table: &Table, mapping: &Mapping, today: NaiveDate) -> Result<Parsed, TableError> {
    let cols = mapping.resolve(&table.headers, FIELDS, REQUIRED)?;
    let mut out = Parsed { rows: table.rows.len(), ..Parsed::default() };
    let mut lines = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        match check_row(&cols, row, today) {
            Ok(l) => lines.push(l),
            Err(errs) => {
                out.errors_total += errs.len();
                let room = MAX_ERRORS.saturating_sub(out.errors.len());
                out.errors.extend(errs.into_iter().take(room));
            }
        }
    }
    if out.errors_total > 0 {
        return Ok(out);
    }
    fold(lines, &mut out);
    Ok(out)
}

fn check_row(cols: &Columns, row: &Row, today: NaiveDate) -> Result<Line, Vec<RowError>> {
    let mut errs = Vec::new();
    let mut l = Line { line: row.line, ..Line::default() };
    // Each field: its cell (absent column or empty cell = None) through its check.
    macro_rules! cell {
        ($field:literal, $check:expr) => {
            match cols.get(row, $field) {
                None => None,
                Some(v) => match $check(v) {
                    Ok(x) => Some(x),
                    Err(message) => {
                        errs.push(RowError { line: row.line, field: $field.into(), message: format!("'{}' {message}", shown(v)) });
                        None
                    }
                },
            }
        };
    }
    let required = |field: &str, v: Option<String>, errs: &mut Vec<RowError>| {
        if v.is_none() && cols.get(row, field).is_none() {
            errs.push(RowError { line: row.line, field: field.into(), message: "is empty; every row needs it".into() });
        }
        v.unwrap_or_default()
    };
    let name = cell!("name", |v| fields::text(v, MAX_NAME));
    l.name = required("name", name, &mut errs);
    let phone = cell!("phone", fields::phone);
    l.phone = required("phone", phone, &mut errs);
    let vin = cell!("vin", fields::vin);
    l.vin = required("vin", vin, &mut errs);
    l.plate = cell!("plate", fields::plate).filter(|p: &String| !p.is_empty());
    l.make = cell!("make", |v| fields::text(v, MAX_MAKE));
    l.model = cell!("model", |v| fields::text(v, MAX_MAKE));
    l.year = cell!("year", fields::year);
    l.mileage_km = cell!("mileage_km", fields::mileage);
    l.visit_date = cell!("visit_date", |v| fields::date(v, today));
    l.ro_no = cell!("ro_no", |v| fields::text(v, MAX_RO)).unwrap_or_default();
    l.operations = cell!("operations", fields::list).unwrap_or_default();
    l.parts = cell!("parts", fields::list).unwrap_or_default();
    l.amount_fen = cell!("amount", fields::amount_fen);
    if l.visit_date.is_none() && cols.get(row, "visit_date").is_none() && (!l.ro_no.is_empty() || !l.operations.is_empty()) {
        errs.push(RowError { line: row.line, field: "visit_date".into(), message: "is empty, but the row has a repair order".into() });
    }
    if errs.is_empty() {
        Ok(l)
    } else {
        Err(errs)
    }
}

/// A cell as the report quotes it: at most 40 characters, control characters escaped.
fn shown(v: &str) -> String {
    let mut s: String =
        v.chars().take(40).flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect();
    if v.chars().count() > 40 {
        s.push('…');
    }
    s
}

fn fold(mut lines: Vec<Line>, out: &mut Parsed) {
    // Oldest first, so later rows overwrite: "" sorts before any date (rows without a visit).
    lines.sort_by(|a, b| (a.visit_date.as_deref().unwrap_or(""), a.line).cmp(&(b.visit_date.as_deref().unwrap_or(""), b.line)));
    let mut customers: BTreeMap<String, CustomerIn> = BTreeMap::new();
    let mut vehicles: BTreeMap<String, VehicleIn> = BTreeMap::new();
    let mut visits: BTreeMap<(String, String, String), VisitIn> = BTreeMap::new();
    let mut parts_cache: HashMap<String, Vec<Part>> = HashMap::new();
    // Lines in file order inside a visit: the sort above keeps that (stable on `line`).
    for l in lines {
        customers.insert(l.phone.clone(), CustomerIn { phone: l.phone.clone(), name: l.name.clone() });
        let v = vehicles.entry(l.vin.clone()).or_insert_with(|| VehicleIn { vin: l.vin.clone(), ..VehicleIn::default() });
        v.phone = l.phone.clone();
        for (slot, new) in [(&mut v.plate, &l.plate), (&mut v.make, &l.make), (&mut v.model, &l.model)] {
            if new.is_some() {
                slot.clone_from(new);
            }
        }
        v.year = l.year.or(v.year);
        v.mileage_km = v.mileage_km.max(l.mileage_km);
        let Some(day) = l.visit_date else { continue };
        let visit = visits.entry((l.vin.clone(), day.clone(), l.ro_no.clone())).or_insert_with(|| VisitIn {
            vin: l.vin.clone(),
            visit_date: day,
            ro_no: l.ro_no.clone(),
            mileage_km: None,
            operations: vec![],
            parts: vec![],
            part_keys: vec![],
            amount_fen: None,
        });
        visit.mileage_km = visit.mileage_km.max(l.mileage_km);
        if let Some(a) = l.amount_fen {
            visit.amount_fen = Some(visit.amount_fen.unwrap_or(0).saturating_add(a));
        }
        for (list, new) in [(&mut visit.operations, l.operations), (&mut visit.parts, l.parts)] {
            for item in new {
                for p in parts_cache.entry(item.clone()).or_insert_with(|| crate::intake::lexicon::parts_named(&item)).iter() {
                    if !visit.part_keys.iter().any(|k| k == p.id()) {
                        visit.part_keys.push(p.id().to_string());
                    }
                }
                if !list.contains(&item) {
                    list.push(item);
                }
            }
        }
    }
    out.customers = customers.into_values().collect();
    out.vehicles = vehicles.into_values().collect();
    out.visits = visits.into_values().collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::table;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 6).unwrap()
    }

    fn generic() -> Mapping {
        crate::import::dms::mapping("generic_zh").unwrap().1
    }

    const HEAD: &str = "客户姓名,手机号,车牌号,VIN,品牌,车型,年款,行驶里程,进厂日期,工单号,维修项目,配件名称,金额\n";

    #[test]
    fn rows_of_one_repair_order_fold_into_one_visit() {
        let csv = format!(
            "{HEAD}王五,138 1234 5678,粤B·12345,lsvaa4182e2123456,大众,朗逸,2019,\"12,345\",2024/3/5,RO1,右前门钣金喷漆,右前门外板,800\n\
             王五,13812345678,粤B12345,LSVAA4182E2123456,大众,朗逸,2019,12345km,2024-03-05,RO1,更换机油；四轮定位,机油滤清器,200.5\n\
             王五,13812345678,,LSVAA4182E2123456,,,,,2023年9月1日,RO0,前保险杠喷漆,,\n\
             赵六,13900001111,,LSVBB4182E2123457,,,,,,,,,\n"
        );
        let t = table::read("a.csv", csv.as_bytes()).unwrap();
        let p = parse(&t, &generic(), today()).unwrap();
        assert_eq!((p.rows, p.errors_total), (4, 0), "{:?}", p.errors);
        assert_eq!(p.customers.iter().map(|c| c.phone.as_str()).collect::<Vec<_>>(), ["13812345678", "13900001111"]);
        assert_eq!(p.vehicles.len(), 2);
        let v = &p.vehicles[0];
        assert_eq!(
            (v.plate.as_deref(), v.make.as_deref(), v.year, v.mileage_km),
            (Some("粤B12345"), Some("大众"), Some(2019), Some(12345)),
            "empty cells of the older row erase nothing"
        );
        assert_eq!(p.visits.len(), 2, "one visit per repair order; the row without a date adds none");
        let ro1 = p.visits.iter().find(|x| x.ro_no == "RO1").unwrap();
        assert_eq!(ro1.operations, ["右前门钣金喷漆", "更换机油", "四轮定位"]);
        assert_eq!(ro1.parts, ["右前门外板", "机油滤清器"]);
        assert_eq!(ro1.part_keys, ["door", "engine"]);
        assert_eq!((ro1.amount_fen, ro1.mileage_km, ro1.visit_date.as_str()), (Some(100_050), Some(12345), "2024-03-05"));
        let ro0 = p.visits.iter().find(|x| x.ro_no == "RO0").unwrap();
        assert_eq!((ro0.visit_date.as_str(), ro0.part_keys.clone()), ("2023-09-01", vec!["bumper".to_string()]));
    }

    #[test]
    fn bad_rows_are_named_by_line_and_field_and_nothing_is_returned() {
        let csv = format!(
            "{HEAD}王五,13812345678,,LSVAA4182E2123456,,,,,2024-03-05,RO1,喷漆,,\n\
             \n\
             李四,12345,,LSVAA4182E212345,,,,abc,2024-02-30,RO2,喷漆,,\n\
             ,13812345678,,LSVAA4182E2123456,,,,,,,,,\n\
             钱\u{1b}七,13812345679,,LSVAA4182E2123458,,,,,,RO3,喷漆,,\n"
        );
        let t = table::read("a.csv", csv.as_bytes()).unwrap();
        let p = parse(&t, &generic(), today()).unwrap();
        let got: Vec<(usize, &str)> = p.errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            got,
            [(4, "phone"), (4, "vin"), (4, "mileage_km"), (4, "visit_date"), (5, "name"), (6, "name"), (6, "visit_date")],
            "{:#?}",
            p.errors
        );
        assert!(p.errors[1].message.contains("16 characters"), "{}", p.errors[1].message);
        assert!(p.errors[5].message.contains("U+001B") && p.errors[5].message.contains("\\u{1b}"), "{}", p.errors[5].message);
        assert_eq!(p.errors_total, 7);
        assert!(p.customers.is_empty() && p.vehicles.is_empty() && p.visits.is_empty());
    }

    #[test]
    fn the_error_list_is_capped_but_counted() {
        let mut csv = HEAD.to_string();
        for _ in 0..300 {
            csv.push_str("王五,1,,LSVAA4182E2123456,,,,,,,,,\n");
        }
        let p = parse(&table::read("a.csv", csv.as_bytes()).unwrap(), &generic(), today()).unwrap();
        assert_eq!((p.errors.len(), p.errors_total), (MAX_ERRORS, 300));
    }

    #[test]
    fn a_missing_required_column_refuses_the_file() {
        let t = table::read("a.csv", "客户姓名,手机号\n王五,13812345678\n".as_bytes()).unwrap();
        assert!(matches!(parse(&t, &generic(), today()), Err(TableError::MissingColumn { field, .. }) if field == "vin"));
    }

    #[test]
    fn a_car_sold_on_belongs_to_its_latest_owner() {
        let csv = format!(
            "{HEAD}新车主,13900002222,,LSVAA4182E2123456,,,,,2025-06-01,R2,保养,,\n\
             老车主,13812345678,,LSVAA4182E2123456,,,,,2022-01-01,R1,保养,,\n"
        );
        let p = parse(&table::read("a.csv", csv.as_bytes()).unwrap(), &generic(), today()).unwrap();
        assert_eq!(p.vehicles[0].phone, "13900002222");
        assert_eq!(p.customers.len(), 2);
    }
}

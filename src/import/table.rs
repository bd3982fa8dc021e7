//! A spreadsheet or CSV file as a header row and text rows, each row with the line number a person
//! sees in the file (the header is line 1), and the mapping of our field names to its columns.
//!
//! Invariants: cells are trimmed text, never typed guesses (the importers parse what each field
//! means); spreadsheet dates become `YYYY-MM-DD` and whole numbers lose Excel's `.0`; a CSV in GBK
//! (what most Chinese DMS exports write) is decoded when it is not UTF-8; a file over the row or
//! byte limit is refused before anything is parsed past the limit.

use std::collections::BTreeMap;
use std::io::Cursor;

use calamine::{Data, Reader};
use serde::Deserialize;

/// Files bigger than this are refused (a DMS export of 200,000 service lines is about 40 MB).
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// Rows after the header.
pub const MAX_ROWS: usize = 500_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TableError {
    #[error("the file is empty or has no header row")]
    Empty,
    #[error("the file is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("the file has more than {MAX_ROWS} rows")]
    TooManyRows,
    #[error("'{0}' is not a CSV, XLSX, XLS or ODS file (by its name)")]
    Format(String),
    #[error("the spreadsheet cannot be read: {0}")]
    Spreadsheet(String),
    #[error("line {line}: {message}")]
    Csv { line: usize, message: String },
    #[error("the file is neither UTF-8 nor GBK text")]
    Encoding,
    #[error("column '{0}' appears twice in the header")]
    DuplicateHeader(String),
    #[error("no column for {field} (looked for: {names})")]
    MissingColumn { field: String, names: String },
    #[error("the mapping names an unknown field '{0}'")]
    UnknownField(String),
    #[error("the mapping file does not parse: {0}")]
    Mapping(String),
}

/// One data row: its line in the file and its cells, in header order (short rows padded).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: usize,
    pub cells: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Row>,
}

/// Read `bytes`, choosing the parser from the file name's extension.
pub fn read(file_name: &str, bytes: &[u8]) -> Result<Table, TableError> {
    if bytes.len() > MAX_BYTES {
        return Err(TableError::TooLarge);
    }
    let ext = file_name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "csv" | "txt" => read_csv(bytes),
        "xlsx" | "xlsm" | "xls" | "xlsb" | "ods" => read_sheet(bytes),
        _ => Err(TableError::Format(file_name.to_string())),
    }
}

fn decode(bytes: &[u8]) -> Result<String, TableError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok(s.to_string());
    }
    let (text, _, bad) = encoding_rs::GBK.decode(bytes);
    if bad {
        return Err(TableError::Encoding);
    }
    Ok(text.into_owned())
}

fn read_csv(bytes: &[u8]) -> Result<Table, TableError> {
    let text = decode(bytes)?;
    let mut r = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut records = r.records();
    let headers = match records.next() {
        Some(Ok(h)) => h.iter().map(|c| c.trim().to_string()).collect::<Vec<_>>(),
        Some(Err(e)) => return Err(TableError::Csv { line: 1, message: e.to_string() }),
        None => return Err(TableError::Empty),
    };
    let mut rows = Vec::new();
    // The csv crate's own line count skips blank lines, and a record's byte position may sit on
    // the line break before it (CR LF, blank lines): count the file's newlines up to the record's
    // first character instead (incrementally: records come in order).
    let (mut seen, mut newlines) = (0usize, 0usize);
    let mut line_at = |byte: usize| {
        let all = text.as_bytes();
        let mut byte = byte.min(all.len()).max(seen);
        while byte < all.len() && matches!(all[byte], b'\r' | b'\n') {
            byte += 1;
        }
        newlines += all[seen..byte].iter().filter(|b| **b == b'\n').count();
        seen = byte;
        newlines + 1
    };
    for rec in records {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| line_at(p.byte() as usize));
                return Err(TableError::Csv { line, message: e.to_string() });
            }
        };
        let line = rec.position().map_or(0, |p| line_at(p.byte() as usize));
        push_row(&mut rows, line, rec.iter().map(|c| c.trim().to_string()).collect(), headers.len())?;
    }
    finish(headers, rows)
}

fn read_sheet(bytes: &[u8]) -> Result<Table, TableError> {
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|e| TableError::Spreadsheet(e.to_string()))?;
    let range = match book.worksheet_range_at(0) {
        Some(r) => r.map_err(|e| TableError::Spreadsheet(e.to_string()))?,
        None => return Err(TableError::Empty),
    };
    // A sheet's used range may start below row 1 (a title row left empty): lines count from the top.
    let first = range.start().map_or(0, |(r, _)| r as usize);
    let mut it = range.rows();
    let Some(h) = it.next() else { return Err(TableError::Empty) };
    let headers: Vec<String> = h.iter().map(cell_text).collect();
    let mut rows = Vec::new();
    for (i, r) in it.enumerate() {
        push_row(&mut rows, first + i + 2, r.iter().map(cell_text).collect(), headers.len())?;
    }
    finish(headers, rows)
}

fn push_row(rows: &mut Vec<Row>, line: usize, mut cells: Vec<String>, width: usize) -> Result<(), TableError> {
    if cells.iter().all(|c| c.is_empty()) {
        return Ok(()); // blank lines between blocks are common in exports
    }
    if rows.len() == MAX_ROWS {
        return Err(TableError::TooManyRows);
    }
    cells.resize(width.max(cells.len()), String::new());
    rows.push(Row { line, cells });
    Ok(())
}

fn finish(headers: Vec<String>, rows: Vec<Row>) -> Result<Table, TableError> {
    if headers.iter().all(|h| h.is_empty()) {
        return Err(TableError::Empty);
    }
    for (i, h) in headers.iter().enumerate() {
        if !h.is_empty() && headers[..i].contains(h) {
            return Err(TableError::DuplicateHeader(h.clone()));
        }
    }
    Ok(Table { headers, rows })
}

fn cell_text(c: &Data) -> String {
    match c {
        Data::Empty => String::new(),
        Data::String(s) => s.trim().to_string(),
        Data::Int(i) => i.to_string(),
        // Phone numbers and mileages typed into Excel arrive as floats: 13812345678.0.
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => match d.as_datetime() {
            Some(dt) if dt.time() == chrono::NaiveTime::MIN => dt.date().format("%Y-%m-%d").to_string(),
            Some(dt) => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
            None => d.as_f64().to_string(),
        },
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

/// A mapping file: for each of our field names, the column names it may have in an export, tried
/// in order (`phone = ["手机号", "联系电话", "Mobile"]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// What the mapping is for, shown to the manager ("某 DMS 客户车辆维修记录导出").
    #[serde(default)]
    pub description: String,
    pub columns: BTreeMap<String, Vec<String>>,
}

impl Mapping {
    pub fn parse(text: &str) -> Result<Mapping, TableError> {
        toml::from_str(text).map_err(|e| TableError::Mapping(e.to_string()))
    }

    /// Column index of each field found in `headers`. `known` lists every field the importer reads,
    /// `required` those a row cannot do without. Header names compare trimmed and case-insensitive.
    pub fn resolve(&self, headers: &[String], known: &[&str], required: &[&str]) -> Result<Columns, TableError> {
        if let Some(f) = self.columns.keys().find(|f| !known.contains(&f.as_str())) {
            return Err(TableError::UnknownField(f.clone()));
        }
        let norm = |s: &str| s.trim().to_lowercase();
        let mut at = BTreeMap::new();
        for (field, names) in &self.columns {
            if let Some(i) = names.iter().find_map(|n| headers.iter().position(|h| norm(h) == norm(n))) {
                at.insert(field.clone(), i);
            }
        }
        for f in required {
            if !at.contains_key(*f) {
                let names = self.columns.get(*f).map(|n| n.join(", ")).unwrap_or_else(|| "(not in the mapping)".into());
                return Err(TableError::MissingColumn { field: f.to_string(), names });
            }
        }
        Ok(Columns { at })
    }
}

/// Where each mapped field sits in a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    at: BTreeMap<String, usize>,
}

impl Columns {
    /// The field's cell, `None` when the column is absent or the cell empty.
    pub fn get<'r>(&self, row: &'r Row, field: &str) -> Option<&'r str> {
        self.at.get(field).and_then(|&i| row.cells.get(i)).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub fn has(&self, field: &str) -> bool {
        self.at.contains_key(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_in_gbk_with_line_numbers_and_blank_lines() {
        let text = "客户姓名,手机号\r\n张三,13812345678\r\n\r\n李四,13900001111\r\n";
        let (gbk, _, _) = encoding_rs::GBK.encode(text);
        let t = read("export.CSV", &gbk).unwrap();
        assert_eq!(t.headers, ["客户姓名", "手机号"]);
        assert_eq!(t.rows.iter().map(|r| (r.line, r.cells[0].as_str())).collect::<Vec<_>>(), [(2, "张三"), (4, "李四")]);
    }

    #[test]
    fn quoted_newlines_keep_the_line_of_the_row_start() {
        let t = read("a.csv", "a,b\n1,\"x\ny\"\n2,z\n".as_bytes()).unwrap();
        assert_eq!(t.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(t.rows[0].cells[1], "x\ny");
    }

    #[test]
    fn xlsx_with_chinese_headers_dates_and_numbers() {
        use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        ws.write_string(0, 0, "客户姓名").unwrap();
        ws.write_string(0, 1, "手机号").unwrap();
        ws.write_string(0, 2, "进厂日期").unwrap();
        ws.write_string(1, 0, " 王五 ").unwrap();
        ws.write_number(1, 1, 13812345678.0).unwrap();
        let day = ExcelDateTime::from_ymd(2024, 3, 5).unwrap();
        ws.write_datetime_with_format(1, 2, &day, &Format::new().set_num_format("yyyy-mm-dd")).unwrap();
        let t = read("dms.xlsx", &wb.save_to_buffer().unwrap()).unwrap();
        assert_eq!(t.headers, ["客户姓名", "手机号", "进厂日期"]);
        assert_eq!(t.rows, [Row { line: 2, cells: vec!["王五".into(), "13812345678".into(), "2024-03-05".into()] }]);
    }

    #[test]
    fn refusals() {
        assert_eq!(read("a.pdf", b"x"), Err(TableError::Format("a.pdf".into())));
        assert_eq!(read("a.csv", b""), Err(TableError::Empty));
        assert_eq!(read("a.csv", b"a,a\n1,2\n"), Err(TableError::DuplicateHeader("a".into())));
        assert_eq!(read("a.csv", &[0x61, 0x0a, 0xff, 0xff, 0xff]), Err(TableError::Encoding));
        assert!(matches!(read("a.xlsx", b"not a zip"), Err(TableError::Spreadsheet(_))));
    }

    #[test]
    fn a_mapping_finds_columns_by_any_of_their_names() {
        let m = Mapping::parse("[columns]\nphone = [\"手机号\", \"Mobile\"]\nname = [\"客户姓名\"]\nvin = [\"VIN\"]\n").unwrap();
        let headers = vec!["mobile ".to_string(), "客户姓名".to_string()];
        let c = m.resolve(&headers, &["phone", "name", "vin"], &["phone"]).unwrap();
        let row = Row { line: 2, cells: vec!["138".into(), "".into()] };
        assert_eq!((c.get(&row, "phone"), c.get(&row, "name"), c.get(&row, "vin")), (Some("138"), None, None));
        assert!(matches!(m.resolve(&headers, &["phone", "name", "vin"], &["vin"]), Err(TableError::MissingColumn { .. })));
        assert_eq!(m.resolve(&headers, &["phone"], &[]), Err(TableError::UnknownField("name".into())));
    }
}

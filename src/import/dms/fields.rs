//! One cell of a DMS export → one checked value. Pure functions; each error message says what the
//! cell should look like (the manager fixes the file, not the code).
//!
//! Invariants: phones come out as digits only (mobile 11 digits, landline with its 0-led area
//! code), VINs upper-case, dates `YYYY-MM-DD`, mileage whole km, money in fen. Control characters
//! (other than tab and line feed) are refused in every text.

use chrono::NaiveDate;

/// Longest accepted text per field (characters).
pub const MAX_NAME: usize = 50;
pub const MAX_PLATE: usize = 16;
pub const MAX_MAKE: usize = 40;
pub const MAX_RO: usize = 40;
pub const MAX_LIST_CELL: usize = 500;
pub const MAX_KM: i64 = 5_000_000;

/// A plain text cell: no control characters, at most `max` characters.
pub fn text(value: &str, max: usize) -> Result<String, String> {
    if let Some(c) = crate::domain::validate::forbidden_char(value) {
        return Err(format!("contains the control character U+{:04X}", c as u32));
    }
    let v = value.trim();
    let n = v.chars().count();
    if n > max {
        return Err(format!("is {n} characters long, at most {max} are accepted"));
    }
    Ok(v.to_string())
}

/// A Chinese phone number: a mobile (1[3-9] and 9 digits) or a landline (0, area code, number).
/// Spaces, dashes, brackets and a +86 / 0086 prefix are dropped.
pub fn phone(value: &str) -> Result<String, String> {
    text(value, 30)?;
    let mut s: String = value.chars().filter(|c| !matches!(*c, ' ' | '-' | '(' | ')' | '（' | '）' | '\u{3000}')).collect();
    for prefix in ["+86", "0086"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.to_string();
        }
    }
    if s.len() == 13 && s.starts_with("86") && s.as_bytes().get(2) == Some(&b'1') {
        s = s[2..].to_string();
    }
    let all_digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let b = s.as_bytes();
    let mobile = all_digits && b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]);
    // 0 + 2–3 digit area code + 7–8 digit number (010-12345678, 0755-1234567).
    let landline = all_digits && b.first() == Some(&b'0') && b.get(1) != Some(&b'0') && (10..=12).contains(&b.len());
    if mobile || landline {
        Ok(s)
    } else {
        Err("must be a mobile number (1[3-9] and 9 more digits) or a landline with its area code (0xx-xxxxxxxx)".into())
    }
}

/// A VIN: 17 letters and digits without I, O or Q; lower case is accepted and raised.
pub fn vin(value: &str) -> Result<String, String> {
    text(value, 30)?;
    let v: String = value.trim().to_ascii_uppercase();
    let n = v.chars().count();
    if n != 17 {
        return Err(format!("has {n} characters; a VIN has 17"));
    }
    if let Some(c) = v.chars().find(|c| !c.is_ascii_alphanumeric() || matches!(*c, 'I' | 'O' | 'Q')) {
        return Err(format!("contains '{c}'; a VIN has only letters and digits, never I, O or Q"));
    }
    Ok(v)
}

/// A day: 2024-03-05, 2024/3/5, 2024.3.5, 2024年3月5日, 20240305; a time after it is ignored
/// ("2024-03-05 10:20:00", what spreadsheets give for a date with a time). Not after `today`.
pub fn date(value: &str, today: NaiveDate) -> Result<String, String> {
    text(value, 40)?;
    let v = value.trim();
    // Drop a time part: "2024-03-05 10:20", "2024-03-05T10:20:00".
    let day = v.split([' ', 'T']).next().unwrap_or(v);
    let parsed = if day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit()) {
        NaiveDate::parse_from_str(day, "%Y%m%d").ok()
    } else {
        let norm = day.replace(['年', '月', '/', '.'], "-").trim_end_matches(['日', '号']).to_string();
        let mut it = norm.split('-');
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(y), Some(m), Some(d), None) if y.len() == 4 => match (y.parse(), m.parse(), d.parse()) {
                (Ok(y), Ok(m), Ok(d)) => NaiveDate::from_ymd_opt(y, m, d),
                _ => None,
            },
            _ => None,
        }
    };
    let Some(d) = parsed else {
        return Err("must be a date such as 2024-03-05, 2024/3/5, 2024.3.5, 2024年3月5日 or 20240305".into());
    };
    if d.year_ce().1 < 1980 || d > today {
        return Err(format!("{d} is not a plausible visit date (1980 up to today)"));
    }
    Ok(d.format("%Y-%m-%d").to_string())
}

use chrono::Datelike;

/// Whole kilometres: "12345", "12,345", "12345km", "12345 公里", "12345.0".
pub fn mileage(value: &str) -> Result<i64, String> {
    text(value, 30)?;
    let lower = value.trim().to_lowercase();
    let v = lower.trim_end_matches("公里").trim_end_matches("km").trim().replace([',', '，', ' '], "");
    let v = v.strip_suffix(".0").unwrap_or(&v);
    match v.parse::<i64>() {
        Ok(km) if (0..=MAX_KM).contains(&km) => Ok(km),
        Ok(_) => Err(format!("must be between 0 and {MAX_KM} km")),
        Err(_) => Err("must be a whole number of kilometres (12345, 12,345 or 12345km)".into()),
    }
}

/// A model year: four digits, 1950–2100 ("2019", "2019款", "2019年").
pub fn year(value: &str) -> Result<i32, String> {
    text(value, 10)?;
    let v = value.trim().trim_end_matches(['款', '年']);
    match v.parse::<i32>() {
        Ok(y) if (1950..=2100).contains(&y) => Ok(y),
        _ => Err("must be a year between 1950 and 2100".into()),
    }
}

/// Money in fen: "1234", "1,234.50", "¥1234.5", "1234元".
pub fn amount_fen(value: &str) -> Result<i64, String> {
    text(value, 30)?;
    let v = value.trim().trim_start_matches(['¥', '￥']).trim_end_matches('元').trim().replace([',', '，'], "");
    let bad = || "must be an amount in yuan such as 1234 or 1,234.50".to_string();
    let (whole, frac) = v.split_once('.').unwrap_or((v.as_str(), ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let yuan: i64 = whole.parse().map_err(|_| bad())?;
    let fen: i64 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    yuan.checked_mul(100).and_then(|y| y.checked_add(fen)).filter(|f| *f <= 10_000_000_000).ok_or_else(bad)
}

/// A plate: upper case, spaces and the middle dot dropped ("粤B·12345" → "粤B12345").
pub fn plate(value: &str) -> Result<String, String> {
    let v = text(value, MAX_PLATE + 4)?;
    let v: String = v.chars().filter(|c| !matches!(*c, ' ' | '·' | '•' | '-')).collect::<String>().to_uppercase();
    if v.chars().count() > MAX_PLATE {
        return Err(format!("at most {MAX_PLATE} characters"));
    }
    Ok(v)
}

/// A list cell (operations, parts): items separated by ；;、，, or new lines, each trimmed.
pub fn list(value: &str) -> Result<Vec<String>, String> {
    let v = text(value, MAX_LIST_CELL)?;
    Ok(v.split(['；', ';', '、', '，', ',', '\n', '|']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 6).unwrap()
    }

    #[test]
    fn phones() {
        for (input, out) in [
            ("13812345678", "13812345678"),
            ("138 1234 5678", "13812345678"),
            ("138-1234-5678", "13812345678"),
            ("+86 138 1234 5678", "13812345678"),
            ("008613812345678", "13812345678"),
            ("8613812345678", "13812345678"),
            ("010-12345678", "01012345678"),
            ("(0755) 1234567", "07551234567"),
        ] {
            assert_eq!(phone(input).as_deref(), Ok(out), "{input}");
        }
        for bad in ["12812345678", "1381234567", "138123456789", "1381234567a", "00012345678", "", "13812345678\u{7}"] {
            assert!(phone(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vins() {
        assert_eq!(vin(" lsvaa4182e2123456 ").as_deref(), Ok("LSVAA4182E2123456"));
        assert!(vin("LSVAA4182E212345").unwrap_err().contains("16 characters"));
        assert!(vin("LSVAA4182E212345O").unwrap_err().contains("'O'"));
        assert!(vin("LSVAA4182E21234-5").is_err());
    }

    #[test]
    fn dates() {
        for input in ["2024-03-05", "2024/3/5", "2024.3.5", "2024年3月5日", "20240305", "2024-03-05 10:20:00", "2024-3-5T08:00"] {
            assert_eq!(date(input, today()).as_deref(), Ok("2024-03-05"), "{input}");
        }
        for bad in ["2024-02-30", "05/03/2024", "2024-03", "yesterday", "2027-01-01", "1970-01-01", "24-3-5"] {
            assert!(date(bad, today()).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        for (input, km) in
            [("12345", 12345), ("12,345", 12345), ("12345km", 12345), ("12345 KM", 12345), ("12345公里", 12345), ("12345.0", 12345)]
        {
            assert_eq!(mileage(input), Ok(km), "{input}");
        }
        assert!(mileage("-5").is_err() && mileage("12.5km").is_err() && mileage("9999999").is_err());
        assert_eq!(year("2019款"), Ok(2019));
        assert!(year("19").is_err());
        assert_eq!(amount_fen("¥1,234.5"), Ok(123_450));
        assert_eq!(amount_fen("800元"), Ok(80_000));
        assert!(amount_fen("1.234").is_err() && amount_fen("abc").is_err() && amount_fen("-3").is_err());
    }

    #[test]
    fn texts_lists_and_plates() {
        assert_eq!(text(" 王五 ", 5).as_deref(), Ok("王五"));
        assert!(text("王\u{1b}[31m五", 50).unwrap_err().contains("U+001B"));
        assert!(text("一二三四五六", 5).is_err());
        assert_eq!(list("右前门钣金；喷漆、 更换机油\n四轮定位").unwrap(), ["右前门钣金", "喷漆", "更换机油", "四轮定位"]);
        assert_eq!(plate("粤B·12345").as_deref(), Ok("粤B12345"));
    }
}

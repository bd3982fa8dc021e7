//! Chinese numerals, one parser for the whole product: the intake lexicon reads lengths and speeds
//! from the customer's words with it, and the estimate's explanation check reads the numbers a
//! model wrote with it. They must agree, or a number the customer said could be judged invented.
//!
//! Rules: 一百二 = 120 and 一千三 = 1300 (a digit right after 百/千/万 counts the next lower unit),
//! 一百零二 = 102, 两 = 2, 十几 ≈ 15, 几 ≈ 3, 几十 ≈ 50, 半 = 0.5, 二三十 (a range) = its middle.

/// The value of one Chinese digit (零 … 九, 两).
pub fn digit(c: char) -> Option<f64> {
    Some(match c {
        '零' => 0.0,
        '一' => 1.0,
        '二' | '两' => 2.0,
        '三' => 3.0,
        '四' => 4.0,
        '五' => 5.0,
        '六' => 6.0,
        '七' => 7.0,
        '八' => 8.0,
        '九' => 9.0,
        _ => return None,
    })
}

fn unit(c: char) -> Option<f64> {
    Some(match c {
        '十' => 10.0,
        '百' => 100.0,
        '千' => 1000.0,
        '万' => 10000.0,
        _ => return None,
    })
}

/// Whether `c` can be part of a numeral run (digits, units, 几, 半).
pub fn is_numeral(c: char) -> bool {
    digit(c).is_some() || unit(c).is_some() || c == '几' || c == '半'
}

/// The value of a run of Chinese numeral characters; `None` when anything else is in it.
pub fn value(s: &str) -> Option<f64> {
    match s {
        "" => return None,
        "半" => return Some(0.5),
        "几" => return Some(3.0),
        "几十" => return Some(50.0),
        _ => {}
    }
    let chars: Vec<char> = s.chars().collect();
    // "二三十", "三四十": a range; take the middle.
    if let [a, b, '十'] = chars[..] {
        if let (Some(a), Some(b)) = (digit(a), digit(b)) {
            return Some((a + b) / 2.0 * 10.0);
        }
    }
    let (mut total, mut section, mut cur) = (0.0, 0.0, 0.0);
    let mut last_unit = 1.0;
    for &c in &chars {
        if let Some(d) = digit(c) {
            cur = d;
        } else if c == '几' {
            cur = 5.0; // 十几 ≈ 15
        } else if c == '半' {
            cur += 0.5;
        } else if c == '万' {
            total += (section + cur) * 10000.0;
            (section, cur, last_unit) = (0.0, 0.0, 10000.0);
        } else if let Some(u) = unit(c) {
            section += if cur == 0.0 { 1.0 } else { cur } * u;
            (cur, last_unit) = (0.0, u);
        } else {
            return None;
        }
    }
    // "一百二" = 120: a digit straight after 百/千/万 counts the next lower unit ("一百零二" does not).
    let n = chars.len();
    let abbreviated = n >= 2 && digit(chars[n - 1]).is_some() && unit(chars[n - 2]).is_some_and(|u| u >= 100.0);
    if abbreviated && cur > 0.0 {
        section += cur * last_unit / 10.0;
    } else {
        section += cur;
    }
    Some(total + section)
}

#[cfg(test)]
mod tests {
    use super::value;

    #[test]
    fn one_reading_of_each_form() {
        for (s, v) in [
            ("一百二", 120.0),
            ("一百零二", 102.0),
            ("一千三百", 1300.0),
            ("一千三", 1300.0),
            ("两万五", 25000.0),
            ("三十五", 35.0),
            ("十", 10.0),
            ("十几", 15.0),
            ("二三十", 25.0),
            ("几十", 50.0),
            ("半", 0.5),
            ("零", 0.0),
            ("一百五十", 150.0),
        ] {
            assert_eq!(value(s), Some(v), "{s}");
        }
        assert_eq!(value("一百块"), None);
        assert_eq!(value(""), None);
    }
}

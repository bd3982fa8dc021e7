//! Plain domain types shared by every layer: ids, roles, the case and its status machine, customers,
//! vehicles, photos. Pure: nothing here knows about HTTP, SQL or MQTT, so the rules can be tested alone.

pub mod case;
pub mod follow_up;
pub mod kpi;
pub mod numerals;
pub mod vocab;
pub mod workshop;

pub use case::{CaseStatus, Transition, TransitionError};
pub use vocab::{DamageType, Finding, Lang, Part, Position};

use serde::{Deserialize, Serialize};

/// A staff role. Least privilege: each route names the roles it admits (see `api::policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Advisor,
    Technician,
    QcInspector,
    CustomerService,
    Manager,
    HqAuditor,
}

impl Role {
    pub const ALL: [Role; 6] = [Role::Advisor, Role::Technician, Role::QcInspector, Role::CustomerService, Role::Manager, Role::HqAuditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Advisor => "advisor",
            Role::Technician => "technician",
            Role::QcInspector => "qc_inspector",
            Role::CustomerService => "customer_service",
            Role::Manager => "manager",
            Role::HqAuditor => "hq_auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// New time-ordered id (UUID v7): sortable for keyset pagination, unique across stores for HQ sync.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Current UTC time, RFC 3339 with milliseconds: sorts lexically in SQLite.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    pub must_change_password: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub preferred_language: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vehicle {
    pub id: String,
    pub customer_id: String,
    pub vin: Option<String>,
    pub plate: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub year: Option<i32>,
    pub mileage_km: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

/// One entry of a case's append-only timeline: who did what, when and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TimelineEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub from_status: Option<CaseStatus>,
    pub to_status: Option<CaseStatus>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Photo {
    pub id: String,
    pub case_id: String,
    pub sha256: String,
    pub media_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub shot: Option<String>,
    pub uploaded_by: String,
    pub uploaded_at: String,
}

/// Validation helpers shared by the services: they return the field name so the API can point at it.
pub mod validate {
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("{field}: {message}")]
    pub struct Invalid {
        pub field: String,
        pub message: String,
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Invalid {
        Invalid { field: field.to_string(), message: message.into() }
    }

    /// Trimmed, non-empty, at most `max` characters. The limit counts the text as sent (before
    /// trimming), as JSON Schema's `maxLength` does, so the documented limit and this one agree.
    pub fn text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
        if value.chars().count() > max {
            return Err(invalid(field, format!("must be at most {max} characters")));
        }
        let v = value.trim();
        if v.is_empty() {
            return Err(invalid(field, "must not be empty"));
        }
        Ok(v.to_string())
    }

    /// The first character that text from a client may not contain, if any: C0 control characters
    /// (U+0000–U+001F) except tab and line feed, carriage return unless it starts a CR LF pair (a
    /// tablet's textarea may send CR LF; the text is stored as sent, not normalised), DEL (U+007F)
    /// and the C1 controls (U+0080–U+009F). They have no place in names, notes or messages and are
    /// how hostile text truncates logs, fools terminals or splits records downstream. (Lone
    /// surrogates cannot occur: a Rust `str` is valid UTF-8, and JSON's `\ud800` fails to parse.)
    pub fn forbidden_char(value: &str) -> Option<char> {
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            let bad = match c {
                '\n' | '\t' => false,
                '\r' => chars.peek() != Some(&'\n'),
                c => c.is_control(), // C0, DEL and C1 exactly (Unicode general category Cc)
            };
            if bad {
                return Some(c);
            }
        }
        None
    }

    /// `Err` naming `field` when `value` contains a character `forbidden_char` refuses.
    pub fn plain_text(field: &str, value: &str) -> Result<(), Invalid> {
        match forbidden_char(value) {
            None => Ok(()),
            Some(c) => Err(invalid(
                field,
                format!("contains the control character U+{:04X}; only text, tab, line feed and CR LF are accepted", c as u32),
            )),
        }
    }

    /// Like `text`, but absent or blank is `None`; the limit again counts the text as sent.
    pub fn opt_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, Invalid> {
        match value {
            Some(v) if v.chars().count() > max => Err(invalid(field, format!("must be at most {max} characters"))),
            Some(v) if !v.trim().is_empty() => text(field, v, max).map(Some),
            _ => Ok(None),
        }
    }

    /// VIN: 17 characters, digits and capital letters without I, O, Q (ISO 3779).
    pub fn vin(value: Option<&str>) -> Result<Option<String>, Invalid> {
        let Some(v) = value.map(|v| v.trim().to_ascii_uppercase()).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let ok = v.len() == 17 && v.chars().all(|c| c.is_ascii_alphanumeric() && !matches!(c, 'I' | 'O' | 'Q'));
        if !ok {
            return Err(invalid("vin", "must be 17 letters and digits (no I, O or Q)"));
        }
        Ok(Some(v))
    }

    /// Phone: digits with an optional leading '+', spaces and dashes allowed; 5..20 digits.
    pub fn phone(value: Option<&str>) -> Result<Option<String>, Invalid> {
        let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let digits: String = v.chars().filter(|c| c.is_ascii_digit()).collect();
        let shape_ok = v.chars().enumerate().all(|(i, c)| c.is_ascii_digit() || c == ' ' || c == '-' || (c == '+' && i == 0));
        if !shape_ok || !(5..=20).contains(&digits.len()) {
            return Err(invalid("phone", "must be a phone number: digits, optional leading +"));
        }
        Ok(Some(v.to_string()))
    }

    pub fn year(value: Option<i32>) -> Result<Option<i32>, Invalid> {
        match value {
            Some(y) if !(1950..=2100).contains(&y) => Err(invalid("year", "must be between 1950 and 2100")),
            v => Ok(v),
        }
    }

    pub fn mileage(value: Option<i64>) -> Result<Option<i64>, Invalid> {
        match value {
            Some(m) if !(0..=5_000_000).contains(&m) => Err(invalid("mileage_km", "must be between 0 and 5000000")),
            v => Ok(v),
        }
    }

    pub fn language(value: Option<&str>) -> Result<String, Invalid> {
        match value.unwrap_or("zh-CN") {
            l @ ("zh-CN" | "en") => Ok(l.to_string()),
            _ => Err(invalid("preferred_language", "must be \"zh-CN\" or \"en\"")),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        #[test]
        fn vin_rules() {
            assert_eq!(vin(Some("lsvaa4182e2123456")).unwrap().as_deref(), Some("LSVAA4182E2123456"));
            assert!(vin(Some("LSVAA4182E212345")).is_err());
            assert!(vin(Some("LSVAA4182E212345O")).is_err());
            assert_eq!(vin(Some("  ")).unwrap(), None);
        }
        #[test]
        fn phone_rules() {
            assert!(phone(Some("+86 138-0013-8000")).unwrap().is_some());
            assert!(phone(Some("1380013800a")).is_err());
            assert!(phone(Some("12")).is_err());
        }
        #[test]
        fn text_rules() {
            assert_eq!(text("name", "  王先生 ", 10).unwrap(), "王先生");
            assert_eq!(text("name", "", 10).unwrap_err().field, "name");
            assert!(text("name", "一二三四五六", 5).is_err());
            // The limit counts what was sent, spaces included (JSON Schema maxLength).
            assert!(text("name", "  一二三四 ", 5).is_err());
            assert_eq!(text("name", " 一二三 ", 5).unwrap(), "一二三");
            assert!(opt_text("plate", Some("      "), 5).is_err());
            assert_eq!(opt_text("plate", Some("   "), 5).unwrap(), None);
        }
        #[test]
        fn control_characters() {
            for ok in ["王先生", "line one\nline two", "a\tb", "windows\r\nline", "emoji 🚗", ""] {
                assert_eq!(forbidden_char(ok), None, "{ok:?}");
            }
            for (bad, c) in [
                ("a\0b", '\0'),
                ("\u{1b}[2J", '\u{1b}'),
                ("cr\ronly", '\r'),
                ("end\r", '\r'),
                ("del\u{7f}", '\u{7f}'),
                ("c1\u{85}", '\u{85}'),
            ] {
                assert_eq!(forbidden_char(bad), Some(c), "{bad:?}");
            }
            assert_eq!(plain_text("note", "x\u{0}").unwrap_err().field, "note");
        }
    }
}

/// Who is acting, for the timeline and the audit log. `client_addr` is the tablet's address.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub username: String,
    pub role: Option<Role>,
    pub client_addr: Option<String>,
}

impl Actor {
    /// The appliance itself (start-up, CLI on the box).
    pub fn system(what: &str) -> Actor {
        Actor { user_id: None, username: what.to_string(), role: None, client_addr: None }
    }
}

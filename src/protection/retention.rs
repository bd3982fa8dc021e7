//! Retention classes and their defaults. The daily job (`DataProtection::apply_retention`) applies
//! them; a case on legal hold is never touched.

use serde::Serialize;

/// Days each class of data is kept (counted from the case's last change once it is closed or
/// cancelled; for the audit log, from the entry).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Photos of closed cases: one year covers the usual body-work warranty disputes.
    pub intake_photos_days: u32,
    /// Names, phones, plates, VINs and the customer's words: three years after the last case closed.
    pub closed_case_personal_days: u32,
    /// The free-text comment of a survey answer (the score stays, anonymous, for the KPIs).
    pub survey_answers_days: u32,
    /// The audit log: at least 180 days (network logs are kept six months or more).
    pub audit_log_days: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { intake_photos_days: 365, closed_case_personal_days: 1095, survey_answers_days: 365, audit_log_days: 365 }
    }
}

pub const AUDIT_MIN_DAYS: u32 = 180;

impl Policy {
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (k, v) in [
            ("intake_photos_days", self.intake_photos_days),
            ("closed_case_personal_days", self.closed_case_personal_days),
            ("survey_answers_days", self.survey_answers_days),
        ] {
            if !(1..=36_500).contains(&v) {
                return Err((k, "must be between 1 and 36500 days".into()));
            }
        }
        if !(AUDIT_MIN_DAYS..=36_500).contains(&self.audit_log_days) {
            return Err(("audit_log_days", format!("must be at least {AUDIT_MIN_DAYS} days (six months) and at most 36500")));
        }
        Ok(())
    }

    /// The cut-off instant for a class: anything older goes.
    pub fn cutoff(days: u32, now: chrono::DateTime<chrono::Utc>) -> String {
        (now - chrono::Duration::days(days as i64)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

/// What one run removed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    pub photos_removed: usize,
    pub customers_erased: usize,
    pub survey_comments_blanked: usize,
    pub audit_rows_removed: usize,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} photos removed, {} customers' personal data erased, {} survey comments blanked, {} audit entries removed",
            self.photos_removed, self.customers_erased, self.survey_comments_blanked, self.audit_rows_removed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_is_kept_at_least_six_months() {
        assert!(Policy::default().check().is_ok());
        let short = Policy { audit_log_days: 90, ..Policy::default() };
        assert_eq!(short.check().unwrap_err().0, "audit_log_days");
        let zero = Policy { intake_photos_days: 0, ..Policy::default() };
        assert_eq!(zero.check().unwrap_err().0, "intake_photos_days");
    }

    #[test]
    fn cutoff_is_days_before_now() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-05T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(Policy::cutoff(365, now), "2025-12-05T00:00:00.000Z");
    }
}

//! The report's fixed labels: [`Label`] and [`Labels`], loaded and checked from TOML.

use std::collections::BTreeMap;
use std::path::Path;

use super::PdfError;

/// One fixed label in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub zh: String,
    pub en: String,
}

impl Label {
    /// zh-CN first, English second: "维修质检报告 Repair QC report".
    pub fn both(&self) -> String {
        format!("{} {}", self.zh, self.en)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    labels: BTreeMap<String, RawLabel>,
}

// Both texts optional here so that a missing one is reported by our loader, which names the
// file and the full key, rather than by serde.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    zh: Option<String>,
    en: Option<String>,
}

const MAX_LABEL_CHARS: usize = 80;

fn take_label(entries: &mut BTreeMap<String, RawLabel>, key: &str, source: &str) -> Result<Label, PdfError> {
    let raw = entries.remove(key).ok_or_else(|| PdfError::Labels(format!("{source}: missing key `labels.{key}`")))?;
    let text = |value: Option<String>, lang: &str| match value {
        // A label sits in a table header or a heading bar; one the length of a paragraph would
        // push the layout off the page.
        Some(v) if v.trim().chars().count() > MAX_LABEL_CHARS => {
            Err(PdfError::Labels(format!("{source}: key `labels.{key}.{lang}` is longer than {MAX_LABEL_CHARS} characters")))
        }
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Some(_) => Err(PdfError::Labels(format!("{source}: key `labels.{key}.{lang}` is empty"))),
        None => Err(PdfError::Labels(format!("{source}: missing key `labels.{key}.{lang}`"))),
    };
    Ok(Label { zh: text(raw.zh, "zh")?, en: text(raw.en, "en")? })
}

// One list of keys generates the struct, the loader and `Labels::KEYS`, so the renderer cannot
// print a label that the loader has not checked.
macro_rules! report_labels {
    ($($key:ident),* $(,)?) => {
        /// Every fixed label of the report, checked present and non-empty at load.
        #[derive(Debug, Clone)]
        pub struct Labels {
            $(pub $key: Label,)*
        }

        impl Labels {
            /// The keys (`[labels.<key>]`) a labels file must define, each with `zh` and `en`.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];

            fn from_entries(mut entries: BTreeMap<String, RawLabel>, source: &str) -> Result<Labels, PdfError> {
                let labels = Labels { $($key: take_label(&mut entries, stringify!($key), source)?,)* };
                // A key we do not know is most likely a typo of one we do; refuse it rather than
                // print the builtin text the operator meant to change.
                if let Some(unknown) = entries.keys().next() {
                    return Err(PdfError::Labels(format!("{source}: unknown key `labels.{unknown}`")));
                }
                Ok(labels)
            }
        }
    };
}

report_labels!(
    title,
    store,
    report_no,
    case_id,
    vehicle,
    opened_at,
    inspected_at,
    copy_customer,
    copy_store,
    verdict_pass,
    verdict_fail,
    section_checkpoints,
    before,
    after,
    not_shot,
    photo_unreadable,
    section_findings,
    col_part,
    col_damage,
    col_outcome,
    section_parts,
    col_part_no,
    col_part_name,
    col_origin,
    col_code,
    col_serial,
    section_labour,
    col_operation,
    col_standard_h,
    col_clocked_h,
    col_flag,
    total,
    section_alerts,
    col_alert_kind,
    col_alert_detail,
    col_settlement,
    section_signoff,
    inspector,
    inspector_note,
    signature,
    date,
    section_certificate,
    certificate_no,
    repair_class,
    completed_at,
    mileage,
    quality_inspector,
    store_licence,
    warranty,
    col_warranty_terms,
    survey_invite,
    none,
    not_recorded,
    continued,
    page_of,
);

pub(super) const BUILTIN_LABELS: &str = include_str!("../../assets/report/qc_report.toml");

impl Labels {
    /// The labels compiled into the binary (`assets/report/qc_report.toml`).
    pub fn builtin() -> Result<Labels, PdfError> {
        Labels::parse(BUILTIN_LABELS, "assets/report/qc_report.toml (builtin)")
    }

    /// Loads and checks a labels file.
    pub fn load(path: &Path) -> Result<Labels, PdfError> {
        let text = std::fs::read_to_string(path).map_err(|e| PdfError::Labels(format!("{}: cannot be read: {e}", path.display())))?;
        Labels::parse(&text, &path.display().to_string())
    }

    /// Checks labels given as TOML text.
    pub fn from_toml(text: &str) -> Result<Labels, PdfError> {
        Labels::parse(text, "(inline TOML)")
    }

    fn parse(text: &str, source: &str) -> Result<Labels, PdfError> {
        let raw: RawLabels = toml::from_str(text).map_err(|e| PdfError::Labels(format!("{source}: {e}")))?;
        let labels = Labels::from_entries(raw.labels, source)?;
        for (lang, template) in [("zh", &labels.page_of.zh), ("en", &labels.page_of.en)] {
            if !template.contains("{n}") || !template.contains("{m}") {
                return Err(PdfError::Labels(format!("{source}: key `labels.page_of.{lang}` must contain {{n}} and {{m}}")));
            }
        }
        Ok(labels)
    }

    pub(super) fn page_of(&self, n: usize, m: usize) -> String {
        let fill = |t: &str| t.replace("{n}", &n.to_string()).replace("{m}", &m.to_string());
        format!("{} {}", fill(&self.page_of.zh), fill(&self.page_of.en))
    }
}

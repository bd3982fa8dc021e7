//! Versioned prompt and reply templates (`assets/prompts/templates_v*.toml`).
//!
//! Owns loading, validating and filling templates. The defaults are compiled into the binary so
//! an appliance without its asset folder still speaks; `Templates::load` reads a replacement
//! file (e.g. pushed by HQ). Placeholders are filled only with values computed by our code;
//! customer text is never substituted into a system prompt.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The compiled-in default template file.
pub const DEFAULT_TEMPLATES: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/prompts/templates_v1.toml"));

pub use crate::domain::vocab::Lang;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("template file {path} is not valid TOML: {reason}")]
    Parse { path: String, reason: String },
    #[error("template file {path}: entry `{key}` has an empty `{lang}` text")]
    Empty { path: String, key: String, lang: &'static str },
    #[error("template file {path}: required entry `{key}` is missing")]
    Missing { path: String, key: String },
    #[error("no template named `{0}`")]
    Unknown(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: u32,
    templates: BTreeMap<String, RawEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    zh: String,
    en: String,
}

/// The templates every deployment must have (the workflow falls back on them).
const REQUIRED: &[&str] = &[
    "intake.greeting_unclear",
    "intake.ask.photos",
    "intake.complete",
    "plan.explain",
    "followup.survey",
    "system.phrase_question",
    "system.explain_plan",
];

#[derive(Debug, Clone)]
pub struct Templates {
    pub version: u32,
    entries: BTreeMap<String, RawEntry>,
}

impl Templates {
    /// The compiled-in templates. Validated by a unit test, so this cannot fail at run time.
    pub fn builtin() -> Templates {
        Self::parse(DEFAULT_TEMPLATES, "<builtin>").unwrap_or_else(|e| panic!("builtin templates invalid: {e}"))
    }

    pub fn load(path: &Path) -> Result<Templates, TemplateError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Read { path: p.clone(), reason: e.to_string() })?;
        Self::parse(&text, &p)
    }

    pub fn parse(text: &str, path: &str) -> Result<Templates, TemplateError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| TemplateError::Parse { path: path.into(), reason: e.to_string() })?;
        for (k, e) in &raw.templates {
            for (lang, t) in [("zh", &e.zh), ("en", &e.en)] {
                if t.trim().is_empty() {
                    return Err(TemplateError::Empty { path: path.into(), key: k.clone(), lang });
                }
            }
        }
        for k in REQUIRED {
            if !raw.templates.contains_key(*k) {
                return Err(TemplateError::Missing { path: path.into(), key: (*k).into() });
            }
        }
        Ok(Templates { version: raw.version, entries: raw.templates })
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The template text, placeholders `{name}` replaced from `vars`.
    pub fn render(&self, key: &str, lang: Lang, vars: &[(&str, &str)]) -> Result<String, TemplateError> {
        let e = self.entries.get(key).ok_or_else(|| TemplateError::Unknown(key.into()))?;
        let mut s = match lang {
            Lang::Zh => e.zh.clone(),
            Lang::En => e.en.clone(),
        };
        for (k, v) in vars {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_parse_and_render() {
        let t = Templates::builtin();
        assert_eq!(t.version, 1);
        let s = t.render("intake.ask.photos", Lang::Zh, &[("subject", "右前门")]).unwrap();
        assert!(s.contains("右前门") && s.contains('3'));
        assert_eq!(Lang::detect("scratch on door"), Lang::En);
        assert_eq!(Lang::detect("右前门"), Lang::Zh);
    }

    #[test]
    fn missing_required_entry_is_named() {
        let e = Templates::parse("version = 1\n[templates]\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("x.toml") && e.to_string().contains("intake."));
    }
}

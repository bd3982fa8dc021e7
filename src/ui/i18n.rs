//! The UI's words: one catalogue per language, `assets/ui/zh-CN.toml` (first) and
//! `assets/ui/en.toml`, flat `"key" = "text"` tables compiled into the binary.
//!
//! Invariants: both catalogues hold exactly the same keys and no empty text (checked by `check`,
//! which the daemon runs at start and the tests run too); every key a template or page handler
//! names exists (tests scan the sources). Placeholders are `{name}`, filled by `Strings::f`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

const ZH: &str = include_str!("../../assets/ui/zh-CN.toml");
const EN: &str = include_str!("../../assets/ui/en.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiLang {
    Zh,
    En,
}

impl UiLang {
    /// The `lang` cookie or query value; anything else is zh-CN.
    pub fn parse(s: &str) -> UiLang {
        if s.eq_ignore_ascii_case("en") {
            UiLang::En
        } else {
            UiLang::Zh
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            UiLang::Zh => "zh-CN",
            UiLang::En => "en",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            UiLang::Zh => "zh",
            UiLang::En => "en",
        }
    }
}

type Table = BTreeMap<String, String>;

struct Catalogs {
    zh: Table,
    en: Table,
}

fn parse(name: &str, text: &str) -> Result<Table, String> {
    let t: Table = toml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
    if let Some((k, _)) = t.iter().find(|(_, v)| v.trim().is_empty()) {
        return Err(format!("{name}: '{k}' is empty"));
    }
    Ok(t)
}

fn load() -> Result<Catalogs, String> {
    let zh = parse("assets/ui/zh-CN.toml", ZH)?;
    let en = parse("assets/ui/en.toml", EN)?;
    if let Some(k) = en.keys().find(|k| !zh.contains_key(*k)) {
        return Err(format!("assets/ui/zh-CN.toml lacks '{k}' (every string is zh-CN first)"));
    }
    if let Some(k) = zh.keys().find(|k| !en.contains_key(*k)) {
        return Err(format!("assets/ui/en.toml lacks '{k}'"));
    }
    Ok(Catalogs { zh, en })
}

fn catalogs() -> &'static Catalogs {
    static C: OnceLock<Catalogs> = OnceLock::new();
    // `check` runs at start-up, so a broken catalogue stops the daemon before any page is served;
    // here an empty catalogue only shows keys instead of words.
    C.get_or_init(|| load().unwrap_or(Catalogs { zh: Table::new(), en: Table::new() }))
}

/// Validates the compiled-in catalogues (the daemon refuses to start otherwise).
pub fn check() -> Result<usize, String> {
    load().map(|c| c.zh.len())
}

/// All keys of the zh-CN catalogue (for the tests).
pub fn keys() -> Vec<String> {
    catalogs().zh.keys().cloned().collect()
}

/// The strings of one language, as the templates see them.
#[derive(Clone, Copy)]
pub struct Strings {
    lang: UiLang,
}

impl Strings {
    pub fn new(lang: UiLang) -> Strings {
        Strings { lang }
    }

    pub fn lang(&self) -> UiLang {
        self.lang
    }

    /// The text for `key` in this language, else in zh-CN (the catalogues have the same keys).
    fn lookup(&self, key: &str) -> Option<&'static String> {
        let c = catalogs();
        let t = match self.lang {
            UiLang::Zh => &c.zh,
            UiLang::En => &c.en,
        };
        t.get(key).or_else(|| c.zh.get(key))
    }

    /// The text for `key`; a missing key shows itself (the tests make sure none is missing).
    pub fn s<'a>(&self, key: &'a str) -> &'a str
    where
        'static: 'a,
    {
        self.lookup(key).map(String::as_str).unwrap_or(key)
    }

    /// `s(key)` with `{name}` placeholders filled.
    pub fn f(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut out = self.or(key, key);
        for (k, v) in args {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }

    /// The text for a dynamic key (`status.estimated`, `err.not_approved`), or `fallback`.
    pub fn or(&self, key: &str, fallback: &str) -> String {
        self.lookup(key).cloned().unwrap_or_else(|| fallback.to_string())
    }

    /// `prefix.name`, e.g. the word for a status or a part.
    pub fn of(&self, prefix: &str, name: &str) -> String {
        self.or(&format!("{prefix}.{name}"), name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogues_load_and_match() {
        let n = check().expect("catalogues are valid");
        assert!(n > 50, "{n} strings");
    }

    /// Every key a template or handler names is in the zh-CN catalogue (a missing zh-CN string fails).
    #[test]
    fn every_named_key_exists_in_zh_cn() {
        let re = regex::Regex::new(r#"\b(?:s|f)\("([a-z0-9_]+\.[a-z0-9_.]+)""#).unwrap();
        let keys: std::collections::HashSet<String> = keys().into_iter().collect();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ui");
        let mut files = vec![];
        for d in [dir.clone(), dir.join("pages"), dir.join("templates")] {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    files.push(p);
                }
            }
        }
        let mut named = 0;
        for p in files {
            let text = std::fs::read_to_string(&p).unwrap();
            for c in re.captures_iter(&text) {
                named += 1;
                assert!(keys.contains(&c[1]), "{}: '{}' is not in assets/ui/zh-CN.toml", p.display(), &c[1]);
            }
        }
        assert!(named > 50, "only {named} keys found: is the scan broken?");
    }

    #[test]
    fn placeholders_and_fallbacks() {
        let zh = Strings::new(UiLang::Zh);
        assert_eq!(zh.s("no_such_key"), "no_such_key");
        assert_eq!(zh.or("status.no_such", "x"), "x");
        assert_ne!(zh.s("nav.today"), Strings::new(UiLang::En).s("nav.today"));
    }
}

//! The survey page as pure functions: the signer (CSRF tokens bound to the survey token, the
//! links in invitations), the submitted form → a checked `Answer`, and the view models of the
//! templates (`src/ui/templates/hq_survey*.html`, words from `survey_*` keys of the catalogues).
//!
//! Invariants:
//! - An answer leaves here only after `domain::follow_up::check_answer` (every question answered
//!   once, scores in range) and the comment check: at most `COMMENT_MAX` characters, and no
//!   control characters other than line feed and tab. Such characters are *refused* with a clear
//!   message, not stripped: the customer sees exactly what is stored, and a NUL (which PostgreSQL
//!   refuses in text) never reaches the database.
//! - Errors are codes (`survey_err.<code>` in the catalogues), never English text on the page.
//! - The thank-you page invites every respondent to review, whatever the scores: the view has no
//!   score at all to decide with (review gating is forbidden by Google's policy, the FTC's
//!   16 CFR 465 and SAMR's rules).

use askama::Template;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::survey_store::Question;
use crate::domain::follow_up::{check_answer, Answer, Fixed, FixedAnswer};
use crate::ui::i18n::{Strings, UiLang};

/// Longest comment, in characters (the store's limit too).
pub const COMMENT_MAX: usize = 2000;
/// Largest form body, refused from its Content-Length before it is read: 2,000 CJK characters
/// percent-encoded are 18,000 bytes, and the rest of the form is small.
pub const BODY_LIMIT: u64 = 32 * 1024;
/// Form fields beyond these are ignored; a key this long is not ours.
const KEY_MAX: usize = 200;

/// Whether `t` can be a page token at all (the store's are 36 hex digits; ours 48). Anything else
/// is answered 404 without a database query.
pub fn valid_token(t: &str) -> bool {
    (16..=128).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// HMAC-SHA-256 with the survey service's secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub fn new(key: Vec<u8>) -> Signer {
        Signer { key }
    }

    fn mac(&self, parts: &[&str]) -> Vec<u8> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        for p in parts {
            // Length-prefixed, so ("ab","c") and ("a","bc") sign differently.
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p.as_bytes());
        }
        m.finalize().into_bytes().to_vec()
    }

    /// The form's CSRF token: bound to the survey (the hash of its page token), so a token taken
    /// from one survey's page is worthless on another.
    pub fn csrf(&self, token_hash: &str) -> String {
        hex::encode(&self.mac(&["csrf", token_hash])[..16])
    }

    pub fn csrf_ok(&self, token_hash: &str, sent: &str) -> bool {
        crate::ui::constant_time_eq(self.csrf(token_hash).as_bytes(), sent.as_bytes())
    }

    /// The page token in an invitation: derived, so a retry sends the same link without the
    /// token being stored anywhere (HQ keeps only its hash).
    pub fn link_token(&self, store_id: &str, follow_up_id: &str, channel: &str) -> String {
        hex::encode(&self.mac(&["link", store_id, follow_up_id, channel])[..24])
    }
}

/// A form the customer sent, before checking.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Submitted {
    pub csrf: String,
    pub lang: Option<String>,
    pub csat: String,
    pub nps: String,
    /// (finding id, "yes" | "partly" | "no"), as sent.
    pub fixed: Vec<(String, String)>,
    /// Line ends normalised (CR LF → LF), otherwise as sent.
    pub comment: String,
    /// The first problem with the form's shape (a field twice, a key too long), reported by
    /// `to_answer`; the rest is still read so the CSRF token is checked first.
    pub error: Option<FormError>,
}

/// Why a form was refused: the field and the catalogue code (`survey_err.<code>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormError {
    pub field: &'static str,
    pub code: &'static str,
}

fn err(field: &'static str, code: &'static str) -> FormError {
    FormError { field, code }
}

/// Read a urlencoded body. Fields given twice are an error (which one would count?).
pub fn parse_form(body: &[u8]) -> Submitted {
    let mut s = Submitted::default();
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in form_urlencoded::parse(body) {
        if k.len() > KEY_MAX {
            s.error.get_or_insert(err("form", "malformed"));
            continue;
        }
        let mut once = |field: &'static str| {
            if !seen.insert(field) {
                s.error.get_or_insert(err(field, "duplicate"));
            }
        };
        match k.as_ref() {
            "csrf" => {
                once("csrf");
                s.csrf = v.into_owned();
            }
            "lang" => s.lang = Some(v.into_owned()),
            "csat" => {
                once("csat");
                s.csat = v.trim().to_string();
            }
            "nps" => {
                once("nps");
                s.nps = v.trim().to_string();
            }
            "comment" => {
                once("comment");
                s.comment = v.replace("\r\n", "\n");
            }
            other => {
                if let Some(id) = other.strip_prefix("fixed:") {
                    s.fixed.push((id.to_string(), v.trim().to_string()));
                }
            }
        }
    }
    s
}

fn score(v: &str, field: &'static str, max: u8, min: u8) -> Result<u8, FormError> {
    if v.is_empty() {
        return Err(err(field, if field == "csat" { "csat_missing" } else { "nps_missing" }));
    }
    let range = if field == "csat" { "csat_range" } else { "nps_range" };
    let n: u8 = v.parse().map_err(|_| err(field, range))?;
    if n < min || n > max {
        return Err(err(field, range));
    }
    Ok(n)
}

/// The checked answer to `questions`, or the first problem.
pub fn to_answer(s: &Submitted, questions: &[Question]) -> Result<Answer, FormError> {
    if let Some(e) = s.error {
        return Err(e);
    }
    if let Some(c) = crate::domain::validate::forbidden_char(&s.comment) {
        tracing::debug!(codepoint = c as u32, "a comment with a control character refused");
        return Err(err("comment", "comment_control"));
    }
    let comment = s.comment.trim();
    if comment.chars().count() > COMMENT_MAX {
        return Err(err("comment", "comment_long"));
    }
    let csat = score(&s.csat, "csat", 5, 1)?;
    let nps = score(&s.nps, "nps", 10, 0)?;
    let mut fixed = Vec::with_capacity(s.fixed.len());
    for (id, v) in &s.fixed {
        let answer = match v.as_str() {
            "yes" => Fixed::Yes,
            "partly" => Fixed::Partly,
            "no" => Fixed::No,
            _ => return Err(err("fixed", "fixed_value")),
        };
        fixed.push(FixedAnswer { finding_id: id.clone(), answer });
    }
    let a = Answer { csat, nps, fixed, comment: (!comment.is_empty()).then(|| comment.to_string()) };
    let asked: Vec<String> = questions.iter().map(|q| q.finding_id.clone()).collect();
    check_answer(&a, &asked).map_err(|(field, _)| match field {
        "csat" => err("csat", "csat_range"),
        "nps" => err("nps", "nps_range"),
        _ => err("fixed", "fixed_missing"),
    })?;
    Ok(a)
}

/// Text from a store made safe to show: control characters out, bounded.
pub fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect::<String>().trim().to_string()
}

/// The page's language: `?lang=` (or the form's), else the follow-up's, else zh-CN.
pub fn lang_of(asked: Option<&str>, task_lang: &str) -> UiLang {
    match asked {
        Some(a) if a.eq_ignore_ascii_case("en") => UiLang::En,
        Some(a) if a.to_ascii_lowercase().starts_with("zh") => UiLang::Zh,
        _ => UiLang::parse(if task_lang.to_ascii_lowercase().starts_with("en") { "en" } else { "zh" }),
    }
}

// ---- view models -----------------------------------------------------------------------------

pub struct Choice {
    pub value: String,
    pub id: String,
    pub checked: bool,
    pub label: String,
}

pub struct QuestionView {
    pub name: String,
    pub text: String,
    pub choices: Vec<Choice>,
}

#[derive(Template)]
#[template(path = "hq_survey.html", config = "src/ui/askama.toml")]
pub struct FormPage {
    pub t: Strings,
    pub lang: &'static str,
    pub store: String,
    pub action: String,
    pub switch_href: String,
    pub switch_label: &'static str,
    pub csrf: String,
    pub csat: Vec<Choice>,
    pub nps: Vec<Choice>,
    pub questions: Vec<QuestionView>,
    pub comment: String,
    pub comment_max: usize,
    pub error: Option<String>,
    pub error_field: &'static str,
}

/// What the customer sent, to fill the form again after an error.
#[derive(Default)]
pub struct Refill<'a> {
    pub sent: Option<&'a Submitted>,
    pub error: Option<FormError>,
}

pub struct FormInput<'a> {
    pub t: Strings,
    pub token: &'a str,
    pub store_name: &'a str,
    pub questions: &'a [Question],
    pub csrf: String,
}

pub fn form_page(i: FormInput<'_>, refill: Refill<'_>) -> FormPage {
    let t = i.t;
    let sent = refill.sent;
    let choices = |name: &str, range: std::ops::RangeInclusive<u8>, chosen: &str| -> Vec<Choice> {
        range
            .map(|n| Choice { value: n.to_string(), id: format!("{name}-{n}"), checked: chosen == n.to_string(), label: n.to_string() })
            .collect()
    };
    let questions = i
        .questions
        .iter()
        .enumerate()
        .map(|(n, q)| {
            let (zh, en) = (clean(&q.label_zh, 80), clean(&q.label_en, 80));
            let label = match t.lang() {
                UiLang::En if !en.is_empty() => en,
                _ if !zh.is_empty() => zh,
                _ => en,
            };
            let name = format!("fixed:{}", q.finding_id);
            let chosen = sent.and_then(|s| s.fixed.iter().find(|(id, _)| *id == q.finding_id)).map(|(_, v)| v.as_str()).unwrap_or("");
            let choices = ["yes", "partly", "no"]
                .iter()
                .map(|v| Choice {
                    value: v.to_string(),
                    id: format!("q{n}-{v}"),
                    checked: chosen == *v,
                    label: t.s(&format!("survey_page.fixed_{v}")).to_string(),
                })
                .collect();
            QuestionView { name, text: t.f("survey_page.fixed_q", &[("label", &label)]), choices }
        })
        .collect();
    let (switch_lang, switch_label) = match t.lang() {
        UiLang::Zh => ("en", "English"),
        UiLang::En => ("zh", "中文"),
    };
    let error = refill.error.map(|e| t.or(&format!("survey_err.{}", e.code), t.s("survey_err.generic")));
    FormPage {
        t,
        lang: t.lang().tag(),
        store: clean(i.store_name, 60),
        action: format!("/s/{}", i.token),
        switch_href: format!("/s/{}?lang={switch_lang}", i.token),
        switch_label,
        csrf: i.csrf,
        csat: choices("csat", 1..=5, sent.map(|s| s.csat.as_str()).unwrap_or("")),
        nps: choices("nps", 0..=10, sent.map(|s| s.nps.as_str()).unwrap_or("")),
        questions,
        comment: sent
            .map(|s| s.comment.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').take(COMMENT_MAX).collect())
            .unwrap_or_default(),
        comment_max: COMMENT_MAX,
        error,
        error_field: refill.error.map(|e| e.field).unwrap_or(""),
    }
}

/// The one-message pages: thank you (with the review invitation), already answered, closed, not
/// found, refused, unavailable.
#[derive(Template)]
#[template(path = "hq_survey_message.html", config = "src/ui/askama.toml")]
pub struct MessagePage {
    pub t: Strings,
    pub lang: &'static str,
    /// The element id tests and scripts read (`survey-thanks`, `survey-not-found`, …).
    pub kind: &'static str,
    pub title: String,
    pub lead: String,
    pub store: String,
    pub review: bool,
    pub review_url: Option<String>,
}

/// `kind` names the page and its catalogue keys (`survey_msg.<kind>_title`, `…_lead`).
pub fn message_page(t: Strings, kind: &'static str, store: &str, review_url: Option<&str>) -> MessagePage {
    let key = kind.trim_start_matches("survey-").replace('-', "_");
    // Every respondent, and only respondents, sees the invitation: it depends on having answered,
    // never on what was answered.
    let review = matches!(kind, "survey-thanks" | "survey-answered");
    MessagePage {
        t,
        lang: t.lang().tag(),
        kind,
        title: t.or(&format!("survey_msg.{key}_title"), t.s("survey_msg.error_title")),
        lead: t.or(&format!("survey_msg.{key}_lead"), t.s("survey_msg.error_lead")),
        store: clean(store, 60),
        review,
        review_url: review_url.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qs() -> Vec<Question> {
        ["f1", "f2"]
            .iter()
            .map(|id| Question { finding_id: id.to_string(), label_zh: format!("{id}异响"), label_en: format!("{id} noise") })
            .collect()
    }

    fn form(extra: &str) -> Result<Answer, FormError> {
        to_answer(&parse_form(format!("csrf=x&csat=4&nps=8&fixed%3Af1=yes&fixed%3Af2=partly{extra}").as_bytes()), &qs())
    }

    #[test]
    fn a_complete_form_is_an_answer() {
        let a = form("&comment=%E8%BF%98%E8%A1%8C%0D%0A%09ok+").unwrap();
        assert_eq!((a.csat, a.nps, a.fixed.len()), (4, 8, 2));
        assert_eq!(a.fixed[1], FixedAnswer { finding_id: "f2".into(), answer: Fixed::Partly });
        assert_eq!(a.comment.as_deref(), Some("还行\n\tok"));
        assert_eq!(form("&comment=+++").unwrap().comment, None);
    }

    #[test]
    fn hostile_forms_are_refused_with_codes() {
        let code = |extra: &str| form(extra).unwrap_err().code;
        assert_eq!(code("&comment=a%00b"), "comment_control");
        assert_eq!(code("&comment=a%1Bb"), "comment_control");
        assert_eq!(code("&comment=a%0Db"), "comment_control");
        assert_eq!(code(&format!("&comment={}", "字".repeat(COMMENT_MAX + 1))), "comment_long");
        assert!(form(&format!("&comment={}", "字".repeat(COMMENT_MAX))).is_ok());
        assert_eq!(code("&csat=5"), "duplicate");
        let bare = |body: &str| to_answer(&parse_form(body.as_bytes()), &qs()).unwrap_err().code;
        assert_eq!(bare("nps=8&fixed%3Af1=yes&fixed%3Af2=no"), "csat_missing");
        assert_eq!(bare("csat=0&nps=8&fixed%3Af1=yes&fixed%3Af2=no"), "csat_range");
        assert_eq!(bare("csat=300&nps=8&fixed%3Af1=yes&fixed%3Af2=no"), "csat_range");
        assert_eq!(bare("csat=-1&nps=8&fixed%3Af1=yes&fixed%3Af2=no"), "csat_range");
        assert_eq!(bare("csat=3&nps=11&fixed%3Af1=yes&fixed%3Af2=no"), "nps_range");
        assert_eq!(bare("csat=3&fixed%3Af1=yes&fixed%3Af2=no"), "nps_missing");
        assert_eq!(bare("csat=3&nps=1&fixed%3Af1=yes"), "fixed_missing");
        assert_eq!(bare("csat=3&nps=1&fixed%3Af1=yes&fixed%3Af2=no&fixed%3Af3=no"), "fixed_missing");
        assert_eq!(bare("csat=3&nps=1&fixed%3Af1=yes&fixed%3Af1=no&fixed%3Af2=no"), "fixed_missing");
        assert_eq!(bare("csat=3&nps=1&fixed%3Af1=maybe&fixed%3Af2=no"), "fixed_value");
        let long_key = parse_form(format!("{}=1&csrf=c&csat=3&csrf=d", "k".repeat(300)).as_bytes());
        assert_eq!((long_key.error.map(|e| e.code), long_key.csrf.as_str()), (Some("malformed"), "d"));
    }

    #[test]
    fn tokens_and_the_signer() {
        assert!(valid_token("0123456789abcdef0123456789abcdef0123"));
        for bad in ["short", "../../etc/passwd0000", "a b c d e f g h i j", &"a".repeat(129), "0123456789abcdef%00"] {
            assert!(!valid_token(bad), "{bad}");
        }
        let s = Signer::new(vec![7; 32]);
        let c = s.csrf("hash-a");
        assert!(s.csrf_ok("hash-a", &c) && !s.csrf_ok("hash-b", &c) && !s.csrf_ok("hash-a", ""));
        assert!(!Signer::new(vec![8; 32]).csrf_ok("hash-a", &c));
        let l = s.link_token("s1", "f1", "sms");
        assert!(valid_token(&l) && l.len() == 48);
        assert_eq!(l, s.link_token("s1", "f1", "sms"));
        assert_ne!(l, s.link_token("s1", "f1", "wechat"));
        assert_ne!(s.link_token("s1", "f1x", "sms"), s.link_token("s1f", "1x", "sms"));
    }

    #[test]
    fn every_respondent_is_invited_to_review() {
        let t = Strings::new(UiLang::Zh);
        let thanks = message_page(t, "survey-thanks", "一店", None);
        let again = message_page(t, "survey-answered", "一店", Some("https://review.example.com/x"));
        assert!(thanks.review && again.review);
        assert!(!message_page(t, "survey-not-found", "", None).review);
        let html = thanks.render().unwrap();
        assert!(html.contains("id=\"survey-review\""), "{html}");
        assert!(again.render().unwrap().contains("https://review.example.com/x"));
    }

    #[test]
    fn the_form_renders_in_both_languages_with_what_was_sent() {
        let sent = parse_form("csat=2&nps=3&fixed%3Af1=no&comment=%E5%90%B5".as_bytes());
        for lang in [UiLang::Zh, UiLang::En] {
            let t = Strings::new(lang);
            let input = FormInput { t, token: "tok0123456789abcdef", store_name: "一店\u{7}", questions: &qs(), csrf: "c".into() };
            let html = form_page(input, Refill { sent: Some(&sent), error: Some(err("fixed", "fixed_missing")) }).render().unwrap();
            assert!(html.contains("value=\"2\" checked") && html.contains("吵") && html.contains("id=\"survey-error\""), "{html}");
            assert!(!html.contains('\u{7}'));
            assert!(html.contains(if lang == UiLang::Zh { "f1异响" } else { "f1 noise" }));
        }
        assert_eq!(lang_of(None, "en"), UiLang::En);
        assert_eq!(lang_of(Some("zh"), "en"), UiLang::Zh);
        assert_eq!(lang_of(None, "zh-CN"), UiLang::Zh);
        assert_eq!(lang_of(Some("fr"), ""), UiLang::Zh);
    }
}

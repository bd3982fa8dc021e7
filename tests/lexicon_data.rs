//! The lexicon as data must read every labelled utterance exactly as the Rust tables it replaced
//! did: `tests/data/lexicon_golden.jsonl` holds `lexicon::analyse` of every utterance of every set
//! in tests/data/ (findings, loose facts, unsure, problem words), recorded from the code before
//! the words moved to assets/intake/lexicon/. Re-record only for an intended change:
//! `LEXICON_GOLDEN_WRITE=1 <this test binary> golden`, then review the diff.
//! Run with `-- --nocapture` to see the finding F1 per set.

use std::path::{Path, PathBuf};

use servicebay::intake::eval::{evaluate, load_cases};
use servicebay::intake::{extract, lexicon};
use servicebay::llm::NoneTextGen;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// intake_eval.jsonl, then intake_heldout*.jsonl in a fixed (sorted) order.
fn sets() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("intake_") && n.ends_with(".jsonl"))
        .collect();
    names.sort();
    names
}

fn record(set: &str, text: &str) -> serde_json::Value {
    let r = lexicon::analyse(text);
    serde_json::json!({
        "set": set,
        "text": text,
        "findings": r.findings,
        // Debug keeps every field and the f64s exactly.
        "loose": format!("{:?}", r.loose),
        "unsure": r.unsure,
        "has_problem_words": r.has_problem_words,
    })
}

#[test]
fn golden() {
    let _g = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    let mut lines = Vec::new();
    for set in sets() {
        for c in load_cases(&data_dir().join(&set)).unwrap() {
            lines.push(record(&set, &c.text));
        }
    }
    assert!(lines.len() > 1000, "{} utterances", lines.len());
    let golden = data_dir().join("lexicon_golden.jsonl");
    if std::env::var_os("LEXICON_GOLDEN_WRITE").is_some() {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&golden, text).unwrap();
        println!("wrote {} lines to {}", lines.len(), golden.display());
        return;
    }
    let want: Vec<serde_json::Value> =
        std::fs::read_to_string(&golden).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(want.len(), lines.len(), "the golden file and the sets differ in length");
    let mut diffs = 0;
    for (w, got) in want.iter().zip(&lines) {
        if w != got {
            diffs += 1;
            if diffs <= 10 {
                println!("DIFF {}\n  want {w}\n  got  {got}", w["text"]);
            }
        }
    }
    println!("{} utterances, {} differ from the golden file", lines.len(), diffs);
    assert_eq!(diffs, 0, "{diffs} utterances read differently than before");
}

#[test]
fn scores_per_set() {
    for set in sets() {
        let cases = load_cases(&data_dir().join(&set)).unwrap();
        let r = evaluate(&cases, |t| extract(t, &NoneTextGen));
        println!("SCORE {set:28} cases {:4} finding F1 {:.4} part F1 {:.4}", cases.len(), r.slot("finding").f1(), r.slot("part").f1());
    }
}

/// The golden comparison reads with the active lexicon; the swap test changes it.
static ACTIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The builtin files, `file`'s text edited.
fn builtin_with(file: &str, edit: impl Fn(&str) -> String) -> Vec<(&'static str, String)> {
    lexicon::FILES
        .iter()
        .map(|n| {
            let t = lexicon::Lexicon::builtin_text(n).expect("builtin file");
            (*n, if *n == file { edit(t) } else { t.to_string() })
        })
        .collect()
}

fn load(texts: &[(&str, String)]) -> Result<lexicon::Lexicon, lexicon::LexiconError> {
    let refs: Vec<(&str, &str)> = texts.iter().map(|(n, t)| (*n, t.as_str())).collect();
    lexicon::Lexicon::from_texts(&refs)
}

fn keys(text: &str) -> Vec<(String, String)> {
    extract(text, &NoneTextGen).unwrap().findings.iter().map(|f| (f.part.id().to_string(), f.damage_type.id().to_string())).collect()
}

#[test]
fn a_new_word_is_read_after_install_and_a_worse_lexicon_is_refused() {
    let _g = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    let said = "大包围刮花了";
    assert!(!keys(said).contains(&("bumper".into(), "scratch".into())), "{:?}", keys(said));

    // A new slang word for the bumper: passes the gate, installed, read at once.
    let slang = builtin_with("parts.toml", |t| t.replacen("parts = [\n", "parts = [\n    { word = \"大包围\", part = \"bumper\" },\n", 1));
    let lx = load(&slang).unwrap();
    let scores = lexicon::gate::check(&lx).unwrap();
    assert_eq!(scores.len(), 20);
    let builtin = lexicon::install(std::sync::Arc::new(lx));
    assert_eq!(keys(said), vec![("bumper".to_string(), "scratch".to_string())]);

    // The damage words emptied: it loads, but the gate refuses it with its scores.
    let empty = builtin_with("damages.toml", |t| t[..t.find("damages = [").unwrap()].to_string() + "damages = []\n");
    let bad = load(&empty).unwrap();
    let reason = lexicon::gate::check(&bad).unwrap_err();
    assert!(reason.contains("finding F1") && reason.contains("< floor 0.93"), "{reason}");
    // Nothing was installed: the slang word is still read.
    assert_eq!(keys(said), vec![("bumper".to_string(), "scratch".to_string())]);
    lexicon::install(builtin);
    assert!(!keys(said).contains(&("bumper".into(), "scratch".into())));
}

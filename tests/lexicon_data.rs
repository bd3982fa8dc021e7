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


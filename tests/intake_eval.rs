//! Extraction quality on tests/data/intake_eval.jsonl: lexicon only, and lexicon + the real GGUF
//! (model consulted where the lexicon is unsure), and the model on every utterance.
//! Run with `-- --nocapture` to see the tables.
mod common;

use std::path::Path;

use servicebay::intake::eval::{evaluate, load_cases};
use servicebay::intake::{extract, extract_llm_only};
use servicebay::llm::NoneTextGen;

fn cases() -> Vec<servicebay::intake::eval::EvalCase> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/intake_eval.jsonl");
    let c = load_cases(&p).unwrap();
    assert!(c.len() >= 80, "{} cases", c.len());
    c
}

#[test]
fn lexicon_only_and_with_llm() {
    let cases = cases();
    let lex = evaluate(&cases, |t| extract(t, &NoneTextGen));
    println!("{}", lex.table("lexicon only"));
    if std::env::var_os("SHOW_MISSES").is_some() {
        for m in &lex.misses {
            println!("MISS {m}");
        }
    }
    let e = common::engine();
    let both = evaluate(&cases, |t| extract(t, e));
    println!("{}", both.table("lexicon + LLM where unsure"));
    // The model alone costs ~1.3 s per utterance here: only on request.
    if std::env::var_os("EVAL_LLM_ONLY").is_some() {
        let only = evaluate(&cases, |t| extract_llm_only(t, e));
        println!("{}", only.table("LLM alone (few-shot, grammar, no lexicon)"));
    }

    // Floors we actually reach (see the closing note for the measured figures).
    assert!(lex.slot("part").f1() >= 0.85, "part F1 {}", lex.slot("part").f1());
    assert!(lex.slot("damage_type").f1() >= 0.85);
    assert!(lex.slot("finding").f1() >= 0.70);
    assert!(both.slot("part").f1() >= lex.slot("part").f1() - 0.02, "the model must not make parts worse");
    assert!(both.slot("finding").f1() >= 0.70);
}

/// Sets written later by someone who never saw the lexicon (sets 5 on: by `tests/data/LABELING.md`),
/// each measured once before it was used for tuning (the closing notes keep those first figures).
/// These have since been used to tune it: development sets, high floors. Set 19 (voice input
/// without punctuation) and set 21 (customers who do not know the parts' names: "轮子上面的铁皮")
/// are harder and have floors of their own. Set 23 (an advisor's tablet shorthand: "后叶", "前杠、机盖
/// 都有划痕") scored 0.883 on its first measurement.
#[test]
fn development_sets() {
    let sets = ["", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "16", "17", "18", "19", "20", "21", "23"];
    for n in sets {
        let floor = match n {
            "19" => 0.88,
            "21" => 0.75,
            _ => 0.93,
        };
        let file = format!("intake_heldout{n}.jsonl");
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(&file);
        let cases = load_cases(&p).unwrap();
        let lex = evaluate(&cases, |t| extract(t, &NoneTextGen));
        println!("{}", lex.table(&format!("{file} (development) lexicon only")));
        assert!(lex.slot("finding").f1() >= floor, "{file}: finding F1 {}", lex.slot("finding").f1());
    }
}

/// Sets never used to tune anything: the honest estimate of how extraction generalises to a new
/// writer's words. `intake_heldout14/15` (one writer, 160 utterances) and `intake_heldout22/24`
/// (WeChat messages and a self-service tablet with English and mixed lines, two more writers
/// working from LABELING.md only; first scores 0.908 and 0.917). Floors sit below what they reach,
/// not at what we want: the seed asks for 0.9, which the newer pair must keep.
#[test]
fn held_out_set() {
    let e = common::engine();
    for (files, finding_floor) in
        [(["intake_heldout14.jsonl", "intake_heldout15.jsonl"], 0.85), (["intake_heldout22.jsonl", "intake_heldout24.jsonl"], 0.90)]
    {
        let mut cases = Vec::new();
        for file in files {
            cases.extend(load_cases(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(file)).unwrap());
        }
        assert_eq!(cases.len(), 160);
        let name = files.join("+");
        let lex = evaluate(&cases, |t| extract(t, &NoneTextGen));
        println!("{}", lex.table(&format!("HELD-OUT {name} lexicon only")));
        if std::env::var_os("SHOW_MISSES").is_some() {
            for m in &lex.misses {
                println!("HELD-OUT MISS {m}");
            }
        }
        let both = evaluate(&cases, |t| extract(t, e));
        println!("{}", both.table(&format!("HELD-OUT {name} lexicon + LLM where unsure")));
        assert!(lex.slot("part").f1() >= 0.9, "{name}: part F1 {}", lex.slot("part").f1());
        assert!(lex.slot("finding").f1() >= finding_floor, "{name}: finding F1 {}", lex.slot("finding").f1());
        // The details a repair plan is priced from, and the situation a technician reproduces.
        assert!(lex.slot("primer_visible").f1() >= 0.85, "{name}: primer F1 {}", lex.slot("primer_visible").f1());
        assert!(lex.slot("occurs_when").f1() >= 0.70, "{name}: occurs_when F1 {}", lex.slot("occurs_when").f1());
        assert!(both.slot("part").f1() >= lex.slot("part").f1() - 0.03, "{name}: the model must not make parts worse");
    }
}

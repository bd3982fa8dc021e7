//! The llama.cpp engine against the real GGUF: generation, streaming, stop sequences, grammar,
//! KV-prefix reuse, cancellation, timeout, the bounded queue and worker restart.
mod common;

use std::time::Duration;

use servicebay::llm::llama::{LlamaConfig, LlamaEngine};
use servicebay::llm::{CancelToken, ChatMessage, FinishReason, GenParams, LlmError, Sampling, TextGen};

fn msgs(q: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::system("You are a helpful assistant. Answer briefly."), ChatMessage::user(q)]
}

#[test]
fn greedy_is_deterministic_and_streams() {
    let e = common::engine();
    let p = GenParams { max_tokens: 16, ..Default::default() };
    let mut pieces = String::new();
    let mut cb = |s: &str| {
        pieces.push_str(s);
        true
    };
    let a = e.generate(&msgs("What is 2+2?"), &p, Some(&mut cb)).unwrap();
    let b = e.generate(&msgs("What is 2+2?"), &p, None).unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!(pieces, a.text, "streamed pieces must add up to the text");
    assert!(a.text.contains('4'), "{:?}", a.text);
    // The second identical prompt reuses the cached prefix.
    assert!(b.timings.prompt_tokens_reused + 1 >= b.timings.prompt_tokens, "{:?}", b.timings);
}

#[test]
fn grammar_constrains_output() {
    let e = common::engine();
    let p = GenParams { max_tokens: 8, grammar: Some("root ::= \"yes\" | \"no\"".into()), ..Default::default() };
    let c = e.generate(&msgs("Is the sky blue? Answer yes or no."), &p, None).unwrap();
    assert!(c.text == "yes" || c.text == "no", "{:?}", c.text);
    assert_eq!(c.finish, FinishReason::Eos);
    let bad = GenParams { grammar: Some("root ::= (".into()), ..Default::default() };
    assert!(matches!(e.generate(&msgs("x"), &bad, None), Err(LlmError::Grammar(_))));
}

#[test]
fn stop_sequence_and_max_tokens() {
    let e = common::engine();
    let p = GenParams { max_tokens: 40, stop: vec!["3".into()], ..Default::default() };
    let c = e.generate(&msgs("Count from 1 to 10 separated by commas."), &p, None).unwrap();
    assert_eq!(c.finish, FinishReason::Stop, "{:?}", c.text);
    assert!(!c.text.contains('3'));
    let p = GenParams { max_tokens: 3, ..Default::default() };
    let c = e.generate(&msgs("Write a long poem about cars."), &p, None).unwrap();
    assert_eq!(c.finish, FinishReason::MaxTokens);
    assert_eq!(c.timings.generated_tokens, 3);
}

#[test]
fn sampled_generation_with_seed_runs() {
    let e = common::engine();
    let p = GenParams { max_tokens: 8, sampling: Sampling::Temperature { temperature: 0.8, top_p: 0.95, seed: 7 }, ..Default::default() };
    let c = e.generate(&msgs("Say hello."), &p, None).unwrap();
    assert!(!c.text.is_empty());
}

#[test]
fn cancel_from_callback_and_pre_cancelled() {
    let e = common::engine();
    let p = GenParams { max_tokens: 64, ..Default::default() };
    let mut n = 0;
    let mut cb = |_: &str| {
        n += 1;
        n < 2
    };
    let r = e.generate(&msgs("Write a long story about a mechanic."), &p, Some(&mut cb));
    assert!(matches!(r, Err(LlmError::Cancelled)), "{r:?}");
    let tok = CancelToken::new();
    tok.cancel();
    let p = GenParams { cancel: Some(tok), ..Default::default() };
    assert!(matches!(e.generate(&msgs("hi"), &p, None), Err(LlmError::Cancelled)));
}

#[test]
fn timeout_is_reported() {
    let e = common::engine();
    let p = GenParams { max_tokens: 400, timeout: Duration::from_millis(300), ..Default::default() };
    let r = e.generate(&msgs("Write a very long essay about brakes."), &p, None);
    match r {
        Err(err @ LlmError::Timeout(_)) => assert!(err.is_retriable()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_queue_is_busy_and_dead_worker_restarts() {
    // Own engine: queue of one, so a second waiting job is refused.
    let mut cfg = LlamaConfig::new(common::model_path());
    cfg.queue_capacity = 1;
    let e = std::sync::Arc::new(LlamaEngine::load(cfg).unwrap());
    let long = GenParams { max_tokens: 48, ..Default::default() };
    let mut handles = Vec::new();
    for _ in 0..4 {
        let e = e.clone();
        let p = long.clone();
        handles.push(std::thread::spawn(move || e.generate(&msgs("Describe a car in detail."), &p, None)));
        std::thread::sleep(Duration::from_millis(30));
    }
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().any(|r| matches!(r, Err(LlmError::Busy { .. }))), "{results:?}");
    assert!(results.iter().any(|r| r.is_ok()));

    e.crash_worker_for_test();
    let c = e.generate(&msgs("What is 2+2?"), &GenParams { max_tokens: 8, ..Default::default() }, None);
    assert!(c.is_ok(), "{c:?}");
    assert_eq!(e.restarts(), 1);
}

#[test]
fn missing_model_is_a_clear_error() {
    match LlamaEngine::load(LlamaConfig::new("/nonexistent/model.gguf")) {
        Err(LlmError::Load { path, .. }) => assert!(path.contains("nonexistent")),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("loaded a missing file"),
    }
}

#[test]
fn alternating_prompts_keep_their_prefixes() {
    // Own engine: the shared one's cache is churned by the tests running beside this one.
    let e = LlamaEngine::load(LlamaConfig::new(common::model_path())).unwrap();
    let p = GenParams { max_tokens: 4, ..Default::default() };
    let a = vec![ChatMessage::system("You extract car parts from text. Reply with one word."), ChatMessage::user("left door")];
    let b = vec![ChatMessage::system("You rewrite questions politely in Chinese."), ChatMessage::user("How long is the scratch?")];
    e.generate(&a, &p, None).unwrap();
    e.generate(&b, &p, None).unwrap();
    let mut a2 = a.clone();
    a2[1] = ChatMessage::user("right mirror");
    let c = e.generate(&a2, &p, None).unwrap();
    // Only the new user text (a few tokens) is decoded; the system prompt stayed cached.
    let fresh = c.timings.prompt_tokens - c.timings.prompt_tokens_reused;
    assert!(fresh <= 8, "{:?}", c.timings);
}

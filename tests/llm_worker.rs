//! The supervised LLM worker process with the real GGUF: same output as the in-process engine; a
//! worker aborted mid-generation (SIGABRT, what a GGML_ASSERT does) or hung (SIGSTOP) costs the
//! call in flight and a restart, never the caller; a full queue answers Busy at once; and through
//! the daemon, a killed worker leaves the API answering (degraded) until the new one is up, and
//! the worker never outlives a killed daemon.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Daemon;
use reqwest::StatusCode;
use serde_json::json;
use servicebay::llm::worker::{SupervisedEngine, WorkerCommand};
use servicebay::llm::{ChatMessage, EngineState, GenParams, LlmError, TextGen};

/// The tests that load the real model take turns: two llama.cpp workers with 2 threads each on a
/// 2-core box spin against each other, and a 20 s extraction budget is then missed for reasons
/// that have nothing to do with what these tests check.
static MODEL_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn model_turn() -> std::sync::MutexGuard<'static, ()> {
    MODEL_TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn worker_engine() -> SupervisedEngine {
    let cmd = WorkerCommand::of(PathBuf::from(env!("CARGO_BIN_EXE_servicebay")), &common::model_path(), Some(2));
    SupervisedEngine::start(cmd, 2).expect("start worker")
}

fn msgs(q: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::system("You are a helpful assistant. Answer briefly."), ChatMessage::user(q)]
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we started; no memory is shared.
    let r = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig})");
}

fn alive(pid: u32) -> bool {
    // A reaped process is gone from /proc; a zombie would still show, so check its state too.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false)
}

fn wait_ready_again(e: &SupervisedEngine, old_pid: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = e.status();
        if st.state == EngineState::Ready {
            if let Some(p) = st.worker_pid.filter(|p| *p != old_pid) {
                return p;
            }
        }
        assert!(Instant::now() < deadline, "worker did not come back: {st:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn worker_process_survives_abort_and_hang() {
    let _turn = model_turn();
    let e = worker_engine();
    let st = e.status();
    assert_eq!(st.state, EngineState::Ready);
    assert!(st.isolated);
    let pid1 = st.worker_pid.expect("pid");
    assert!(alive(pid1));

    // Same greedy output as the in-process engine on the same file, and the stream adds up.
    let p = GenParams { max_tokens: 24, ..Default::default() };
    let mut streamed = String::new();
    let mut cb = |s: &str| {
        streamed.push_str(s);
        true
    };
    let a = e.generate(&msgs("What is a car bumper for?"), &p, Some(&mut cb)).expect("generate");
    let b = common::engine().generate(&msgs("What is a car bumper for?"), &p, None).expect("in-process");
    assert_eq!(a.text, b.text);
    assert_eq!(streamed, a.text);
    assert!(!a.text.is_empty());

    // 1. Abort mid-generation: the call in flight fails cleanly, a new worker starts.
    let long = GenParams { max_tokens: 400, ..Default::default() };
    let started = std::sync::atomic::AtomicBool::new(false);
    let r = std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let mut cb = |_: &str| {
                started.store(true, std::sync::atomic::Ordering::SeqCst);
                true
            };
            e.generate(&msgs("Write a long story about a mechanic."), &long, Some(&mut cb))
        });
        let t0 = Instant::now();
        while !started.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(t0.elapsed() < Duration::from_secs(30), "no token streamed");
            std::thread::sleep(Duration::from_millis(5));
        }
        signal(pid1, libc::SIGABRT);
        h.join().expect("caller thread")
    });
    assert!(matches!(r, Err(LlmError::WorkerDied(_))), "{r:?}");
    let pid2 = wait_ready_again(&e, pid1);
    assert!(!alive(pid1), "the aborted worker was reaped");
    assert_eq!(e.status().restarts, 1);
    let again = e.generate(&msgs("What is a car bumper for?"), &p, None).expect("after restart");
    assert_eq!(again.text, a.text, "a restarted worker answers the same");

    // 2. Full queue: with the worker frozen, one job runs, two wait, the next is refused at once.
    signal(pid2, libc::SIGSTOP);
    let short = GenParams { max_tokens: 8, timeout: Duration::from_secs(2), ..Default::default() };
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let h = sc.spawn(|| e.generate(&msgs("hi"), &short, None));
                std::thread::sleep(Duration::from_millis(200));
                h
            })
            .collect();
        let t0 = Instant::now();
        let busy = e.generate(&msgs("hi"), &short, None);
        assert!(matches!(busy, Err(LlmError::Busy { .. })), "{busy:?}");
        assert!(t0.elapsed() < Duration::from_millis(500), "Busy must be immediate");

        // 3. Hang: the frozen worker misses its deadline; callers get an error within the
        // deadline + grace, the worker is killed and replaced.
        for h in hs {
            let r = h.join().expect("caller");
            assert!(matches!(r, Err(LlmError::Timeout(_) | LlmError::WorkerDied(_))), "{r:?}");
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "hung worker held callers {:?}", t0.elapsed());
    });
    let pid3 = wait_ready_again(&e, pid2);
    assert!(!alive(pid2), "the hung worker was killed and reaped");
    let st = e.status();
    assert_eq!(st.restarts, 2, "{st:?}");
    assert!(st.last_error.as_deref().unwrap_or("").contains("hung"), "{st:?}");
    e.generate(&msgs("What is a car bumper for?"), &p, None).expect("after hang");

    // Dropping the engine ends the worker.
    drop(e);
    let t0 = Instant::now();
    while alive(pid3) {
        assert!(t0.elapsed() < Duration::from_secs(5), "worker outlived its engine");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn worker_that_cannot_load_is_a_clear_error() {
    let cmd = WorkerCommand::of(PathBuf::from(env!("CARGO_BIN_EXE_servicebay")), std::path::Path::new("/nonexistent/model.gguf"), None);
    match SupervisedEngine::start(cmd, 2) {
        Err(LlmError::Load { reason, .. }) => assert!(reason.contains("not found"), "{reason}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a missing model must not start"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // the guard only orders whole tests; nothing else awaits it
async fn daemon_keeps_answering_while_its_worker_restarts() {
    let _turn = model_turn();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(tmp.path());
    std::fs::write(
        &d.config,
        common::config_text(
            &d.data_dir(),
            &format!("127.0.0.1:{}", d.port),
            &format!("\n[llm]\nenabled = true\nthreads = 2\nmodels_dir = \"{}\"\n", common::models_dir().display()),
        ),
    )
    .unwrap();
    d.start();
    d.wait_ready().await;
    let api = d.api();
    let manager = api.manager().await;
    let (s, st) = api.get("/api/v1/llm/status", &manager).await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["isolated"], true);
    let pid1 = st["worker_pid"].as_u64().expect("pid") as u32;
    let (_, advisor) = api.user(&manager, "li", "advisor").await;
    let (s, st) = api.get("/api/v1/llm/status", &advisor).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "advisors do not see engine internals: {st}");

    let (_, c) = api.post("/api/v1/customers", &advisor, json!({ "name": "赵女士" })).await;
    let (_, k) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": c["id"], "summary": "门有问题" })).await;
    let case = k["id"].as_str().unwrap().to_string();
    let say = |text: &'static str| {
        let (api, advisor, case) = (api.clone(), advisor.clone(), case.clone());
        async move {
            let (s, v) = api.post(&format!("/api/v1/cases/{case}/messages"), &advisor, json!({ "text": text })).await;
            assert_eq!(s, StatusCode::OK, "{text}: {v}");
            v
        }
    };
    // The lexicon is unsure here (no damage word), so the model is consulted.
    let t1 = say("车门有点问题").await;
    assert_eq!(t1["degraded"], false, "{t1}");

    // Kill the worker; the very next message is answered at once, from the lexicon, flagged.
    signal(pid1, libc::SIGKILL);
    let t0 = Instant::now();
    let t2 = say("后视镜也不太对劲").await;
    assert!(t0.elapsed() < Duration::from_secs(5), "answer took {:?}", t0.elapsed());
    assert_eq!(t2["degraded"], true, "{t2}");
    let (_, case_now) = api.get(&format!("/api/v1/cases/{case}"), &advisor).await;
    assert_eq!(case_now["needs_review"], true, "degraded intake goes to a person: {case_now}");
    assert!(d.child.as_mut().unwrap().try_wait().unwrap().is_none(), "the daemon is still running");

    // The supervisor brings a new worker up by itself; the model answers again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid2 = loop {
        let (_, st) = api.get("/api/v1/llm/status", &manager).await;
        if st["state"] == "ready" && st["worker_pid"].as_u64().is_some_and(|p| p as u32 != pid1) {
            assert_eq!(st["restarts"], 1, "{st}");
            break st["worker_pid"].as_u64().unwrap() as u32;
        }
        assert!(Instant::now() < deadline, "worker not restarted: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let t3 = say("车门还是有点问题").await;
    assert_eq!(t3["degraded"], false, "{t3}");
    let metrics = d.client().get(format!("{}/metrics", d.base())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("servicebay_llm_worker_restarts_total 1"), "{metrics}");
    assert!(metrics.contains("servicebay_llm_up 1"), "{metrics}");

    // A daemon killed with SIGKILL takes its worker with it (the worker sees its stdin close).
    d.kill9();
    let t0 = Instant::now();
    while alive(pid2) {
        assert!(t0.elapsed() < Duration::from_secs(5), "worker outlived the daemon");
        std::thread::sleep(Duration::from_millis(20));
    }
}

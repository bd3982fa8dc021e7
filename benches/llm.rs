//! LLM benchmark (harness = false): raw llama.cpp through llama-cpp-2 directly vs our engine vs
//! a full intake turn, same GGUF, same threads, in one run. Prints a markdown table.
//!
//! `SERVICEBAY_MODELS=/path/to/models cargo bench --bench llm` (threads: `BENCH_THREADS`,
//! default = available cores; repetitions: `BENCH_REPS`, default 3).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use llama_cpp_2::sampling::LlamaSampler;
use servicebay::intake::policy::{turn, IntakeContext, IntakeState, Policy};
use servicebay::intake::{extraction_grammar, extraction_prefix, llm_extract};
use servicebay::llm::llama::{backend, LlamaConfig, LlamaEngine};
use servicebay::llm::prompts::Templates;
use servicebay::llm::worker::{SupervisedEngine, WorkerCommand};
use servicebay::llm::{ChatMessage, GenParams, TextGen};

const GEN: usize = 64;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn prompt_messages(i: usize) -> Vec<ChatMessage> {
    // A unique first line per repetition, so neither path can reuse a cached prefix.
    vec![
        ChatMessage::system(format!(
            "Run {i}. You are a service advisor at a car dealership. Customers describe problems with their cars: scratches, dents, noises, warning lights. \
Answer politely and concisely, ask one question at a time, never quote prices that are not in the repair plan, and suggest bringing the car in when unsure."
        )),
        ChatMessage::user("Describe in detail how a dealership repairs a deep scratch on a car door, step by step."),
    ]
}

struct Row {
    prompt_tps: f64,
    gen_tps: f64,
    ttft_ms: f64,
}

/// One repetition on the raw path: clear cache, decode the prompt, greedy-generate GEN tokens.
fn raw_once(model: &LlamaModel, ctx: &mut llama_cpp_2::context::LlamaContext<'_>, prompt: &str) -> (f64, f64, f64) {
    ctx.clear_kv_cache();
    let toks = model.vocab().tokenize(prompt.as_bytes(), false, true);
    let mut batch = LlamaBatch::new(512, 1);
    for (i, t) in toks.iter().enumerate() {
        batch.add(*t, i as i32, &[0], i + 1 == toks.len()).expect("batch");
    }
    let t0 = Instant::now();
    ctx.decode(&mut batch).expect("decode");
    let pt = t0.elapsed().as_secs_f64();
    let mut last = batch.n_tokens() - 1;
    let mut pos = toks.len() as i32;
    let g0 = Instant::now();
    let mut first = 0.0;
    for k in 0..GEN {
        let logits = ctx.get_logits_ith(last);
        let mut best = 0;
        let mut bv = f32::NEG_INFINITY;
        for (j, v) in logits.iter().enumerate() {
            if *v > bv {
                bv = *v;
                best = j;
            }
        }
        let tok = LlamaToken(best as i32);
        if k == 0 {
            first = t0.elapsed().as_secs_f64();
        }
        let _piece = model.vocab().token_to_piece(tok, false, None);
        batch.clear();
        batch.add(tok, pos, &[0], true).expect("batch");
        ctx.decode(&mut batch).expect("decode");
        pos += 1;
        last = 0;
    }
    (toks.len() as f64 / pt, GEN as f64 / g0.elapsed().as_secs_f64(), first * 1000.0)
}

/// One repetition on our engine (fresh prompt, so nothing is reused from the cache).
fn ours_once(e: &dyn TextGen, i: usize) -> (f64, f64, f64) {
    let p = GenParams { max_tokens: GEN as u32, ..Default::default() };
    let t0 = Instant::now();
    let mut first: Option<f64> = None;
    let mut cb = |_: &str| {
        first.get_or_insert(t0.elapsed().as_secs_f64() * 1000.0);
        true
    };
    let c = e.generate(&prompt_messages(i), &p, Some(&mut cb)).expect("generate");
    let t = &c.timings;
    // Caller-side first token: the first streamed piece as the API would see it.
    (
        (t.prompt_tokens - t.prompt_tokens_reused) as f64 / (t.prompt_ms / 1000.0),
        t.generated_tokens as f64 / (t.gen_ms / 1000.0),
        first.unwrap_or(f64::NAN),
    )
}

/// Grammar-constrained greedy decoding the plain way: the grammar filters the whole vocabulary
/// at every token. Returns (ms per generated token, text).
fn raw_grammar(model: &LlamaModel, ctx: &mut llama_cpp_2::context::LlamaContext<'_>, prompt: &str, grammar: &str) -> (f64, String) {
    ctx.clear_kv_cache();
    let toks = model.vocab().tokenize(prompt.as_bytes(), false, true);
    let mut batch = LlamaBatch::new(512, 1);
    for (i, t) in toks.iter().enumerate() {
        batch.add(*t, i as i32, &[0], i + 1 == toks.len()).expect("batch");
    }
    ctx.decode(&mut batch).expect("decode");
    let mut g = LlamaSampler::grammar(model, grammar, "root").expect("grammar");
    let mut last = batch.n_tokens() - 1;
    let mut pos = toks.len() as i32;
    let mut out = Vec::new();
    let g0 = Instant::now();
    let mut n = 0;
    for _ in 0..48 {
        let mut arr = ctx.token_data_array_ith(last);
        arr.apply_sampler(&mut g);
        let Some(best) = arr.data.iter().filter(|d| d.logit().is_finite()).max_by(|a, b| a.logit().total_cmp(&b.logit())) else { break };
        let tok = best.id();
        n += 1;
        if model.vocab().is_eog(tok) {
            break;
        }
        g.accept(tok);
        out.extend(model.vocab().token_to_piece(tok, false, None));
        batch.clear();
        batch.add(tok, pos, &[0], true).expect("batch");
        ctx.decode(&mut batch).expect("decode");
        pos += 1;
        last = 0;
    }
    (g0.elapsed().as_secs_f64() * 1000.0 / n.max(1) as f64, String::from_utf8_lossy(&out).into_owned())
}

fn raw_context<'m>(
    be: &'static llama_cpp_2::llama_backend::LlamaBackend,
    model: &'m LlamaModel,
    threads: i32,
) -> llama_cpp_2::context::LlamaContext<'m> {
    let cp = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(2048))
        .with_n_batch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    model.new_context(be, cp).expect("context")
}

/// The raw path alone in a process of its own (this benchmark binary, re-run), as the worker
/// process runs alone: the fair reference for the daemon's path.
fn raw_own_process(prompt: &str, threads: i32) -> (f64, f64, f64) {
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env("BENCH_RAW_CHILD", "1")
        .env("BENCH_RAW_PROMPT", prompt)
        .env("BENCH_THREADS", threads.to_string())
        .output()
        .expect("raw child");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    assert_eq!(v.len(), 3, "raw child printed {text:?} / {}", String::from_utf8_lossy(&out.stderr));
    (v[0], v[1], v[2])
}

fn main() {
    let dir = std::env::var_os("SERVICEBAY_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    let path = dir.join(servicebay::llm::DEFAULT_MODEL_FILE);
    let threads: i32 = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(2));
    if let (Some(_), Ok(prompt)) = (std::env::var_os("BENCH_RAW_CHILD"), std::env::var("BENCH_RAW_PROMPT")) {
        let be = backend().expect("backend");
        let model = LlamaModel::load_from_file(be, &path, &LlamaModelParams::default()).expect("load");
        let mut ctx = raw_context(be, &model, threads);
        let (a, b, c) = raw_once(&model, &mut ctx, &prompt);
        println!("{a} {b} {c}");
        return;
    }
    let reps: usize = std::env::var("BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut cfg = LlamaConfig::new(&path);
    cfg.n_threads = Some(threads);
    let t_load = Instant::now();
    let engine = LlamaEngine::load(cfg).expect("load engine");
    let load_ms = t_load.elapsed().as_secs_f64() * 1000.0;
    let prompts: Vec<String> = (0..reps).map(|i| engine.render(&prompt_messages(1000 + i)).expect("render")).collect();
    let n_prompt = engine.count_tokens(&prompts[0]);

    // Raw and ours alternate per repetition, so machine load (shared CPU) hits both alike.
    let be = backend().expect("backend");
    let raw_model = LlamaModel::load_from_file(be, &path, &LlamaModelParams::default()).expect("load");
    let mut raw_ctx = raw_context(be, &raw_model, threads);
    // What the daemon runs: the same engine in a supervised `servicebay llm-worker` process.
    let wcmd = WorkerCommand::of(PathBuf::from(env!("CARGO_BIN_EXE_servicebay")), &path, Some(threads));
    let worker = SupervisedEngine::start(wcmd, 4).expect("start worker");
    let (mut rv, mut ov, mut wv, mut pv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..reps {
        // Rotate the order every repetition so no path always runs first.
        let mut order: Vec<u8> = vec![0, 1, 2, 3];
        order.rotate_left(i % 4);
        for k in order {
            match k {
                0 => rv.push(raw_once(&raw_model, &mut raw_ctx, &prompts[i])),
                1 => ov.push(ours_once(&engine, 2000 + i)),
                2 => wv.push(ours_once(&worker, 3000 + i)),
                _ => pv.push(raw_own_process(&prompts[i], threads)),
            }
        }
    }
    let row = |v: &Vec<(f64, f64, f64)>| Row {
        prompt_tps: median(v.iter().map(|x| x.0).collect()),
        gen_tps: median(v.iter().map(|x| x.1).collect()),
        ttft_ms: median(v.iter().map(|x| x.2).collect()),
    };
    // Grammar-constrained extraction: full-vocabulary grammar every token (raw) vs our
    // "check the proposal first" sampler, same prompt, greedy: outputs must be identical.
    let grammar = extraction_grammar();
    let mut gram_rows = Vec::new();
    for text in ["我的车右前门有刮痕，还有异响", "左边大灯裂了，好像进水了", "空调开了半天还是热风"] {
        let mut m = extraction_prefix();
        m.push(ChatMessage::user(text));
        let prompt = engine.render(&m).expect("render");
        let (raw_ms, raw_text) = raw_grammar(&raw_model, &mut raw_ctx, &prompt, &grammar);
        let p = GenParams { max_tokens: 48, grammar: Some(grammar.clone()), ..Default::default() };
        let c = engine.generate(&m, &p, None).expect("generate");
        // +1: the raw loop counts the end-of-generation token it sampled, as we do in gen_ms.
        let ours_ms = c.timings.gen_ms / (c.timings.generated_tokens + 1) as f64;
        gram_rows.push((text, raw_ms, ours_ms, raw_text == c.text, c.text.clone()));
    }
    let (r, o, w, rp) = (row(&rv), row(&ov), row(&wv), row(&pv));
    drop(worker);
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        for (((a, b), c), d) in rv.iter().zip(&ov).zip(&pv).zip(&wv) {
            eprintln!(
                "rep raw {:.1}/{:.1}/{:.0}  ours {:.1}/{:.1}/{:.0}  raw-proc {:.1}/{:.1}/{:.0}  worker {:.1}/{:.1}/{:.0}",
                a.0, a.1, a.2, b.0, b.1, b.2, c.0, c.1, c.2, d.0, d.1, d.2
            );
        }
    }
    drop(raw_ctx);

    // First token when the system prompt is already cached (the normal case for a chat turn).
    let mut warm_ttft = Vec::new();
    let mut warm_new = 0;
    for i in 0..reps {
        let mut m = prompt_messages(2000);
        m[1] = ChatMessage::user(format!("Customer {i}: my left mirror is cracked, what now?"));
        let t0 = Instant::now();
        let mut first: Option<f64> = None;
        let mut cb = |_: &str| {
            first.get_or_insert(t0.elapsed().as_secs_f64() * 1000.0);
            true
        };
        let c = engine.generate(&m, &GenParams { max_tokens: 8, ..Default::default() }, Some(&mut cb)).expect("generate");
        warm_new = c.timings.prompt_tokens - c.timings.prompt_tokens_reused;
        warm_ttft.push(first.unwrap_or(f64::NAN));
    }

    // Extraction call alone (few-shot prefix cached after the first call).
    let _ = llm_extract("我的车右前门有刮痕，还有异响", &engine);
    let texts =
        ["左边大灯裂了，好像进水了", "倒车的时候后杠蹭到柱子了", "空调开了半天还是热风", "天窗漏水", "Engine makes a ticking noise"];
    let mut ex_ms = Vec::new();
    for t in texts {
        let t0 = Instant::now();
        let _ = llm_extract(t, &engine);
        ex_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
    }

    // Full intake turns: the seed's messages, with and without the model's rephrasing.
    let tpl = Templates::builtin();
    let pol = Policy::builtin();
    let mut turn_ms = Vec::new();
    let mut turn_plain_ms = Vec::new();
    let msgs = ["我的车右前门有刮痕，还有异响", "大概30公分，露出白色底漆了", "开关门的时候"];
    for phrasing in [true, false] {
        let ctx = IntakeContext { engine: &engine, templates: &tpl, policy: &pol, llm_phrasing: phrasing };
        for _ in 0..reps {
            let mut st = IntakeState::default();
            for m in msgs {
                let t0 = Instant::now();
                let out = turn(&ctx, &st, m).expect("turn");
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                if phrasing {
                    turn_ms.push(ms)
                } else {
                    turn_plain_ms.push(ms)
                }
                st = out.state;
            }
        }
    }

    let dev = if cfg!(feature = "cuda") { "CUDA" } else { "CPU" };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nLLM benchmark: {} ({dev}, {threads} threads, model load {load_ms:.0} ms, prompt {n_prompt} tokens, {GEN} generated, median of {reps}, loadavg {})\n", path.display(), load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    println!("| path | prompt tok/s | gen tok/s | first token (ms) |");
    println!("|---|---:|---:|---:|");
    println!("| raw llama-cpp-2 | {:.1} | {:.1} | {:.0} |", r.prompt_tps, r.gen_tps, r.ttft_ms);
    println!("| our engine (queue + stream) | {:.1} | {:.1} | {:.0} |", o.prompt_tps, o.gen_tps, o.ttft_ms);
    println!("| ratio ours/raw | {:.2} | {:.2} | {:.2} |", o.prompt_tps / r.prompt_tps, o.gen_tps / r.gen_tps, o.ttft_ms / r.ttft_ms);
    println!("| raw llama-cpp-2, alone in its own process | {:.1} | {:.1} | {:.0} |", rp.prompt_tps, rp.gen_tps, rp.ttft_ms);
    println!("| our engine in the worker process (the daemon's path) | {:.1} | {:.1} | {:.0} |", w.prompt_tps, w.gen_tps, w.ttft_ms);
    println!(
        "| ratio worker/raw own process | {:.2} | {:.2} | {:.2} |",
        w.prompt_tps / rp.prompt_tps,
        w.gen_tps / rp.gen_tps,
        w.ttft_ms / rp.ttft_ms
    );
    println!("| our engine, system prompt cached ({warm_new} new tokens) | | | {:.0} |", median(warm_ttft));
    println!();
    println!("| grammar-constrained extraction | raw: grammar on full vocab (ms/token) | ours: proposal checked first (ms/token) | same output | output |");
    println!("|---|---:|---:|---|---|");
    for (t, a, b, same, out) in &gram_rows {
        println!("| {t} | {a:.1} | {b:.1} | {same} | `{out}` |");
    }
    println!();
    println!("| intake path | median ms | max ms |");
    println!("|---|---:|---:|");
    let mx = |v: &Vec<f64>| v.iter().cloned().fold(f64::NAN, f64::max);
    println!("| LLM extraction call (cached few-shot prefix, grammar) | {:.0} | {:.0} |", median(ex_ms.clone()), mx(&ex_ms));
    println!("| full intake turn, template questions | {:.0} | {:.0} |", median(turn_plain_ms.clone()), mx(&turn_plain_ms));
    println!("| full intake turn, model rephrases the question | {:.0} | {:.0} |", median(turn_ms.clone()), mx(&turn_ms));
}

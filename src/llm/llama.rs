//! The local engine: llama.cpp through llama-cpp-2.
//!
//! Owns the process-wide llama.cpp backend, the memory-mapped model (loaded once, shared), and
//! one worker thread that owns the `LlamaContext` (not `Send`, so it never leaves that thread).
//! Callers hand jobs over a bounded channel (full → `LlmError::Busy`), and receive streamed
//! pieces and the result over a per-call channel. If the worker dies (a panic inside it), the
//! call in flight gets `WorkerDied` and the next call starts a fresh worker.
//!
//! KV-cache reuse: the worker keeps up to `CACHE_SEQS` prompts in one unified KV cache (one
//! llama.cpp sequence each) and remembers their tokens. A new prompt runs in the sequence with
//! the longest common prefix, and only the tail after that prefix is removed and decoded.
//! Prompts that share a fixed system prompt + few-shot prefix therefore pay only for the new
//! user turn, even when extraction, question phrasing and plan explanation alternate.
//!
//! Grammar sampling uses the "check the proposal first" trick: the unconstrained choice is
//! tested against the grammar alone (one candidate), and only when it is rejected is the grammar
//! applied to the whole vocabulary (~150k candidates, 30+ ms on this machine).
//!
//! A llama.cpp `abort()` (GGML_ASSERT) kills the whole process; the daemon therefore runs this
//! engine inside a supervised worker process (`super::worker`).

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use super::{CancelToken, ChatMessage, Completion, FinishReason, GenParams, GenTimings, LlmError, Sampling, TextGen};

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The process-wide llama.cpp backend. llama.cpp may be initialised only once per process,
/// so everything (our engine, the benchmark's raw path) goes through here.
pub fn backend() -> Result<&'static LlamaBackend, LlmError> {
    let b = BACKEND.get_or_init(|| {
        LlamaBackend::init()
            .map(|mut b| {
                // llama.cpp logs every tensor at load; keep stderr for our own tracing unless asked.
                if std::env::var_os("SERVICEBAY_LLAMA_LOG").is_none() {
                    b.void_logs();
                }
                b
            })
            .map_err(|e| e.to_string())
    });
    b.as_ref().map_err(|e| LlmError::Backend(format!("backend init: {e}")))
}

/// Engine settings; `Default` is right for the 0.5B model on a small CPU box.
#[derive(Debug, Clone)]
pub struct LlamaConfig {
    pub model_path: PathBuf,
    /// CPU threads for prompt and generation; `None` = available cores.
    pub n_threads: Option<i32>,
    pub n_ctx: u32,
    pub n_batch: u32,
    /// Layers offloaded to the GPU (only meaningful with the `cuda` feature).
    pub n_gpu_layers: u32,
    /// Jobs that may wait for the worker; one more is then answered `Busy`.
    pub queue_capacity: usize,
}

impl LlamaConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            n_threads: None,
            n_ctx: 2048,
            n_batch: 512,
            n_gpu_layers: if cfg!(feature = "cuda") { 999 } else { 0 },
            queue_capacity: 4,
        }
    }

    fn threads(&self) -> i32 {
        self.n_threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(2))
    }
}

enum Job {
    Generate(GenJob),
    /// Test hook: makes the worker panic, to prove the restart path.
    Panic,
}

struct GenJob {
    prompt: String,
    params: GenParams,
    /// Set by the caller on timeout or when the stream callback says stop.
    cancel: CancelToken,
    deadline: Instant,
    enqueued: Instant,
    events: mpsc::Sender<Event>,
}

pub(super) enum Event {
    Piece(String),
    Done(Result<Completion, LlmError>),
}

struct Worker {
    tx: SyncSender<Job>,
    handle: JoinHandle<()>,
}

pub struct LlamaEngine {
    name: String,
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    cfg: LlamaConfig,
    worker: Mutex<Option<Worker>>,
    restarts: std::sync::atomic::AtomicU32,
}

impl LlamaEngine {
    /// Loads the model (mmap) and starts the worker. Fails when the file is missing or unusable.
    pub fn load(cfg: LlamaConfig) -> Result<Self, LlmError> {
        let backend = backend()?;
        let path_s = cfg.model_path.display().to_string();
        if !cfg.model_path.is_file() {
            return Err(LlmError::Load { path: path_s, reason: "file not found".into() });
        }
        let mparams = LlamaModelParams::default().with_use_mmap(true).with_n_gpu_layers(cfg.n_gpu_layers);
        let model = LlamaModel::load_from_file(backend, &cfg.model_path, &mparams)
            .map_err(|e| LlmError::Load { path: path_s.clone(), reason: e.to_string() })?;
        let template = pick_template(&model);
        let stem = cfg.model_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        let engine = Self {
            name: format!("llama.cpp:{stem}"),
            model: Arc::new(model),
            template,
            cfg,
            worker: Mutex::new(None),
            restarts: std::sync::atomic::AtomicU32::new(0),
        };
        // Start the worker now so a broken context (e.g. out of memory) shows at start-up.
        let w = engine.spawn_worker()?;
        if let Ok(mut g) = engine.worker.lock() {
            *g = Some(w);
        }
        Ok(engine)
    }

    /// Loads `DEFAULT_MODEL_FILE` from `dir`.
    pub fn load_default(dir: &Path) -> Result<Self, LlmError> {
        Self::load(LlamaConfig::new(dir.join(super::DEFAULT_MODEL_FILE)))
    }

    /// How many times the worker was restarted after dying.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The templated prompt for `messages` (what the model actually sees).
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        render_chat(&self.model, &self.template, messages)
    }

    /// Number of tokens `text` takes (special tokens parsed).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.model.vocab().tokenize(text.as_bytes(), false, true).len()
    }

    #[doc(hidden)]
    /// Test hook: kills the worker thread with a panic and returns once it has died (so the next
    /// call deterministically exercises the restart, however slow the panic's backtrace is).
    pub fn crash_worker_for_test(&self) {
        if let Ok(g) = self.worker.lock() {
            if let Some(w) = g.as_ref() {
                let _ = w.tx.try_send(Job::Panic);
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let dead = self.worker.lock().map(|g| g.as_ref().is_none_or(|w| w.handle.is_finished())).unwrap_or(true);
            if dead {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn spawn_worker(&self) -> Result<Worker, LlmError> {
        let (tx, rx) = mpsc::sync_channel::<Job>(self.cfg.queue_capacity.max(1));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), LlmError>>();
        let model = Arc::clone(&self.model);
        let cfg = self.cfg.clone();
        let handle = std::thread::Builder::new()
            .name("llm-worker".into())
            .spawn(move || worker_main(model, cfg, rx, ready_tx))
            .map_err(|e| LlmError::Backend(format!("cannot spawn worker thread: {e}")))?;
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => Ok(Worker { tx, handle }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LlmError::WorkerDied("worker did not start".into())),
        }
    }

    /// Queues a job, restarting a dead worker first.
    fn submit(&self, job: Job) -> Result<(), LlmError> {
        let mut guard = self.worker.lock().map_err(|_| LlmError::WorkerDied("worker handle poisoned".into()))?;
        let dead = guard.as_ref().map(|w| w.handle.is_finished()).unwrap_or(true);
        if dead {
            if guard.is_some() {
                self.restarts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tracing::warn!("llm worker died; restarting it");
            }
            *guard = None;
            *guard = Some(self.spawn_worker()?);
        }
        let w = guard.as_ref().ok_or_else(|| LlmError::WorkerDied("no worker".into()))?;
        match w.tx.try_send(job) {
            Ok(()) => Ok(()),
            // Retry-After: one short turn on this machine takes ~1-2 s per queued job.
            Err(TrySendError::Full(_)) => Err(LlmError::Busy { retry_after_s: 2 * self.cfg.queue_capacity as u64 }),
            Err(TrySendError::Disconnected(_)) => {
                *guard = None;
                Err(LlmError::WorkerDied("worker channel closed".into()))
            }
        }
    }
}

impl TextGen for LlamaEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_available(&self) -> bool {
        true
    }

    fn status(&self) -> super::EngineStatus {
        super::EngineStatus {
            name: self.name.clone(),
            state: super::EngineState::Ready,
            isolated: false,
            worker_pid: None,
            restarts: u64::from(self.restarts()),
            last_error: None,
        }
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenParams,
        mut on_token: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Completion, LlmError> {
        let prompt = self.render(messages)?;
        let now = Instant::now();
        let deadline = now + params.timeout;
        let cancel = CancelToken::new();
        let (ev_tx, ev_rx) = mpsc::channel();
        self.submit(Job::Generate(GenJob {
            prompt,
            params: params.clone(),
            cancel: cancel.clone(),
            deadline,
            enqueued: now,
            events: ev_tx,
        }))?;
        wait_for(&ev_rx, &cancel, params, deadline, &mut on_token)
    }
}

/// Caller side of a job: forwards pieces to the callback, enforces the deadline even when the
/// worker hangs inside llama.cpp (we then stop waiting; the worker notices the flag later).
pub(super) fn wait_for(
    ev_rx: &Receiver<Event>,
    cancel: &CancelToken,
    params: &GenParams,
    deadline: Instant,
    on_token: &mut Option<&mut dyn FnMut(&str) -> bool>,
) -> Result<Completion, LlmError> {
    // Grace after the deadline: the worker checks it once per token and answers by itself.
    let hard = deadline + Duration::from_millis(500);
    loop {
        let left = hard.saturating_duration_since(Instant::now());
        match ev_rx.recv_timeout(left) {
            Ok(Event::Piece(p)) => {
                if let Some(cb) = on_token.as_mut() {
                    if !cb(&p) {
                        cancel.cancel();
                    }
                }
            }
            Ok(Event::Done(r)) => return r,
            Err(RecvTimeoutError::Timeout) => {
                cancel.cancel();
                return Err(LlmError::Timeout(params.timeout));
            }
            Err(RecvTimeoutError::Disconnected) => return Err(LlmError::WorkerDied("worker stopped during the call".into())),
        }
    }
}

/// The GGUF's own template when llama.cpp understands it, else ChatML (Qwen's format).
fn pick_template(model: &LlamaModel) -> LlamaChatTemplate {
    let probe = [ChatMessage::system("s"), ChatMessage::user("u")];
    if let Ok(t) = model.chat_template(None) {
        if render_chat(model, &t, &probe).is_ok() {
            return t;
        }
        tracing::warn!("GGUF chat template not understood by llama.cpp; using ChatML");
    }
    // "chatml" is a name llama.cpp always knows; NUL-free, so this cannot fail in practice.
    LlamaChatTemplate::new("chatml").unwrap_or_else(|_| unreachable_template())
}

fn unreachable_template() -> LlamaChatTemplate {
    // Only reached if the literal "chatml" contained a NUL byte, which it does not.
    LlamaChatTemplate::new("chatml").unwrap_or_else(|_| std::process::abort())
}

fn render_chat(model: &LlamaModel, t: &LlamaChatTemplate, messages: &[ChatMessage]) -> Result<String, LlmError> {
    let msgs = messages
        .iter()
        .map(|m| {
            // Customer text with NUL bytes would be rejected by the C API: drop them.
            let content = m.content.replace('\0', "");
            LlamaChatMessage::new(m.role.as_str().to_string(), content).map_err(|e| LlmError::Backend(format!("chat message: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    model.apply_chat_template(t, &msgs, true).map_err(|e| LlmError::Backend(format!("chat template: {e}")))
}

fn worker_main(model: Arc<LlamaModel>, cfg: LlamaConfig, rx: Receiver<Job>, ready: mpsc::Sender<Result<(), LlmError>>) {
    let backend = match backend() {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let threads = cfg.threads();
    let cparams = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(cfg.n_ctx))
        .with_n_batch(cfg.n_batch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        // Several cached prompt prefixes (extraction few-shot, question phrasing, plan
        // explanation) share one KV cache of n_ctx cells.
        .with_n_seq_max(CACHE_SEQS as u32)
        .with_kv_unified(true);
    let mut ctx = match model.new_context(backend, cparams) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(LlmError::Backend(format!("context: {e}"))));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut state = SeqState {
        seqs: vec![Vec::new(); CACHE_SEQS],
        used: vec![0; CACHE_SEQS],
        clock: 0,
        cur: 0,
        batch: LlamaBatch::new(cfg.n_batch as usize, 1),
    };
    while let Ok(job) = rx.recv() {
        match job {
            Job::Panic => panic!("llm worker: panic requested by test hook"),
            Job::Generate(job) => {
                let picked = Instant::now();
                let r = run_job(&model, &mut ctx, &mut state, &job, picked, cfg.n_batch as usize);
                if r.is_err() {
                    // The KV cache may be half-written: forget it rather than trust it.
                    ctx.clear_kv_cache();
                    state.seqs.iter_mut().for_each(Vec::clear);
                }
                let _ = job.events.send(Event::Done(r));
            }
        }
    }
}

/// Prompt prefixes kept in the KV cache at once, one llama.cpp sequence each.
const CACHE_SEQS: usize = 4;

/// Fewer shared tokens than this is the chat template's header, not a prompt worth continuing.
const MIN_SHARED: usize = 16;

/// What the worker knows about its KV cache: the tokens held by each sequence.
struct SeqState<'b> {
    seqs: Vec<Vec<LlamaToken>>,
    /// Logical clock of each sequence's last use, for least-recently-used eviction.
    used: Vec<u64>,
    clock: u64,
    /// The sequence the current job runs in.
    cur: usize,
    batch: LlamaBatch<'b>,
}

impl SeqState<'_> {
    /// The sequence sharing the longest prefix with `tokens` (ties and misses: least recently used).
    fn pick(&self, tokens: &[LlamaToken]) -> (usize, usize) {
        let mut best = (0usize, 0usize, u64::MAX);
        for (i, s) in self.seqs.iter().enumerate() {
            let lcp = s.iter().zip(tokens).take_while(|(a, b)| a == b).count();
            if lcp > best.1 || (lcp == best.1 && self.used[i] < best.2) {
                best = (i, lcp, self.used[i]);
            }
        }
        if best.1 >= MIN_SHARED {
            return (best.0, best.1);
        }
        // Sharing only the chat template's first tokens: overwriting that sequence would throw
        // a useful prefix away; take the least recently used sequence instead.
        let lru = (0..self.seqs.len()).min_by_key(|&i| self.used[i]).unwrap_or(0);
        let lcp = self.seqs[lru].iter().zip(tokens).take_while(|(a, b)| a == b).count();
        (lru, lcp)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run_job(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    st: &mut SeqState<'_>,
    job: &GenJob,
    picked: Instant,
    n_batch: usize,
) -> Result<Completion, LlmError> {
    let p = &job.params;
    let mut t = GenTimings { queue_ms: ms(picked - job.enqueued), ..Default::default() };
    let check = |cancel_user: &Option<CancelToken>| -> Result<(), LlmError> {
        if job.cancel.is_cancelled() || cancel_user.as_ref().map(|c| c.is_cancelled()).unwrap_or(false) {
            return Err(LlmError::Cancelled);
        }
        if Instant::now() > job.deadline {
            return Err(LlmError::Timeout(p.timeout));
        }
        Ok(())
    };
    check(&p.cancel)?;

    let vocab = model.vocab();
    let tokens = vocab.tokenize(job.prompt.as_bytes(), vocab.should_add_bos(), true);
    let n_ctx = ctx.n_ctx();
    if tokens.is_empty() || tokens.len() + 1 >= n_ctx as usize {
        return Err(LlmError::PromptTooLong { tokens: tokens.len(), n_ctx });
    }
    let max_new = (p.max_tokens as usize).min(n_ctx as usize - tokens.len() - 1);
    t.prompt_tokens = tokens.len();

    // Reuse the longest cached prefix; always re-decode at least the last prompt token so its
    // logits exist.
    let (seq, lcp) = st.pick(&tokens);
    st.cur = seq;
    st.clock += 1;
    st.used[seq] = st.clock;
    let mut keep = lcp.min(tokens.len() - 1);
    let removed = ctx.clear_kv_cache_seq(Some(seq as u32), Some(keep as u32), None).map_err(|e| LlmError::Backend(e.to_string()))?;
    if !removed {
        ctx.clear_kv_cache();
        st.seqs.iter_mut().for_each(Vec::clear);
        keep = 0;
    }
    st.seqs[seq].truncate(keep);
    // Make room: the sequences share n_ctx cells; drop the least recently used others first.
    let need = tokens.len() - keep + max_new;
    loop {
        let held: usize = st.seqs.iter().map(Vec::len).sum();
        if held + need <= n_ctx as usize {
            break;
        }
        let victim = (0..st.seqs.len()).filter(|&i| i != seq && !st.seqs[i].is_empty()).min_by_key(|&i| st.used[i]);
        let Some(v) = victim else { break };
        ctx.clear_kv_cache_seq(Some(v as u32), None, None).map_err(|e| LlmError::Backend(e.to_string()))?;
        st.seqs[v].clear();
    }
    t.prompt_tokens_reused = keep;

    let t0 = Instant::now();
    let mut last_idx = 0i32;
    for chunk in tokens[keep..].chunks(n_batch.max(1)) {
        check(&p.cancel)?;
        st.batch.clear();
        let start = st.seqs[seq].len();
        let is_final_chunk = start + chunk.len() == tokens.len();
        for (i, tok) in chunk.iter().enumerate() {
            let logits = is_final_chunk && i + 1 == chunk.len();
            st.batch.add(*tok, (start + i) as i32, &[seq as i32], logits).map_err(|e| LlmError::Backend(e.to_string()))?;
        }
        ctx.decode(&mut st.batch).map_err(|e| LlmError::Backend(format!("decode: {e}")))?;
        st.seqs[seq].extend_from_slice(chunk);
        last_idx = st.batch.n_tokens() - 1;
    }
    t.prompt_ms = ms(t0.elapsed());

    let mut grammar = match &p.grammar {
        Some(g) => Some(LlamaSampler::grammar(model, g, "root").map_err(|e| LlmError::Grammar(e.to_string()))?),
        None => None,
    };
    let mut chain = match p.sampling {
        Sampling::Greedy => None,
        Sampling::Temperature { temperature, top_p, seed } => Some(LlamaSampler::chain_simple([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(top_p, 1),
            LlamaSampler::temp(temperature),
            LlamaSampler::dist(seed),
        ])),
    };

    let max_stop = p.stop.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut bytes: Vec<u8> = Vec::new(); // raw bytes, may end inside a UTF-8 character
    let mut emitted = 0usize; // bytes of `bytes` already streamed
    let mut finish = FinishReason::MaxTokens;
    let g0 = Instant::now();
    let mut n_gen = 0usize;
    while n_gen < max_new {
        check(&p.cancel)?;
        let picked_tok = select_token(ctx, last_idx, grammar.as_mut(), chain.as_mut());
        if n_gen == 0 {
            // Measured from the call's submission, so queue wait counts against it.
            t.first_token_ms = ms(job.enqueued.elapsed());
        }
        // `None`: the grammar allows nothing more; treat as the end of the output.
        let Some(tok) = picked_tok.filter(|t| !vocab.is_eog(*t)) else {
            finish = FinishReason::Eos;
            break;
        };
        if let Some(g) = grammar.as_mut() {
            g.accept(tok);
        }
        if let Some(c) = chain.as_mut() {
            c.accept(tok);
        }
        n_gen += 1;
        bytes.extend_from_slice(&vocab.token_to_piece(tok, false, None));

        // Stop sequences are checked on the valid UTF-8 prefix.
        let valid = valid_prefix(&bytes);
        if let Some(cut) = p.stop.iter().filter_map(|s| find_stop(&bytes[..valid], s)).min() {
            bytes.truncate(cut);
            finish = FinishReason::Stop;
            break;
        }
        // Stream what can no longer become part of a stop string.
        let safe = floor_char_boundary(&bytes[..valid], valid.saturating_sub(max_stop.saturating_sub(1)));
        if safe > emitted {
            let piece = String::from_utf8_lossy(&bytes[emitted..safe]).into_owned();
            emitted = safe;
            let _ = job.events.send(Event::Piece(piece));
        }

        st.batch.clear();
        let pos = st.seqs[seq].len() as i32;
        st.batch.add(tok, pos, &[seq as i32], true).map_err(|e| LlmError::Backend(e.to_string()))?;
        ctx.decode(&mut st.batch).map_err(|e| LlmError::Backend(format!("decode: {e}")))?;
        st.seqs[seq].push(tok);
        last_idx = 0;
    }
    t.generated_tokens = n_gen;
    t.gen_ms = ms(g0.elapsed());
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if bytes.len() > emitted {
        let _ = job.events.send(Event::Piece(String::from_utf8_lossy(&bytes[emitted..]).into_owned()));
    }
    Ok(Completion { text, finish, timings: t })
}

/// Picks the next token. With a grammar, the unconstrained choice is tried against the grammar
/// alone first; the full-vocabulary grammar pass runs only when that choice is illegal. The
/// result is the same as constraining first for greedy decoding (the argmax of the legal
/// tokens is the argmax overall whenever the argmax overall is legal).
fn select_token(
    ctx: &LlamaContext<'_>,
    idx: i32,
    grammar: Option<&mut LlamaSampler>,
    chain: Option<&mut LlamaSampler>,
) -> Option<LlamaToken> {
    let logits = ctx.get_logits_ith(idx);
    let (proposal, chain) = match chain {
        None => (argmax(logits), None),
        Some(c) => {
            let mut arr = ctx.token_data_array_ith(idx);
            arr.apply_sampler(c);
            (arr.selected_token().unwrap_or_else(|| argmax(logits)), Some(c))
        }
    };
    let Some(g) = grammar else { return Some(proposal) };
    let logit = logits.get(proposal.0 as usize).copied().unwrap_or(0.0);
    let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(proposal, logit, 0.0)], false);
    one.apply_sampler(g);
    if one.data.first().map(|d| d.logit().is_finite()).unwrap_or(false) {
        return Some(proposal);
    }
    let mut arr = ctx.token_data_array_ith(idx);
    arr.apply_sampler(g);
    match chain {
        Some(c) => {
            arr.apply_sampler(c);
            arr.selected_token().or_else(|| best_of(&arr))
        }
        None => best_of(&arr),
    }
}

fn argmax(logits: &[f32]) -> LlamaToken {
    let mut best = 0usize;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > bv {
            bv = v;
            best = i;
        }
    }
    LlamaToken(best as i32)
}

fn best_of(arr: &LlamaTokenDataArray) -> Option<LlamaToken> {
    arr.data.iter().filter(|d| d.logit().is_finite()).max_by(|a, b| a.logit().total_cmp(&b.logit())).map(|d| d.id())
}

fn valid_prefix(b: &[u8]) -> usize {
    match std::str::from_utf8(b) {
        Ok(_) => b.len(),
        Err(e) => e.valid_up_to(),
    }
}

fn floor_char_boundary(b: &[u8], mut i: usize) -> usize {
    // `b` is valid UTF-8 here; step back over continuation bytes.
    while i > 0 && i < b.len() && (b[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    i.min(b.len())
}

fn find_stop(hay: &[u8], stop: &str) -> Option<usize> {
    if stop.is_empty() || hay.len() < stop.len() {
        return None;
    }
    hay.windows(stop.len()).position(|w| w == stop.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_helpers() {
        let s = "刮痕ab".as_bytes();
        assert_eq!(valid_prefix(&s[..4]), 3);
        assert_eq!(floor_char_boundary(s, 4), 3);
        assert_eq!(find_stop(b"abc\n\nx", "\n\n"), Some(3));
    }
}

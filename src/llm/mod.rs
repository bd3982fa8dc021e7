//! Text generation engines behind one narrow trait.
//!
//! This module owns the `TextGen` trait, the request/response types that cross it, the typed
//! `LlmError`, and the `NoneTextGen` used when no model is configured. Product code (intake,
//! estimate explanations, the API) only ever names these types, never a llama.cpp type, so a
//! store without a model, or with a remote provider later, runs the same workflow (degraded and
//! flagged for a person when the engine is `none`).
//!
//! Calls are synchronous and block the calling thread: async callers (the HTTP layer) must run
//! them on `spawn_blocking` or a thread of their own. The local engine never queues without
//! bound: when its queue is full it answers `LlmError::Busy` at once, which the API maps to
//! 503 + Retry-After.

pub mod llama;
pub mod prompts;
pub mod remote;
pub mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Who said a chat message. Kept to the three roles every chat template knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn system(s: impl Into<String>) -> Self {
        Self { role: Role::System, content: s.into() }
    }
    pub fn user(s: impl Into<String>) -> Self {
        Self { role: Role::User, content: s.into() }
    }
    pub fn assistant(s: impl Into<String>) -> Self {
        Self { role: Role::Assistant, content: s.into() }
    }
}

/// How the next token is chosen. Greedy is what structured extraction uses: the same text
/// must give the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    Greedy,
    Temperature { temperature: f32, top_p: f32, seed: u32 },
}

/// Cooperative cancellation shared between the caller and the engine; checked once per token.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
pub struct GenParams {
    pub max_tokens: u32,
    pub sampling: Sampling,
    /// Generation stops when the text ends with one of these; the stop string is not returned.
    pub stop: Vec<String>,
    /// GBNF grammar; the output is then guaranteed to match it (root rule `root`).
    pub grammar: Option<String>,
    /// Wall-clock limit for the whole call, queue wait included.
    pub timeout: Duration,
    pub cancel: Option<CancelToken>,
}

impl Default for GenParams {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            sampling: Sampling::Greedy,
            stop: Vec::new(),
            grammar: None,
            timeout: Duration::from_secs(30),
            cancel: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model emitted its end-of-generation token.
    Eos,
    Stop,
    MaxTokens,
}

/// Measured cost of one call; the benchmark and the logs read these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenTimings {
    pub queue_ms: f64,
    /// Tokens in the templated prompt, and how many of them were already in the KV cache.
    pub prompt_tokens: usize,
    pub prompt_tokens_reused: usize,
    pub prompt_ms: f64,
    pub generated_tokens: usize,
    pub gen_ms: f64,
    /// From the worker picking the job up to the first generated token.
    pub first_token_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub finish: FinishReason,
    pub timings: GenTimings,
}

/// Errors of the LLM engines. The messages tell the operator what to do. Serializable because
/// the worker process reports them to the daemon.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmError {
    #[error("no language model is configured; the workflow runs degraded and a person takes over")]
    Unavailable,
    #[error("language model queue is full; retry after {retry_after_s} s")]
    Busy { retry_after_s: u64 },
    #[error("language model call timed out after {0:?}")]
    Timeout(Duration),
    #[error("language model call was cancelled")]
    Cancelled,
    #[error("cannot load model {path}: {reason} (check SERVICEBAY_MODELS and the file's SHA-256)")]
    Load { path: String, reason: String },
    #[error("language model worker stopped unexpectedly ({0}); it is restarted on the next call")]
    WorkerDied(String),
    #[error("invalid grammar: {0}")]
    Grammar(String),
    #[error("prompt of {tokens} tokens does not fit the context of {n_ctx} tokens")]
    PromptTooLong { tokens: usize, n_ctx: u32 },
    #[error("llama.cpp error: {0}")]
    Backend(String),
}

impl LlmError {
    /// Whether the same call may succeed if tried again a little later.
    pub fn is_retriable(&self) -> bool {
        matches!(self, LlmError::Busy { .. } | LlmError::Timeout(_) | LlmError::WorkerDied(_) | LlmError::Backend(_))
    }
}

/// Where an engine stands, for `GET /api/v1/llm/status` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineState {
    /// Answering calls.
    Ready,
    /// The worker died or hung and is being started again; calls answer degraded meanwhile.
    Restarting,
    /// The worker cannot start (retried with back-off); calls answer degraded.
    Down,
    /// No model configured (`NoneTextGen`).
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct EngineStatus {
    pub name: String,
    pub state: EngineState,
    /// Whether the model runs in its own process (a llama.cpp crash cannot take the API down).
    pub isolated: bool,
    pub worker_pid: Option<u32>,
    /// Worker deaths and hangs since start.
    pub restarts: u64,
    pub last_error: Option<String>,
}

/// A text generator: chat messages in, completion out.
///
/// `on_token` receives decoded text pieces as they are generated (always on the calling
/// thread, and always on UTF-8 character boundaries); returning `false` cancels the call.
pub trait TextGen: Send + Sync {
    /// Short name for logs and health output, e.g. `llama.cpp:qwen2.5-coder-0.5b`.
    fn name(&self) -> &str;
    /// False for `NoneTextGen`: callers use their deterministic fallback without trying.
    fn is_available(&self) -> bool;
    /// Health for operators; engines without a worker of their own need not override it.
    fn status(&self) -> EngineStatus {
        EngineStatus {
            name: self.name().to_string(),
            state: if self.is_available() { EngineState::Ready } else { EngineState::None },
            isolated: false,
            worker_pid: None,
            restarts: 0,
            last_error: None,
        }
    }
    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenParams,
        on_token: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Completion, LlmError>;
}

/// The engine of a store without a model: always unavailable.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoneTextGen;

impl TextGen for NoneTextGen {
    fn name(&self) -> &str {
        "none"
    }
    fn is_available(&self) -> bool {
        false
    }
    fn generate(
        &self,
        _messages: &[ChatMessage],
        _params: &GenParams,
        _on_token: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Completion, LlmError> {
        Err(LlmError::Unavailable)
    }
}

/// File name of the default model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, see shared/models.md).
pub const DEFAULT_MODEL_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_unavailable_and_not_retriable() {
        let e = NoneTextGen.generate(&[ChatMessage::user("hi")], &GenParams::default(), None);
        match e {
            Err(err @ LlmError::Unavailable) => assert!(!err.is_retriable()),
            other => panic!("unexpected {other:?}"),
        }
        assert!(LlmError::Busy { retry_after_s: 2 }.is_retriable());
    }
}

/// The local engine, with the remote provider behind it when one is configured (the remote one
/// answers only when the local one cannot). A remote provider that cannot start (unreadable key
/// file) is logged and left out.
pub fn open_engine(local: Box<dyn TextGen>, remote: Option<&remote::RemoteConfig>) -> Box<dyn TextGen> {
    let Some(cfg) = remote else { return local };
    match remote::RemoteTextGen::new(cfg.clone()) {
        Ok(r) => Box::new(remote::FallbackTextGen::new(local, Box::new(r))),
        Err(e) => {
            tracing::error!(error = %e, "remote LLM provider not started");
            local
        }
    }
}

/// Where the local model runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// In this process (the CLI tools, tests of the engine itself).
    Thread,
    /// In a supervised `servicebay llm-worker` child (the daemon): a llama.cpp abort or hang costs
    /// a restart of the worker, not the API. `program`: the servicebay binary to run (default: this
    /// process's own executable).
    Process { program: Option<std::path::PathBuf> },
}

/// The local engine (model file, CPU threads), or `NoneTextGen` — degraded: the lexicon answers
/// alone and unclear cases are flagged for a person — when disabled or when the model cannot load.
/// Blocking (mmap + warm-up): call it off the async runtime.
pub fn open_local(model: &std::path::Path, threads: Option<i32>, disabled: bool, isolation: Isolation) -> Box<dyn TextGen> {
    if disabled {
        return Box::new(NoneTextGen);
    }
    let opened: Result<Box<dyn TextGen>, LlmError> = match isolation {
        Isolation::Thread => {
            let mut cfg = llama::LlamaConfig::new(model);
            cfg.n_threads = threads;
            llama::LlamaEngine::load(cfg).map(|e| Box::new(e) as Box<dyn TextGen>)
        }
        Isolation::Process { program } => {
            // A missing or broken model is reported by the worker itself (a `Load` error).
            let cmd = match program {
                Some(p) => Ok(worker::WorkerCommand::of(p, model, threads)),
                None => worker::WorkerCommand::this_binary(model, threads),
            };
            cmd.and_then(|cmd| worker::SupervisedEngine::start(cmd, llama::LlamaConfig::new(model).queue_capacity))
                .map(|e| Box::new(e) as Box<dyn TextGen>)
        }
    };
    match opened {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "local LLM unavailable; running degraded (lexicon only, flagged for a person)");
            Box::new(NoneTextGen)
        }
    }
}

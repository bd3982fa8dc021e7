//! The local engine in a supervised child process.
//!
//! llama.cpp reports some failures with `abort()` (GGML_ASSERT) and can, in principle, hang in a
//! kernel; either would take the whole daemon with it if the model ran in-process. So the daemon
//! runs the model in `servicebay llm-worker` (the same binary) and talks to it over its stdin and
//! stdout, one JSON object per line. This module owns both ends:
//!
//! - `SupervisedEngine` (daemon side) implements `TextGen`. Callers queue jobs on a bounded
//!   channel (full → `Busy`), and one dispatcher thread owns the child: it starts it, forwards each
//!   job and its streamed pieces, and restarts it when it dies. A child that has not answered a job
//!   `KILL_GRACE` after that job's deadline is taken as hung and killed (SIGKILL also ends a stopped
//!   process). While the child is down, calls fail at once with `WorkerDied`, so intake answers
//!   from the lexicon (degraded, flagged for a person) instead of waiting.
//! - `serve_stdio` (child side) loads the ordinary in-process `LlamaEngine` and answers requests;
//!   it exits when its stdin closes, so it never outlives the daemon, even after a `kill -9`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::llama::{wait_for, Event, LlamaConfig, LlamaEngine};
use super::{CancelToken, ChatMessage, Completion, EngineState, EngineStatus, GenParams, LlmError, Sampling, TextGen};

/// How long past a job's deadline the child may stay silent before it is taken as hung.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Model load (mmap + first context) on a slow box; the child says `ready` when done.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// A child that dies sooner than this after starting counts as a crash loop: back off.
const STABLE_AFTER: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What to run as the worker: the program and its arguments (the daemon passes its own binary).
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl WorkerCommand {
    /// `servicebay llm-worker --model PATH [--threads N]` with this process's own executable.
    pub fn this_binary(model: &std::path::Path, threads: Option<i32>) -> Result<Self, LlmError> {
        let program = std::env::current_exe().map_err(|e| LlmError::Backend(format!("cannot find own executable: {e}")))?;
        Ok(Self::of(program, model, threads))
    }

    pub fn of(program: PathBuf, model: &std::path::Path, threads: Option<i32>) -> Self {
        let mut args = vec!["llm-worker".to_string(), "--model".into(), model.display().to_string()];
        if let Some(t) = threads {
            args.extend(["--threads".into(), t.to_string()]);
        }
        Self { program, args }
    }
}

// ---- wire format (one JSON object per line) ----

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Generate {
        id: u64,
        messages: Vec<ChatMessage>,
        max_tokens: u32,
        sampling: Sampling,
        stop: Vec<String>,
        grammar: Option<String>,
        timeout_ms: u64,
    },
    Cancel {
        id: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
enum Reply {
    Ready { name: String },
    Piece { id: u64, text: String },
    Done { id: u64, result: Result<Completion, LlmError> },
}

// ---- daemon side ----

struct Job {
    messages: Vec<ChatMessage>,
    params: GenParams,
    cancel: CancelToken,
    deadline: Instant,
    events: Sender<Event>,
}

/// What the dispatcher publishes about the child, for status and metrics.
#[derive(Debug)]
struct Shared {
    /// State, worker pid, last error.
    state: Mutex<(EngineState, Option<u32>, Option<String>)>,
    restarts: AtomicU64,
}

impl Shared {
    fn set(&self, state: EngineState, pid: Option<u32>, error: Option<String>) {
        if let Ok(mut g) = self.state.lock() {
            // The last error stays visible after recovery, for the operator.
            let keep = error.or_else(|| g.2.clone());
            *g = (state, pid, keep);
        }
    }
}

pub struct SupervisedEngine {
    name: String,
    tx: Option<SyncSender<Job>>,
    shared: Arc<Shared>,
    queue_capacity: usize,
    dispatcher: Option<std::thread::JoinHandle<()>>,
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<Reply>,
    started: Instant,
}

impl SupervisedEngine {
    /// Starts the worker and waits until its model is loaded; a model that cannot load fails here,
    /// so the daemon can fall back to `NoneTextGen` at start-up exactly as in-process.
    pub fn start(cmd: WorkerCommand, queue_capacity: usize) -> Result<Self, LlmError> {
        let (first, name) = spawn(&cmd)?;
        let shared =
            Arc::new(Shared { state: Mutex::new((EngineState::Ready, Some(first.child.id()), None)), restarts: AtomicU64::new(0) });
        let (tx, rx) = mpsc::sync_channel::<Job>(queue_capacity.max(1));
        let sh = shared.clone();
        let dispatcher = std::thread::Builder::new()
            .name("llm-supervisor".into())
            .spawn(move || dispatch(cmd, first, rx, sh))
            .map_err(|e| LlmError::Backend(format!("cannot spawn supervisor thread: {e}")))?;
        Ok(Self { name, tx: Some(tx), shared, queue_capacity: queue_capacity.max(1), dispatcher: Some(dispatcher) })
    }
}

impl Drop for SupervisedEngine {
    fn drop(&mut self) {
        // Closing the queue ends the dispatcher, which closes the child's stdin and reaps it.
        self.tx.take();
        if let Some(h) = self.dispatcher.take() {
            let _ = h.join();
        }
    }
}

impl TextGen for SupervisedEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_available(&self) -> bool {
        true
    }

    fn status(&self) -> EngineStatus {
        let (state, pid, last_error) = self.shared.state.lock().map(|g| g.clone()).unwrap_or((EngineState::Down, None, None));
        EngineStatus {
            name: self.name.clone(),
            state,
            isolated: true,
            worker_pid: pid,
            restarts: self.shared.restarts.load(Ordering::SeqCst),
            last_error,
        }
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenParams,
        mut on_token: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Completion, LlmError> {
        let deadline = Instant::now() + params.timeout;
        let cancel = CancelToken::new();
        let (ev_tx, ev_rx) = mpsc::channel();
        let job = Job { messages: messages.to_vec(), params: params.clone(), cancel: cancel.clone(), deadline, events: ev_tx };
        let tx = self.tx.as_ref().ok_or_else(|| LlmError::WorkerDied("engine is shutting down".into()))?;
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(LlmError::Busy { retry_after_s: 2 * self.queue_capacity as u64 }),
            Err(TrySendError::Disconnected(_)) => return Err(LlmError::WorkerDied("supervisor stopped".into())),
        }
        wait_for(&ev_rx, &cancel, params, deadline + KILL_GRACE, &mut on_token)
    }
}

/// Starts one child and waits for its `ready` line.
fn spawn(cmd: &WorkerCommand) -> Result<(Proc, String), LlmError> {
    let mut child = Command::new(&cmd.program)
        .args(&cmd.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| LlmError::Backend(format!("cannot start {}: {e}", cmd.program.display())))?;
    let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
        (Some(i), Some(o)) => (i, o),
        _ => {
            reap(&mut child);
            return Err(LlmError::Backend("worker pipes missing".into()));
        }
    };
    let (rtx, replies) = mpsc::channel();
    let _ = std::thread::Builder::new().name("llm-worker-out".into()).spawn(move || read_replies(stdout, rtx));
    let name = match replies.recv_timeout(START_TIMEOUT) {
        Ok(Reply::Ready { name }) => name,
        Ok(Reply::Done { result: Err(e), .. }) => {
            reap(&mut child);
            return Err(e);
        }
        Ok(_) => {
            reap(&mut child);
            return Err(LlmError::Backend("worker spoke before it was ready".into()));
        }
        Err(_) => {
            reap(&mut child);
            let why = match child.try_wait() {
                Ok(Some(st)) => format!("worker exited before it was ready ({st})"),
                _ => "worker did not become ready".into(),
            };
            return Err(LlmError::WorkerDied(why));
        }
    };
    Ok((Proc { child, stdin, replies, started: Instant::now() }, name))
}

fn read_replies(stdout: std::process::ChildStdout, tx: Sender<Reply>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Reply>(&line) {
            Ok(r) => {
                if tx.send(r).is_err() {
                    break;
                }
            }
            Err(e) => tracing::warn!(error = %e, "unreadable line from the LLM worker ignored"),
        }
    }
}

fn reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The dispatcher thread: owns the child, serves jobs one at a time, restarts the child.
fn dispatch(cmd: WorkerCommand, first: Proc, jobs: Receiver<Job>, shared: Arc<Shared>) {
    let mut proc = Some(first);
    let mut backoff = Duration::from_secs(1);
    let mut retry_at = Instant::now();
    let mut next_id = 0u64;
    loop {
        // Notice a child that died while idle, so the restart happens before the next caller.
        if let Some(p) = proc.as_mut() {
            if let Ok(Some(st)) = p.child.try_wait() {
                let died = p.started.elapsed();
                proc = None;
                lost(&shared, format!("worker exited while idle ({st})"));
                (backoff, retry_at) = next_backoff(died, backoff);
            }
        }
        if proc.is_none() && Instant::now() >= retry_at {
            shared.set(EngineState::Restarting, None, None);
            match spawn(&cmd) {
                Ok((p, _)) => {
                    tracing::info!(pid = p.child.id(), "LLM worker restarted");
                    shared.set(EngineState::Ready, Some(p.child.id()), None);
                    proc = Some(p);
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in_s = backoff.as_secs(), "LLM worker did not start");
                    shared.set(EngineState::Down, None, Some(e.to_string()));
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let job = match jobs.recv_timeout(Duration::from_secs(1)) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let Some(p) = proc.as_mut() else {
            let _ = job.events.send(Event::Done(Err(LlmError::WorkerDied("the language model is restarting".into()))));
            continue;
        };
        next_id += 1;
        match run(p, next_id, &job) {
            Ok(r) => {
                let _ = job.events.send(Event::Done(r));
            }
            Err(why) => {
                // The child is dead or hung: make sure it is gone, answer, restart next round.
                let died = p.started.elapsed();
                if let Some(mut p) = proc.take() {
                    reap(&mut p.child);
                }
                lost(&shared, why.to_string());
                let _ = job.events.send(Event::Done(Err(why)));
                (backoff, retry_at) = next_backoff(died, backoff);
            }
        }
    }
    if let Some(mut p) = proc.take() {
        drop(p.stdin); // EOF: the child exits by itself
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && matches!(p.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        reap(&mut p.child);
    }
}

fn lost(shared: &Shared, why: String) {
    shared.restarts.fetch_add(1, Ordering::SeqCst);
    tracing::error!(reason = %why, "LLM worker lost; the API answers without the model until it is back");
    shared.set(EngineState::Restarting, None, Some(why));
}

/// Restart at once after a worker that ran for a while; back off when it keeps dying at start.
fn next_backoff(lived: Duration, backoff: Duration) -> (Duration, Instant) {
    if lived >= STABLE_AFTER {
        (Duration::from_secs(1), Instant::now())
    } else {
        (((backoff * 2).min(MAX_BACKOFF)), Instant::now() + backoff)
    }
}

/// One job on the child. `Ok` carries the job's own result; `Err` means the child is lost.
fn run(p: &mut Proc, id: u64, job: &Job) -> Result<Result<Completion, LlmError>, LlmError> {
    let left = job.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Ok(Err(LlmError::Timeout(job.params.timeout)));
    }
    let req = Request::Generate {
        id,
        messages: job.messages.clone(),
        max_tokens: job.params.max_tokens,
        sampling: job.params.sampling,
        stop: job.params.stop.clone(),
        grammar: job.params.grammar.clone(),
        timeout_ms: left.as_millis() as u64,
    };
    send(&mut p.stdin, &req).map_err(|e| LlmError::WorkerDied(format!("cannot write to worker: {e}")))?;
    let mut cancel_sent = false;
    loop {
        let user_cancel = job.params.cancel.as_ref().is_some_and(|c| c.is_cancelled());
        if (job.cancel.is_cancelled() || user_cancel) && !cancel_sent {
            cancel_sent = true;
            let _ = send(&mut p.stdin, &Request::Cancel { id });
        }
        match p.replies.recv_timeout(Duration::from_millis(50)) {
            Ok(Reply::Piece { id: rid, text }) if rid == id => {
                let _ = job.events.send(Event::Piece(text));
            }
            Ok(Reply::Done { id: rid, result }) if rid == id => return Ok(result),
            Ok(_) => {} // a stale line from an earlier job
            Err(RecvTimeoutError::Timeout) => {
                if Instant::now() > job.deadline + KILL_GRACE {
                    return Err(LlmError::WorkerDied(format!(
                        "worker hung: no answer {} s after the call's deadline; killed",
                        KILL_GRACE.as_secs()
                    )));
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = p.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                return Err(LlmError::WorkerDied(format!("worker exited during a call ({status})")));
            }
        }
    }
}

fn send(w: &mut impl Write, msg: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

// ---- child side ----

/// `servicebay llm-worker`: load the model, say `ready`, answer requests until stdin closes.
/// Returns only on a load failure (reported on stdout first, so the daemon sees why).
pub fn serve_stdio(model: PathBuf, threads: Option<i32>) -> Result<(), LlmError> {
    let mut cfg = LlamaConfig::new(model);
    cfg.n_threads = threads;
    cfg.queue_capacity = 1;
    let out = std::io::stdout();
    let engine = match LlamaEngine::load(cfg) {
        Ok(e) => e,
        Err(e) => {
            // Tell the daemon why (it shows in the status), then exit with the same error.
            let msg = e.to_string();
            let _ = send(&mut out.lock(), &Reply::Done { id: 0, result: Err(e) });
            return Err(LlmError::Backend(msg));
        }
    };
    send(&mut out.lock(), &Reply::Ready { name: engine.name().to_string() }).map_err(|e| LlmError::Backend(e.to_string()))?;

    // The reader thread handles cancels itself (the main thread is busy generating) and hands
    // generate requests over; stdin EOF means the daemon is gone: exit at once.
    let current: Arc<Mutex<Option<(u64, CancelToken)>>> = Arc::default();
    let (tx, rx) = mpsc::channel::<Request>();
    let cur = current.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Request>(&line) {
                Ok(Request::Cancel { id }) => {
                    if let Ok(g) = cur.lock() {
                        if let Some((cid, tok)) = g.as_ref() {
                            if *cid == id {
                                tok.cancel();
                            }
                        }
                    }
                }
                Ok(r) => {
                    if tx.send(r).is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("llm-worker: unreadable request ignored: {e}"),
            }
        }
        std::process::exit(0);
    });
    while let Ok(req) = rx.recv() {
        let Request::Generate { id, messages, max_tokens, sampling, stop, grammar, timeout_ms } = req else { continue };
        let tok = CancelToken::new();
        if let Ok(mut g) = current.lock() {
            *g = Some((id, tok.clone()));
        }
        let params = GenParams { max_tokens, sampling, stop, grammar, timeout: Duration::from_millis(timeout_ms), cancel: Some(tok) };
        let mut cb = |piece: &str| send(&mut out.lock(), &Reply::Piece { id, text: piece.to_string() }).is_ok();
        let result = engine.generate(&messages, &params, Some(&mut cb));
        if send(&mut out.lock(), &Reply::Done { id, result }).is_err() {
            break; // the daemon is gone
        }
    }
    Ok(())
}

//! Logging with tracing: human or JSON lines, level from config (RUST_LOG overrides). Request spans
//! carry the request id. Nothing logs request bodies, query strings, passwords, tokens or phones.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(json: bool, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colours only on a terminal: never escape codes in log files or the journal.
        .with_ansi(std::io::stderr().is_terminal());
    // try_init: tests and repeated calls must not panic.
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}

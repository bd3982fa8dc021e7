//! The binary's own command handlers, grouped by what they administer (modules of `main.rs`, not
//! of the library): each parses nothing itself (clap did), calls the library's services and prints
//! for people; errors map to exit codes with `main.rs`'s functions.

pub mod import;

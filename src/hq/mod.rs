//! HQ's services. `hq-survey` (customers' survey page, `survey*.rs`), its answer downlink to the
//! stores (`relay.rs`) and SMS/WeChat invitations (`notify.rs`); `hq-web` (analysts' pages, `web*.rs`).

pub mod notify;
pub mod relay;
pub mod survey;
pub mod survey_config;
mod survey_page;
pub mod survey_store;

pub mod web;

//! ServiceBay: the store edge appliance for car-dealership after-sales service.
//!
//! Data flows one way: intake → photos/vision → estimate → schedule → work order → QC → follow-up
//! → sync. `domain` holds the pure types and rules; `store` is SQLite; `case` and `staff` are the
//! services; `api` is the HTTP edge; `app` wires it all together. See README.md for the tour.

pub mod api;
pub mod app;
pub mod auth;
pub mod case;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod domain;
pub mod estimate;
pub mod files;
pub mod fsutil;
pub mod hq;
pub mod import;
pub mod intake;
pub mod keys;
pub mod kpi;
pub mod llm;
pub mod media;
pub mod pdf;
pub mod protection;
pub mod staff;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod ui;
pub mod vision;

//! dashboard: receives count events from image-predict, keeps the history, shows it live.
//!
//! Event path: `routes::ingest` (WebSocket from image-predict, on the token-guarded ingest
//! listener) → `state::DashboardState::ingest` (validate → `store` commits durably, once per id
//! → `history` updates the view → the live hub broadcasts, and `alerts` decides levels) →
//! `routes::live` (each browser's WebSocket). With the shared (Redis) store the view is updated
//! by `follower`, which follows the store's log, so that every replica sees every event.
//! `routes::api` answers REST from `history` (photos, `series` and `routes::export` from the
//! store); `registry` holds the cameras' names, groups, levels and zones; `webhooks` delivers
//! alerts; `routes::page` serves `static/`.

pub mod alerts;
pub mod configuration;
pub mod follower;
pub mod history;
pub mod metrics;
pub mod registry;
pub mod routes;
pub mod series;
pub mod startup;
pub mod state;
pub mod store;
pub mod webhooks;

pub use configuration::DashboardConfig;
pub use startup::Application;

//! Pieces shared by the three crowd services.
//!
//! - [`wire`]: what travels between services (the count answer, the count event and its binary frame).
//! - [`validate`]: the checks every photo and camera id must pass, whichever service receives them.
//! - [`http`]: the JSON error body, `/healthz`, `/metrics`.
//! - [`upload`]: reading a photo out of a multipart form or a raw body, with a byte limit.
//! - [`telemetry`]: structured logging set-up.
//! - [`auth`]: camera API keys, shared tokens, rate limits per key.
//! - [`server`]: a service's listeners (public, ops, internal) run and stopped together.
//! - [`zones`]: counting zones (polygons over a camera's photo) and their checks.
//! - `testing` (feature `testing`, tests only): a service's binary run as a child process.

pub mod auth;
pub mod http;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod upload;
pub mod validate;
pub mod wire;
pub mod zones;

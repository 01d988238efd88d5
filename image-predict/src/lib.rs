//! image-predict: counts the people in a photo and pushes each count to the dashboard.
//!
//! Request path: `routes` (read the photo, bounded) → `counting::CountingService` (cheap header
//! checks, then the `pool` runs decode + `model` + thumbnail on a worker thread) → the answer,
//! and the event with its annotated thumbnail into `dashboard_link`'s outbox.

pub mod allocator;
pub mod configuration;
pub mod counting;
pub mod dashboard_link;
pub mod error;
pub mod imaging;
pub mod metrics;
pub mod model;
pub mod pool;
pub mod routes;
pub mod startup;

pub use configuration::PredictConfig;
pub use startup::Application;

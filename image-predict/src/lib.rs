//! image-predict: counts the people in a photo and pushes each count to the dashboard.
//!
//! Request path: `routes` (camera key, read the photo, bounded) → `counting::CountingService`
//! (cheap header checks; a retry's stored answer and the camera's zones from
//! `dashboard_lookup`; then the `pool` runs decode + `model` + zones + thumbnail on a worker
//! thread) → the event with its annotated thumbnail handed to the dashboard by
//! `dashboard_link`, and the answer once the dashboard has stored it.

pub mod allocator;
pub mod configuration;
pub mod counting;
pub mod dashboard_link;
pub mod dashboard_lookup;
pub mod error;
pub mod imaging;
pub mod metrics;
pub mod model;
pub mod pool;
pub mod routes;
pub mod startup;

pub use configuration::PredictConfig;
pub use startup::Application;

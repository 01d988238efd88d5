//! image-upload: the stack's front door. Serves the upload page; validates each photo and its
//! camera (`common::upload` reads it with a byte limit, `common::validate` checks id, format and
//! pixel count from the header) and forwards it to image-predict (`predict_client`), answering
//! with image-predict's JSON.

pub mod configuration;
pub mod error;
pub mod metrics;
pub mod predict_client;
pub mod routes;
pub mod startup;

pub use configuration::UploadConfig;
pub use startup::Application;

//! The dashboard's routes: `ingest` (image-predict's WebSocket), `live` (browsers' WebSocket),
//! `api` (REST) and `page` (the static page from `static/`).

pub mod api;
pub mod ingest;
pub mod live;
pub mod page;

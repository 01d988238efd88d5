//! The dashboard's routes: on the public listener `page` (the static page from `static/`),
//! `live` (browsers' WebSocket), `api` (REST) and `export`; on the ingest listener `ingest`
//! (image-predict's WebSocket) and `internal` (image-predict's lookups); `guard` checks the
//! tokens of both.

pub mod api;
pub mod export;
pub mod guard;
pub mod ingest;
pub mod internal;
pub mod live;
pub mod page;

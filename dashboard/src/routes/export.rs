//! `GET /api/v1/export`: events or series of a time range for some cameras, a group, or all
//! cameras, as CSV (a header row, ISO 8601 UTC times, one row per event or step) or JSON (one
//! array). Streamed camera by camera: the answer never holds more than one camera's range.
//!
//! Parameters: `kind=events|series` (default events), `format=csv|json` (default csv),
//! `from`, `to` (Unix ms or RFC 3339; default the last 24 hours), `cameras=a,b` or `group=g`
//! (default every camera), `step` (series; default 5 minutes).

use std::collections::VecDeque;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use common::http::json_error;
use common::validate::CameraId;
use common::wire::CountEvent;
use futures_util::stream;
use serde::Deserialize;

use super::api::Retention;
use crate::registry::Registry;
use crate::series::{self, Range, Step};
use crate::state::{DashboardState, now_ms};
use crate::store::StoreError;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Events,
    Series,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Json,
}

#[derive(Deserialize)]
pub struct ExportQuery {
    kind: Option<Kind>,
    format: Option<Format>,
    from: Option<String>,
    to: Option<String>,
    cameras: Option<String>,
    group: Option<String>,
    step: Option<String>,
}

/// ISO 8601 UTC with milliseconds: `2026-12-01T14:03:07.123Z`.
pub fn iso_time(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

fn csv_row(fields: &[String]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(fields).expect("writing to memory");
    writer.into_inner().expect("writing to memory")
}

fn event_row(event: &CountEvent, registry: &Registry) -> Vec<String> {
    let settings = registry.camera(&event.camera);
    let zones: Vec<String> = event
        .zones
        .iter()
        .map(|z| format!("{}={}", z.name, z.count))
        .collect();
    vec![
        iso_time(event.timestamp_ms),
        event.camera.clone(),
        settings.and_then(|s| s.name.clone()).unwrap_or_default(),
        settings.and_then(|s| s.group.clone()).unwrap_or_default(),
        event.count.to_string(),
        event.model.clone(),
        event.id.clone(),
        zones.join(";"),
    ]
}

fn step_row(camera: &str, step: &Step) -> Vec<String> {
    let opt = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
    vec![
        iso_time(step.start_ms),
        camera.to_owned(),
        step.photos.to_string(),
        opt(step.last),
        opt(step.min),
        opt(step.max),
        step.mean.map_or_else(String::new, |m| format!("{m:.2}")),
    ]
}

const EVENT_COLUMNS: [&str; 8] = [
    "time", "camera", "name", "group", "count", "model", "event_id", "zones",
];
const STEP_COLUMNS: [&str; 7] = ["start", "camera", "photos", "last", "min", "max", "mean"];

struct Export {
    state: web::Data<DashboardState>,
    registry: Arc<Registry>,
    cameras: VecDeque<String>,
    kind: Kind,
    format: Format,
    range: Range,
    history_ms: i64,
    /// Rows written so far (for the JSON commas).
    rows: u64,
    finished: bool,
}

impl Export {
    /// The next chunk: the header, one camera's rows, or the closing bracket.
    async fn next(&mut self) -> Option<Result<Bytes, StoreError>> {
        if self.finished {
            return None;
        }
        let Some(camera) = self.cameras.pop_front() else {
            self.finished = true;
            return match self.format {
                Format::Json => Some(Ok(Bytes::from_static(b"\n]\n"))),
                Format::Csv => None,
            };
        };
        let rows: Vec<serde_json::Value>;
        let mut csv = Vec::new();
        match self.kind {
            Kind::Events => {
                let events = match self
                    .state
                    .store()
                    .camera_events(&camera, self.range.from_ms, self.range.to_ms)
                    .await
                {
                    Ok(events) => events,
                    Err(error) => return Some(Err(error)),
                };
                rows = match self.format {
                    Format::Json => events
                        .iter()
                        .map(|e| serde_json::to_value(e).expect("events serialise"))
                        .collect(),
                    Format::Csv => {
                        for event in &events {
                            csv.extend(csv_row(&event_row(event, &self.registry)));
                        }
                        Vec::new()
                    }
                };
            }
            Kind::Series => {
                let steps = if self.range.from_ms >= now_ms() - self.history_ms {
                    let events = match self
                        .state
                        .store()
                        .camera_events(&camera, self.range.from_ms, self.range.to_ms)
                        .await
                    {
                        Ok(events) => events,
                        Err(error) => return Some(Err(error)),
                    };
                    series::from_events(
                        &self.range,
                        events.iter().map(|e| (e.timestamp_ms, e.count)),
                    )
                } else {
                    let range = self.range.for_rollups();
                    match self
                        .state
                        .store()
                        .rollups(&camera, range.from_ms, range.to_ms)
                        .await
                    {
                        Ok(rollups) => series::from_rollups(&range, &rollups),
                        Err(error) => return Some(Err(error)),
                    }
                };
                let steps: Vec<&Step> = steps.iter().filter(|s| s.photos > 0).collect();
                rows = match self.format {
                    Format::Json => steps
                        .iter()
                        .map(|s| {
                            let mut v = serde_json::to_value(s).expect("steps serialise");
                            v["camera"] = serde_json::Value::String(camera.clone());
                            v
                        })
                        .collect(),
                    Format::Csv => {
                        for step in steps {
                            csv.extend(csv_row(&step_row(&camera, step)));
                        }
                        Vec::new()
                    }
                };
            }
        }
        let mut chunk = csv;
        for row in rows {
            chunk.extend_from_slice(if self.rows == 0 { b"\n" } else { b",\n" });
            chunk.extend(serde_json::to_vec(&row).expect("rows serialise"));
            self.rows += 1;
        }
        Some(Ok(Bytes::from(chunk)))
    }
}

/// `GET /api/v1/export?…`
pub async fn export(
    query: web::Query<ExportQuery>,
    state: web::Data<DashboardState>,
    retention: web::Data<Retention>,
) -> HttpResponse {
    let kind = query.kind.unwrap_or(Kind::Events);
    let format = query.format.unwrap_or(Format::Csv);
    let now = now_ms();
    let to = query.to.clone().unwrap_or_else(|| now.to_string());
    let from = query
        .from
        .clone()
        .unwrap_or_else(|| (now - DAY_MS).to_string());
    let step = match (kind, &query.step) {
        (Kind::Series, None) => Some("5m".to_owned()),
        (_, step) => step.clone(),
    };
    let range = match Range::parse(Some(&from), Some(&to), step.as_deref().or(Some("1h")), now) {
        Ok(range) => range,
        Err(error) => return json_error(StatusCode::BAD_REQUEST, error.code(), error.to_string()),
    };
    let cameras: Vec<String> = match (&query.cameras, &query.group) {
        (Some(_), Some(_)) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                "give cameras or group, not both",
            );
        }
        (Some(list), None) => {
            let mut ids = Vec::new();
            for raw in list.split(',').filter(|c| !c.trim().is_empty()) {
                match CameraId::parse(raw.trim()) {
                    Ok(id) => ids.push(id.into_string()),
                    Err(e) => {
                        return json_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_camera_id",
                            e.to_string(),
                        );
                    }
                }
            }
            ids
        }
        (None, Some(group)) => {
            if !state.registry().groups().contains(group) {
                return json_error(
                    StatusCode::NOT_FOUND,
                    "unknown_group",
                    format!("no group {group:?}"),
                );
            }
            state.group_cameras(group)
        }
        (None, None) => state.camera_ids(),
    };
    let header = match (format, kind) {
        (Format::Csv, Kind::Events) => csv_row(&EVENT_COLUMNS.map(str::to_owned)),
        (Format::Csv, Kind::Series) => csv_row(&STEP_COLUMNS.map(str::to_owned)),
        (Format::Json, _) => b"[".to_vec(),
    };
    let export = Export {
        registry: state.registry(),
        state,
        cameras: cameras.into(),
        kind,
        format,
        range,
        history_ms: retention.history_ms,
        rows: 0,
        finished: false,
    };
    let body = stream::once(async move { Ok::<_, actix_web::Error>(Bytes::from(header)) })
        .chain_state(export);
    let (content_type, extension) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Json => ("application/json", "json"),
    };
    let name = match kind {
        Kind::Events => "events",
        Kind::Series => "series",
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"crowd-{name}-{}.{extension}\"",
                iso_time(now).replace(':', "-")
            ),
        ))
        .streaming(body)
}

/// Streams the export's chunks after a first one.
trait ChainState {
    fn chain_state(
        self,
        export: Export,
    ) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> + 'static;
}

impl<S> ChainState for S
where
    S: futures_util::Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
{
    fn chain_state(
        self,
        export: Export,
    ) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
        use futures_util::StreamExt;
        let rest = stream::unfold(export, |mut export| async move {
            export.next().await.map(|chunk| {
                let chunk = chunk.map_err(|e| {
                    // Mid-stream the status is sent already: the answer ends early, and the log says why.
                    tracing::error!(error = %e, "export interrupted by the store");
                    actix_web::error::ErrorServiceUnavailable(e.to_string())
                });
                (chunk, export)
            })
        });
        self.chain(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_8601_utc_with_milliseconds() {
        assert_eq!(iso_time(1_764_597_787_123), "2025-12-01T14:03:07.123Z");
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        let row = csv_row(&["a".into(), "b, c".into(), "say \"hi\"".into()]);
        assert_eq!(
            String::from_utf8(row).unwrap(),
            "a,\"b, c\",\"say \"\"hi\"\"\"\n"
        );
    }
}

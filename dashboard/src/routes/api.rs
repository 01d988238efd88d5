//! The dashboard's REST API (public listener; with a viewer token, behind it).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use common::auth::SharedToken;
use common::http::json_error;
use common::validate::CameraId;
use serde::Deserialize;

use crate::history::{HistogramView, WINDOW_MS, Window, window_start};
use crate::registry::CameraSettings;
use crate::series::{self, Range, RangeError, Source, Step};
use crate::state::{DEFAULT_HISTOGRAM_WINDOWS, DashboardState, now_ms};
use crate::store::StoreError;

/// The longest histogram served: one day of 30-second windows.
const MAX_HISTOGRAM_WINDOWS: usize = 2880;
/// Alerts served at most per request.
const MAX_ALERTS: usize = 1000;

/// The admin token, when the dashboard has one (`--admin-token`).
pub struct AdminToken(pub Option<SharedToken>);

/// How long per-photo events are kept: ranges older than it are answered from rollups.
pub struct Retention {
    pub history_ms: i64,
}

pub fn store_unavailable(error: &StoreError) -> HttpResponse {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        error.to_string(),
    )
}

// The error is the finished answer to the request, built once per refused request.
#[allow(clippy::result_large_err)]
fn camera_id(raw: &str) -> Result<CameraId, HttpResponse> {
    CameraId::parse(raw)
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, "invalid_camera_id", e.to_string()))
}

fn range_error(error: RangeError) -> HttpResponse {
    json_error(StatusCode::BAD_REQUEST, error.code(), error.to_string())
}

/// `GET /api/v1/summary`: both totals, each camera's latest count, and the groups.
pub async fn summary(state: web::Data<DashboardState>) -> HttpResponse {
    HttpResponse::Ok().json(state.summary())
}

#[derive(Deserialize)]
pub struct HistogramQuery {
    windows: Option<usize>,
    camera: Option<String>,
    group: Option<String>,
}

/// `GET /api/v1/histogram?windows=N[&camera=ID|&group=NAME]`: people counted per 30-second
/// window, the last N windows (default 60 = 30 minutes, at most 2880), of every camera or of
/// one camera or group.
pub async fn histogram(
    state: web::Data<DashboardState>,
    query: web::Query<HistogramQuery>,
) -> HttpResponse {
    let windows = query.windows.unwrap_or(DEFAULT_HISTOGRAM_WINDOWS);
    if windows == 0 || windows > MAX_HISTOGRAM_WINDOWS {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_windows",
            format!("windows must be between 1 and {MAX_HISTOGRAM_WINDOWS}, not {windows}"),
        );
    }
    let cameras = match (&query.camera, &query.group) {
        (None, None) => return HttpResponse::Ok().json(state.histogram(windows)),
        (Some(_), Some(_)) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                "give camera or group, not both",
            );
        }
        (Some(camera), None) => match camera_id(camera) {
            Ok(camera) => vec![camera.into_string()],
            Err(response) => return response,
        },
        (None, Some(group)) => state.group_cameras(group),
    };
    let last = window_start(now_ms());
    let first = last - (windows as i64 - 1) * WINDOW_MS;
    let mut slots: Vec<Window> = (0..windows as i64)
        .map(|i| Window {
            start_ms: first + i * WINDOW_MS,
            ..Window::default()
        })
        .collect();
    for camera in cameras {
        let events = match state
            .store()
            .camera_events(&camera, first, last + WINDOW_MS)
            .await
        {
            Ok(events) => events,
            Err(error) => return store_unavailable(&error),
        };
        for event in events {
            let slot =
                &mut slots[((window_start(event.timestamp_ms) - first) / WINDOW_MS) as usize];
            slot.people += u64::from(event.count);
            slot.photos += 1;
        }
    }
    HttpResponse::Ok().json(HistogramView {
        window_seconds: WINDOW_MS / 1000,
        windows: slots,
    })
}

/// `GET /counters`: `{"counter": N}`, people counted in the last 30 seconds, as the original
/// stack answered.
pub async fn counters(state: web::Data<DashboardState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "counter": state.totals().last_30s }))
}

/// `GET /readyz` (ops listener): this replica has its store open and its view loaded, so it can
/// serve. A Redis outage afterwards is answered per request (503 store_unavailable), not by
/// leaving the Service: every replica shares the same Redis.
pub async fn readyz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
}

/// `GET /api/v1/cameras/{camera}`: the camera's view now and its registry settings.
pub async fn camera(camera: web::Path<String>, state: web::Data<DashboardState>) -> HttpResponse {
    let camera = match camera_id(&camera) {
        Ok(camera) => camera,
        Err(response) => return response,
    };
    let settings = state.registry().camera(camera.as_str()).cloned();
    match (state.camera(camera.as_str()), settings) {
        (None, None) => json_error(
            StatusCode::NOT_FOUND,
            "unknown_camera",
            format!("no camera {camera}"),
        ),
        (view, settings) => HttpResponse::Ok().json(serde_json::json!({
            "camera": camera.as_str(),
            "now": view,
            "settings": settings.unwrap_or_default(),
        })),
    }
}

#[derive(Deserialize)]
pub struct SeriesQuery {
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
}

/// A camera's steps over a range: from its per-photo events when the range lies within the
/// history hours, else from its rollups (steps rounded up to whole 5 minutes).
async fn camera_steps(
    state: &DashboardState,
    camera: &str,
    range: Range,
    retention: &Retention,
) -> Result<(Vec<Step>, Range, Source), StoreError> {
    if range.from_ms >= now_ms() - retention.history_ms {
        let events = state
            .store()
            .camera_events(camera, range.from_ms, range.to_ms)
            .await?;
        let steps = series::from_events(&range, events.iter().map(|e| (e.timestamp_ms, e.count)));
        Ok((steps, range, Source::Events))
    } else {
        let range = range.for_rollups();
        let rollups = state
            .store()
            .rollups(camera, range.from_ms, range.to_ms)
            .await?;
        Ok((
            series::from_rollups(&range, &rollups),
            range,
            Source::Rollups,
        ))
    }
}

fn series_answer(
    subject: (&str, &str),
    range: Range,
    source: Source,
    steps: Vec<Step>,
) -> HttpResponse {
    let stats = series::stats(&steps);
    let mut body = serde_json::json!({
        "from_ms": range.from_ms,
        "to_ms": range.to_ms,
        "step_ms": range.step_ms,
        "source": source,
        "steps": steps,
        "stats": stats,
    });
    body[subject.0] = serde_json::Value::String(subject.1.to_owned());
    HttpResponse::Ok().json(body)
}

/// `GET /api/v1/cameras/{camera}/series?from=&to=&step=`: per step the photos and the last,
/// min, max and mean count; `stats` over the range.
pub async fn camera_series(
    camera: web::Path<String>,
    query: web::Query<SeriesQuery>,
    state: web::Data<DashboardState>,
    retention: web::Data<Retention>,
) -> HttpResponse {
    let camera = match camera_id(&camera) {
        Ok(camera) => camera,
        Err(response) => return response,
    };
    if state.camera(camera.as_str()).is_none() && state.registry().camera(camera.as_str()).is_none()
    {
        return json_error(
            StatusCode::NOT_FOUND,
            "unknown_camera",
            format!("no camera {camera}"),
        );
    }
    let range = match Range::parse(
        query.from.as_deref(),
        query.to.as_deref(),
        query.step.as_deref(),
        now_ms(),
    ) {
        Ok(range) => range,
        Err(error) => return range_error(error),
    };
    match camera_steps(&state, camera.as_str(), range, &retention).await {
        Ok((steps, range, source)) => {
            series_answer(("camera", camera.as_str()), range, source, steps)
        }
        Err(error) => store_unavailable(&error),
    }
}

/// `GET /api/v1/groups/{group}/series?from=&to=&step=`: the group's cameras added per step.
pub async fn group_series(
    group: web::Path<String>,
    query: web::Query<SeriesQuery>,
    state: web::Data<DashboardState>,
    retention: web::Data<Retention>,
) -> HttpResponse {
    if !state.registry().groups().contains(&group) {
        return json_error(
            StatusCode::NOT_FOUND,
            "unknown_group",
            format!("no group {group:?}"),
        );
    }
    let range = match Range::parse(
        query.from.as_deref(),
        query.to.as_deref(),
        query.step.as_deref(),
        now_ms(),
    ) {
        Ok(range) => range,
        Err(error) => return range_error(error),
    };
    let mut all = Vec::new();
    let (mut used_range, mut used_source) = (range, Source::Events);
    for camera in state.group_cameras(&group) {
        match camera_steps(&state, &camera, range, &retention).await {
            Ok((steps, r, source)) => {
                (used_range, used_source) = (r, source);
                all.push(steps);
            }
            Err(error) => return store_unavailable(&error),
        }
    }
    if all.is_empty() && range.from_ms < now_ms() - retention.history_ms {
        used_range = range.for_rollups();
        used_source = Source::Rollups;
    }
    let steps = series::sum(&all, &used_range);
    series_answer(("group", &group), used_range, used_source, steps)
}

/// `GET /api/v1/cameras/{camera}/photos`: the camera's kept annotated photos, newest first.
pub async fn photos(camera: web::Path<String>, state: web::Data<DashboardState>) -> HttpResponse {
    let camera = match camera_id(&camera) {
        Ok(camera) => camera,
        Err(response) => return response,
    };
    match state.store().recent_photos(camera.as_str()).await {
        Ok(photos) => {
            let photos: Vec<serde_json::Value> = photos
                .into_iter()
                .map(|p| {
                    serde_json::json!({
                        "url": format!("/api/v1/cameras/{camera}/photos/{}", p.event_id),
                        "event_id": p.event_id,
                        "timestamp_ms": p.timestamp_ms,
                        "count": p.count,
                    })
                })
                .collect();
            HttpResponse::Ok()
                .json(serde_json::json!({ "camera": camera.as_str(), "photos": photos }))
        }
        Err(error) => store_unavailable(&error),
    }
}

fn jpeg(
    req: &HttpRequest,
    jpeg: bytes::Bytes,
    event_id: &str,
    cache: &'static str,
) -> HttpResponse {
    let etag = format!("\"{event_id}\"");
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    if unchanged {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish();
    }
    HttpResponse::Ok()
        .content_type("image/jpeg")
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache))
        .body(jpeg)
}

/// `GET /api/v1/cameras/{camera}/photos/{event}`: one kept annotated photo.
pub async fn photo_of_event(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<DashboardState>,
) -> HttpResponse {
    let (camera, event_id) = path.into_inner();
    let camera = match camera_id(&camera) {
        Ok(camera) => camera,
        Err(response) => return response,
    };
    match state.store().photo(camera.as_str(), &event_id).await {
        // A photo of an event never changes: cacheable.
        Ok(Some(photo)) => jpeg(&req, photo, &event_id, "private, max-age=86400, immutable"),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            "unknown_photo",
            format!("no kept photo of event {event_id:?} from camera {camera}"),
        ),
        Err(error) => store_unavailable(&error),
    }
}

/// `GET /api/v1/cameras/{camera}/photo`: the camera's latest annotated JPEG.
pub async fn photo(
    req: HttpRequest,
    camera: web::Path<String>,
    state: web::Data<DashboardState>,
) -> HttpResponse {
    let camera = match camera_id(&camera) {
        Ok(camera) => camera,
        Err(response) => return response,
    };
    match state.photo(camera.as_str()).await {
        Ok(Some((photo, event_id))) => jpeg(&req, photo, &event_id, "no-cache"),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            "unknown_camera",
            format!("no photo from camera {camera} yet"),
        ),
        Err(error) => {
            tracing::error!(%error, "reading a photo from the store failed");
            store_unavailable(&error)
        }
    }
}

/// `GET /api/v1/cameras/{camera}/settings`: the camera's registry settings (empty when none).
pub async fn settings(camera: web::Path<String>, state: web::Data<DashboardState>) -> HttpResponse {
    let camera = match camera_id(&camera) {
        Ok(camera) => camera,
        Err(response) => return response,
    };
    let settings = state
        .registry()
        .camera(camera.as_str())
        .cloned()
        .unwrap_or_default();
    let mut body = serde_json::to_value(settings).expect("settings serialise");
    body["camera"] = serde_json::Value::String(camera.into_string());
    HttpResponse::Ok().json(body)
}

/// `PUT /api/v1/cameras/{camera}/settings` (admin token): replaces the camera's registry
/// settings (name, group, capacity, levels, zones); 400 with the problem for invalid ones.
pub async fn put_settings(
    req: HttpRequest,
    camera: web::Path<String>,
    body: web::Bytes,
    state: web::Data<DashboardState>,
    admin: web::Data<AdminToken>,
) -> HttpResponse {
    match &admin.0 {
        None => {
            return json_error(
                StatusCode::FORBIDDEN,
                "registry_read_only",
                "this dashboard has no admin token (--admin-token / DASHBOARD_ADMIN_TOKEN): its registry is changed in its settings file",
            );
        }
        Some(token) if !token.admits(&req) => {
            let mut response = json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the admin token as `Authorization: Bearer <token>`",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"crowd admin\""),
            );
            return response;
        }
        Some(_) => {}
    }
    let camera = match camera_id(&camera) {
        Ok(camera) => camera,
        Err(response) => return response,
    };
    let mut value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                format!("the body is not JSON: {e}"),
            );
        }
    };
    // The answer of GET carries the camera id; accepted back unchanged.
    if let Some(object) = value.as_object_mut() {
        object.remove("camera");
    }
    let settings: CameraSettings = match serde_json::from_value(value) {
        Ok(settings) => settings,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "invalid_settings", e.to_string()),
    };
    if let Err(error) = settings.validate() {
        let code = match error {
            crate::registry::SettingsError::Zone(_) => "invalid_zone",
            crate::registry::SettingsError::Invalid(_) => "invalid_settings",
        };
        return json_error(StatusCode::BAD_REQUEST, code, error.to_string());
    }
    match state
        .set_camera_settings(camera.as_str(), settings.clone())
        .await
    {
        Ok(()) => {
            tracing::info!(camera = %camera, "camera settings changed");
            let mut body = serde_json::to_value(settings).expect("settings serialise");
            body["camera"] = serde_json::Value::String(camera.into_string());
            HttpResponse::Ok().json(body)
        }
        Err(error) => store_unavailable(&error),
    }
}

#[derive(Deserialize)]
pub struct AlertsQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/alerts?limit=N`: the alert log, newest first (default 100).
pub async fn alerts(
    query: web::Query<AlertsQuery>,
    state: web::Data<DashboardState>,
) -> HttpResponse {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_ALERTS {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            format!("limit must be 1 to {MAX_ALERTS}"),
        );
    }
    match state.store().recent_alerts(limit).await {
        Ok(alerts) => HttpResponse::Ok().json(serde_json::json!({ "alerts": alerts })),
        Err(error) => store_unavailable(&error),
    }
}

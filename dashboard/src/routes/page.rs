//! The browser page from `static/`, compiled into the binary so that the service is one file
//! and the page never depends on a CDN or on the working directory.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// (path under `/static/`, content type, bytes)
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../static/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../../static/dashboard.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../static/common.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../static/chart.js"),
    ),
    (
        "overview.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../static/overview.js"),
    ),
    (
        "camera.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../static/camera.js"),
    ),
];

const INDEX: &str = include_str!("../../../static/dashboard.html");

/// `GET /` and `GET /cameras/{camera}`: the page (it shows the overview or the camera's own
/// page from its URL).
pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(INDEX)
}

pub async fn asset(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(path, _, _)| *path == name.as_str()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*body),
        None => common::http::json_error(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("no static file {name}"),
        ),
    }
}

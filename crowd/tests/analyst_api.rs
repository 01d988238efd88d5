//! What an analyst asks the dashboard's REST API: a camera's (or group's) counts over time,
//! from per-photo events and from rollups once those are pruned, in both stores; exports that
//! parse back into the stored events; kept photos; the registry and its zones. Events are sent
//! on the ingest listener as image-predict sends them, with chosen photo times.

mod support;

use std::time::Duration;

use common::wire::{CountEvent, ZoneCount, encode_event_frame};
use dashboard::state::now_ms;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::redis_server::RedisServer;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const MINUTE: i64 = 60_000;
const ADMIN: &str = "admin-token-0123456789abcdef";

fn small_jpeg() -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(16, 12, image::Rgb([40, 48, 60]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    jpeg
}

fn event(id: &str, camera: &str, count: u32, timestamp_ms: i64) -> CountEvent {
    CountEvent {
        id: id.into(),
        camera: camera.into(),
        count,
        timestamp_ms,
        counted_at_ms: timestamp_ms + 500,
        model: "test".into(),
        zones: vec![ZoneCount {
            name: "door".into(),
            count: count / 2,
        }],
    }
}

async fn ingest(ingest_port: u16, events: &[CountEvent]) {
    let mut socket = ingest_socket(ingest_port).await;
    let jpeg = small_jpeg();
    for event in events {
        socket
            .send(Message::Binary(encode_event_frame(event, None, &jpeg)))
            .await
            .unwrap();
        loop {
            if let Message::Text(text) = socket.next().await.unwrap().unwrap() {
                let reply: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(reply["type"], "ack", "{reply}");
                break;
            }
        }
    }
}

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// An hour of one photo a minute for `cam-a` (counts 0..59), aligned on the hour's start.
fn an_hour(start: i64) -> Vec<CountEvent> {
    (0..60)
        .map(|i| event(&format!("a-{i}"), "cam-a", i as u32, start + i * MINUTE))
        .collect()
}

async fn series_are_answered_from_events_and_from_rollups(dashboard: crowd::Running) {
    let base = format!("http://127.0.0.1:{}", dashboard.port);
    // One hour that ended a few minutes ago, at a 5-minute boundary.
    let start = (now_ms() / (5 * MINUTE)) * 5 * MINUTE - 70 * MINUTE;
    ingest(dashboard.ingest_port, &an_hour(start)).await;

    let url = format!(
        "{base}/api/v1/cameras/cam-a/series?from={start}&to={}&step=10m",
        start + 60 * MINUTE
    );
    let (status, series) = get(&url).await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series["source"], "events");
    let steps = series["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    assert_eq!(
        steps[0],
        json!({"start_ms": start, "photos": 10, "last": 9, "min": 0, "max": 9, "mean": 4.5})
    );
    assert_eq!(steps[5]["last"], 59);
    assert_eq!(
        series["stats"],
        json!({"photos": 60, "min": 0, "max": 59, "mean": 29.5})
    );

    // RFC 3339 times work too; a range with no photos is steps of nothing.
    let empty_from = start - 24 * 60 * MINUTE;
    let (status, empty) = get(&format!(
        "{base}/api/v1/cameras/cam-a/series?from={empty_from}&to={}&step=1h",
        empty_from + 3 * 60 * MINUTE
    ))
    .await;
    assert_eq!(status, 200, "{empty}");
    assert!(
        empty["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["photos"] == 0 && s["last"].is_null())
    );
    assert_eq!(empty["stats"]["photos"], 0);

    // Bad parameters: 400 with a JSON error; an unknown camera: 404.
    for (query, code) in [
        ("from=10&to=5", "invalid_range"),
        ("from=yesterday", "invalid_range"),
        ("step=0", "invalid_step"),
        ("step=5w", "invalid_step"),
        ("from=0&to=86400000&step=1s", "invalid_step"),
    ] {
        let (status, body) = get(&format!("{base}/api/v1/cameras/cam-a/series?{query}")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{query}: {body}"
        );
    }
    let (status, body) = get(&format!("{base}/api/v1/cameras/nobody/series")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_camera"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_on_the_embedded_store() {
    let data = temp_data_dir("series");
    let dashboard = crowd::start_dashboard(dashboard_config(&data, 0))
        .await
        .unwrap();
    series_are_answered_from_events_and_from_rollups(dashboard).await;
    std::fs::remove_dir_all(data).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_on_the_shared_store() {
    let redis = RedisServer::start("series");
    let dashboard = crowd::start_dashboard(shared_dashboard_config(&redis.url(), "series", 0))
        .await
        .unwrap();
    series_are_answered_from_events_and_from_rollups(dashboard).await;
}

/// Per-photo events older than the history hours are pruned; their rollups still answer the
/// series of that range (steps of whole 5 minutes), with the same figures.
async fn old_ranges_come_from_rollups(config: dashboard::DashboardConfig) {
    let dashboard = crowd::start_dashboard(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", dashboard.port);
    let start = (now_ms() / (5 * MINUTE)) * 5 * MINUTE - 5 * 60 * MINUTE;
    ingest(dashboard.ingest_port, &an_hour(start)).await;
    let range = format!("from={start}&to={}&step=15m", start + 60 * MINUTE);
    // Pruned within a few seconds (--prune-every-secs 1, --history-hours 1).
    let export_url = format!(
        "{base}/api/v1/export?kind=events&format=json&cameras=cam-a&from={start}&to={}",
        start + 60 * MINUTE
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<Value> = reqwest::get(&export_url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if rows.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old events were not pruned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, series) = get(&format!("{base}/api/v1/cameras/cam-a/series?{range}")).await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series["source"], "rollups");
    let steps = series["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert_eq!(
        steps[0],
        json!({"start_ms": start, "photos": 15, "last": 14, "min": 0, "max": 14, "mean": 7.0})
    );
    assert_eq!(steps[3]["last"], 59);
    assert_eq!(series["stats"]["photos"], 60);
    // A 7-minute step is rounded up to whole rollups.
    let (_, rounded) = get(&format!(
        "{base}/api/v1/cameras/cam-a/series?from={start}&to={}&step=7m",
        start + 60 * MINUTE
    ))
    .await;
    assert_eq!(rounded["step_ms"], 10 * MINUTE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_outlive_pruned_events_embedded() {
    let data = temp_data_dir("rollups");
    old_ranges_come_from_rollups(dashboard_config_with(
        &data,
        0,
        &["--history-hours", "1", "--prune-every-secs", "1"],
    ))
    .await;
    std::fs::remove_dir_all(data).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_outlive_pruned_events_shared() {
    let redis = RedisServer::start("rollups");
    old_ranges_come_from_rollups(shared_dashboard_config_with(
        &redis.url(),
        "rollups",
        0,
        &["--history-hours", "1", "--prune-every-secs", "1"],
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_parse_back_into_the_stored_events() {
    let data = temp_data_dir("export");
    let registry = data.join("cameras.toml");
    std::fs::write(&registry, "[cameras.cam-a]\nname = \"Gate A, north\"\ngroup = \"north\"\n[cameras.cam-b]\ngroup = \"north\"\n").unwrap();
    let dashboard = crowd::start_dashboard(dashboard_config_with(
        &data,
        0,
        &["--cameras-file", registry.to_str().unwrap()],
    ))
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", dashboard.port);
    let start = now_ms() - 30 * MINUTE;
    let mut events = Vec::new();
    for i in 0..20 {
        events.push(event(
            &format!("a-{i}"),
            "cam-a",
            3 * i,
            start + i as i64 * MINUTE,
        ));
        events.push(event(
            &format!("b-{i}"),
            "cam-b",
            2 * i + 1,
            start + i as i64 * MINUTE + 1000,
        ));
    }
    events.push(event("c-0", "cam-c", 99, start));
    ingest(dashboard.ingest_port, &events).await;

    let response = reqwest::get(format!(
        "{base}/api/v1/export?kind=events&format=csv&group=north"
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "time", "camera", "name", "group", "count", "model", "event_id", "zones"
        ]
    );
    let mut parsed: Vec<(String, String, u32, i64, String)> = Vec::new();
    for row in reader.records() {
        let row = row.unwrap();
        let time =
            time::OffsetDateTime::parse(&row[0], &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert!(row[0].ends_with('Z'), "UTC: {}", &row[0]);
        parsed.push((
            row[6].to_owned(),
            row[1].to_owned(),
            row[4].parse().unwrap(),
            (time.unix_timestamp_nanos() / 1_000_000) as i64,
            row[7].to_owned(),
        ));
        if &row[1] == "cam-a" {
            assert_eq!((&row[2], &row[3]), ("Gate A, north", "north"));
        }
    }
    let mut expected: Vec<(String, String, u32, i64, String)> = events
        .iter()
        .filter(|e| e.camera != "cam-c")
        .map(|e| {
            (
                e.id.clone(),
                e.camera.clone(),
                e.count,
                e.timestamp_ms,
                format!("door={}", e.count / 2),
            )
        })
        .collect();
    parsed.sort();
    expected.sort();
    assert_eq!(
        parsed, expected,
        "the CSV holds exactly the group's stored events"
    );

    let rows: Vec<Value> = reqwest::get(format!(
        "{base}/api/v1/export?kind=events&format=json&cameras=cam-c,cam-a"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(rows.len(), 21);
    let series: Vec<Value> = reqwest::get(format!(
        "{base}/api/v1/export?kind=series&format=json&cameras=cam-a&step=10m&from={start}"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        series
            .iter()
            .map(|s| s["photos"].as_u64().unwrap())
            .sum::<u64>(),
        20
    );
    let csv_series = reqwest::get(format!(
        "{base}/api/v1/export?kind=series&format=csv&cameras=cam-a&step=10m&from={start}"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        csv_series.starts_with("start,camera,photos,last,min,max,mean\n"),
        "{csv_series}"
    );
    let (status, body) = get(&format!("{base}/api/v1/export?cameras=bad%20id")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_camera_id"))
    );
    let (status, _) = get(&format!("{base}/api/v1/export?group=nowhere")).await;
    assert_eq!(status, 404);

    // The group's series is its cameras added up.
    let (status, group) = get(&format!(
        "{base}/api/v1/groups/north/series?from={start}&to={}&step=30m",
        start + 30 * MINUTE
    ))
    .await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["stats"]["photos"], 40);
    std::fs::remove_dir_all(data).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_photos_and_the_registry_with_zones() {
    let data = temp_data_dir("registry");
    let dashboard = crowd::start_dashboard(dashboard_config_with(
        &data,
        0,
        &["--admin-token", ADMIN, "--photos-per-camera", "3"],
    ))
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", dashboard.port);
    let now = now_ms();
    let events: Vec<CountEvent> = (0..5)
        .map(|i| event(&format!("p-{i}"), "gate-1", i, now - (5 - i as i64) * 1000))
        .collect();
    ingest(dashboard.ingest_port, &events).await;
    let (status, photos) = get(&format!("{base}/api/v1/cameras/gate-1/photos")).await;
    assert_eq!(status, 200);
    let kept: Vec<&str> = photos["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept,
        ["p-4", "p-3", "p-2"],
        "the newest three, newest first"
    );
    let url = photos["photos"][0]["url"].as_str().unwrap();
    let jpeg = reqwest::get(format!("{base}{url}")).await.unwrap();
    assert_eq!(jpeg.headers()["content-type"], "image/jpeg");
    let (status, _) = get(&format!("{base}/api/v1/cameras/gate-1/photos/p-0")).await;
    assert_eq!(status, 404, "beyond the kept photos");

    // Settings: only with the admin token; invalid zones are refused with the problem.
    let http = reqwest::Client::new();
    let settings_url = format!("{base}/api/v1/cameras/gate-1/settings");
    let zone = json!({"name": "queue", "points": [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0], [0.1, 1.0]]});
    let body = json!({"name": "Gate 1", "group": "north", "capacity": 100, "warning": "80%", "critical": 100, "zones": [zone]});
    let refused = http.put(&settings_url).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    for (zones, problem) in [
        (
            json!([{"name": "z", "points": [[0.1, 0.1], [0.5, 0.5]]}]),
            "2 points",
        ),
        (
            json!([{"name": "z", "points": [[0.1, 0.1], [0.8, 0.6], [0.6, 0.1], [0.1, 0.6]]}]),
            "intersects itself",
        ),
        (
            json!([{"name": "z", "points": [[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]}]),
            "outside",
        ),
    ] {
        let mut bad = body.clone();
        bad["zones"] = zones;
        let response = http
            .put(&settings_url)
            .bearer_auth(ADMIN)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_zone");
        assert!(
            error["message"].as_str().unwrap().contains(problem),
            "{error}"
        );
    }
    let mut bad = body.clone();
    bad["warning"] = json!("lots");
    let response = http
        .put(&settings_url)
        .bearer_auth(ADMIN)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let stored = http
        .put(&settings_url)
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    let (_, shown) = get(&settings_url).await;
    assert_eq!(shown["zones"][0]["name"], "queue");
    assert_eq!(shown["warning"], "80%");
    // image-predict reads the zones on the ingest listener.
    let zones: Value = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/internal/v1/cameras/gate-1/zones",
            dashboard.ingest_port
        ))
        .bearer_auth(INGEST_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(zones["zones"][0]["points"].as_array().unwrap().len(), 4);
    // The camera's view carries its name, group and capacity; the summary has its group.
    let summary = wait_for_json(&format!("{base}/api/v1/summary"), |s| {
        s["cameras"][0]["name"] == "Gate 1"
    })
    .await;
    assert_eq!(summary["cameras"][0]["group"], "north");
    assert_eq!(summary["groups"][0]["group"], "north");
    assert_eq!(summary["groups"][0]["people_now"], 4);
    std::fs::remove_dir_all(data).ok();
}

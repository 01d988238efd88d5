//! Acting on crowding: a camera crossing its levels raises and clears alerts, which reach a
//! webhook at least once (retried through its failures, signed, never under two ids), are in the
//! alert log and the gauges, and are raised once with two dashboard replicas; zones count the
//! people inside them.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::wire::{CountEvent, encode_event_frame};
use dashboard::state::now_ms;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::redis_server::RedisServer;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "webhook-secret-for-tests";
const REGISTRY: &str = r#"
[cameras.gate-1]
name = "Gate 1"
group = "hall"
capacity = 100
warning = "80%"
critical = 100

[groups.hall]
capacity = 1000
warning = 900
critical = 1000
"#;

/// A webhook receiver on loopback: answers 500 to the first `failures` requests, then 200;
/// keeps every request's alert id, signature and body.
struct Receiver {
    failures: usize,
    seen: Mutex<Vec<Delivery>>,
}

/// One request the receiver saw: alert id, signature, body, the status it answered.
type Delivery = (String, String, Vec<u8>, u16);

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    receiver: web::Data<Receiver>,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let mut seen = receiver.seen.lock().unwrap();
    let status = if seen.len() < receiver.failures {
        500
    } else {
        200
    };
    seen.push((
        header("idempotency-key"),
        header("x-crowd-signature"),
        body.to_vec(),
        status,
    ));
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

async fn start_receiver(failures: usize) -> (String, web::Data<Receiver>) {
    let receiver = web::Data::new(Receiver {
        failures,
        seen: Mutex::new(Vec::new()),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let data = receiver.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(receive))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, receiver)
}

fn small_jpeg() -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::RgbImage::new(8, 8)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    jpeg
}

async fn ingest(ingest_port: u16, events: &[(u32, i64)]) {
    let mut socket = ingest_socket(ingest_port).await;
    for (i, &(count, at)) in events.iter().enumerate() {
        let event = CountEvent {
            id: format!("gate-{at}-{i}"),
            camera: "gate-1".into(),
            count,
            timestamp_ms: at,
            counted_at_ms: at,
            model: "test".into(),
            zones: Vec::new(),
        };
        socket
            .send(Message::Binary(encode_event_frame(
                &event,
                None,
                &small_jpeg(),
            )))
            .await
            .unwrap();
        loop {
            if let Message::Text(text) = socket.next().await.unwrap().unwrap() {
                assert!(text.contains("\"ack\""), "{text}");
                break;
            }
        }
    }
}

/// Waits until the receiver has taken (200) alerts of `ids` distinct ids; returns the requests.
async fn delivered(receiver: &Receiver, ids: usize) -> Vec<(String, String, Vec<u8>, u16)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = receiver.seen.lock().unwrap().clone();
        let mut taken: Vec<&String> = seen.iter().filter(|r| r.3 == 200).map(|r| &r.0).collect();
        taken.sort();
        taken.dedup();
        if taken.len() >= ids {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {ids} alerts delivered: {seen:?}",
            taken.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn alert_flags<'a>(registry: &'a str, hook: &'a str) -> Vec<&'a str> {
    vec![
        "--cameras-file",
        registry,
        "--alert-webhook-url",
        hook,
        "--alert-webhook-secret",
        SECRET,
        "--alert-min-duration-secs",
        "0",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_raise_and_clear_alerts_delivered_through_failures() {
    let data = temp_data_dir("alerts");
    let registry = data.join("cameras.toml");
    std::fs::write(&registry, REGISTRY).unwrap();
    let (hook, receiver) = start_receiver(2).await;
    let dashboard = crowd::start_dashboard(dashboard_config_with(
        &data,
        0,
        &alert_flags(registry.to_str().unwrap(), &hook),
    ))
    .await
    .unwrap();
    let (mut live, _) = live_feed(dashboard.port).await;
    let now = now_ms();
    // 50 normal, 85 warning (raised), 120 critical (raised), 95 (inside the hysteresis band of
    // critical: stays), 40 (cleared to normal).
    ingest(
        dashboard.ingest_port,
        &[
            (50, now - 5000),
            (85, now - 4000),
            (120, now - 3000),
            (95, now - 2000),
            (40, now - 1000),
        ],
    )
    .await;

    let requests = delivered(&receiver, 3).await;
    let ok: Vec<_> = requests.iter().filter(|r| r.3 == 200).collect();
    let mut ids: Vec<&String> = ok.iter().map(|r| &r.0).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        3,
        "three alerts, each under one id: {requests:?}"
    );
    assert!(
        requests.len() >= 5,
        "the first two attempts failed and were retried"
    );
    for (id, signature, body, _) in &requests {
        assert_eq!(
            signature,
            &dashboard::webhooks::signature(SECRET, body),
            "signed"
        );
        let payload: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            &payload["alert"]["id"].as_str().unwrap(),
            id,
            "the idempotency key is the alert's id"
        );
    }
    let kinds: Vec<(String, String)> = ok
        .iter()
        .map(|r| {
            let alert: Value = serde_json::from_slice(&r.2).unwrap();
            (
                alert["alert"]["kind"].as_str().unwrap().to_owned(),
                alert["alert"]["level"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("raised", "warning"),
        ("raised", "critical"),
        ("cleared", "normal"),
    ] {
        assert!(
            kinds.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{kinds:?}"
        );
    }

    // The alert log, the live feed, the camera's level and the gauges.
    let log = wait_for_json(
        &format!("http://127.0.0.1:{}/api/v1/alerts", dashboard.port),
        |a| a["alerts"].as_array().unwrap().len() == 3,
    )
    .await;
    assert_eq!(log["alerts"][0]["level"], "normal", "newest first");
    let mut alerts_live = 0;
    while alerts_live < 3 {
        let message = next_json(&mut live).await;
        if message["type"] == "alert" {
            alerts_live += 1;
        }
    }
    let summary: Value = reqwest::get(format!(
        "http://127.0.0.1:{}/api/v1/summary",
        dashboard.port
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(summary["cameras"][0]["level"], "normal");
    let metrics = reqwest::get(format!(
        "http://127.0.0.1:{}/metrics",
        dashboard.metrics_port
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        metrics.contains("crowd_camera_people_now{camera=\"gate-1\"} 40"),
        "{metrics}"
    );
    assert!(
        metrics.contains("crowd_camera_level{camera=\"gate-1\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dashboard_alert_deliveries_total{outcome=\"failed\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dashboard_alert_deliveries_total{outcome=\"delivered\"} 3"),
        "{metrics}"
    );
    std::fs::remove_dir_all(data).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_raise_one_alert() {
    let redis = RedisServer::start("alerts");
    let data = temp_data_dir("alerts-replicas");
    let registry = data.join("cameras.toml");
    std::fs::write(&registry, REGISTRY).unwrap();
    let (hook, receiver) = start_receiver(0).await;
    let flags = alert_flags(registry.to_str().unwrap(), &hook);
    let a = crowd::start_dashboard(shared_dashboard_config_with(
        &redis.url(),
        "alerts",
        0,
        &flags,
    ))
    .await
    .unwrap();
    let b = crowd::start_dashboard(shared_dashboard_config_with(
        &redis.url(),
        "alerts",
        0,
        &flags,
    ))
    .await
    .unwrap();
    let now = now_ms();
    ingest(
        a.ingest_port,
        &[(10, now - 3000), (90, now - 2000), (130, now - 1000)],
    )
    .await;
    delivered(&receiver, 2).await;
    // Both replicas computed both changes; each was recorded, and delivered, once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one delivery per alert: {seen:?}");
    assert_ne!(seen[0].0, seen[1].0);
    for port in [a.port, b.port] {
        let log = wait_for_json(&format!("http://127.0.0.1:{port}/api/v1/alerts"), |l| {
            l["alerts"].as_array().unwrap().len() == 2
        })
        .await;
        assert_eq!(log["alerts"][0]["level"], "critical");
        let summary = wait_for_json(&format!("http://127.0.0.1:{port}/api/v1/summary"), |s| {
            s["cameras"][0]["level"] == "critical"
        })
        .await;
        assert_eq!(summary["cameras"][0]["count"], 130);
    }
    std::fs::remove_dir_all(data).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_count_the_people_inside_them() {
    let data = temp_data_dir("zones");
    let registry = data.join("cameras.toml");
    let halves = r#"zones = [
  { name = "left", points = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]] },
  { name = "right", points = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]] },
]"#;
    std::fs::write(
        &registry,
        format!("[cameras.street]\n{halves}\n[cameras.plaza]\n{halves}\n"),
    )
    .unwrap();
    let stack = crowd::Stack::start(
        dashboard_config_with(&data, 0, &["--cameras-file", registry.to_str().unwrap()]),
        predict_config(&[]),
        upload_config(&[]),
        auth(),
    )
    .await
    .unwrap();
    let upload = |camera: &'static str, photo: &'static str| {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/cameras/{camera}/photos",
            stack.upload.port
        );
        async move {
            let response = client()
                .post(url)
                .body(evalset_photo(photo))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let zone = |answer: &Value, name: &str| {
        answer["zones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["name"] == name)
            .unwrap()["count"]
            .as_u64()
            .unwrap()
    };

    // A street scene (the detector): a person is in the zone where their feet are.
    let street = upload("street", "shtb_train_17.jpg").await;
    assert_eq!(street["method"], "detector");
    let feet_left = street["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| (b["x1"].as_f64().unwrap() + b["x2"].as_f64().unwrap()) / 2.0 < 0.5)
        .count() as u64;
    assert!(
        feet_left > 0 && feet_left < street["count"].as_u64().unwrap(),
        "people on both sides"
    );
    assert_eq!(zone(&street, "left"), feet_left);
    assert_eq!(
        zone(&street, "left") + zone(&street, "right"),
        street["count"].as_u64().unwrap()
    );

    // A dense crowd (boxes plus the density outside them): each half holds its part of the
    // people, the halves add up.
    let plaza = upload("plaza", "shta_004.jpg").await;
    assert_eq!(plaza["method"], "fusion");
    let (left, right, total) = (
        zone(&plaza, "left"),
        zone(&plaza, "right"),
        plaza["count"].as_u64().unwrap(),
    );
    assert!(
        left.abs_diff(total - right) <= 2,
        "{left} + {right} is about {total}"
    );
    assert!(
        left > total / 10 && right > total / 10,
        "the crowd spans both halves: {left}, {right}"
    );
    // The zones are stored with the event and exported.
    let summary = wait_for_json(
        &format!("http://127.0.0.1:{}/api/v1/summary", stack.dashboard.port),
        |s| s["photos_total"] == 2,
    )
    .await;
    let plaza_view = summary["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["camera"] == "plaza")
        .unwrap()
        .clone();
    assert_eq!(plaza_view["zones"], plaza["zones"]);
    std::fs::remove_dir_all(data).ok();
}

//! Several dashboard replicas on one Redis (`--store redis://…`), as under an autoscaler: every
//! replica shows every event, a replica can die mid-stream or start late, Redis can crash, and
//! every accepted count is still there exactly once.
//!
//! Each test starts its own `redis-server` (see `support::redis_server`) and puts image-predict
//! behind `support::service_proxy`, which hands each new connection to the next live replica
//! as a Kubernetes Service does.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::wire::CountEvent;
use crowd::{Running, start_dashboard, start_predict, start_upload};
use dashboard::store::Inserted;
use dashboard::store::shared::{SharedStore, SharedStoreSettings};
use serde_json::Value;
use support::redis_server::RedisServer;
use support::service_proxy::ServiceProxy;
use support::*;

/// Photos cycled through by the tests, with the cameras they are uploaded as.
const UPLOADS: [(&str, &str); 6] = [
    ("north-gate", "shtb_train_01.jpg"),
    ("south-gate", "shtb_train_03.jpg"),
    ("north-gate", "shtb_train_05.jpg"),
    ("east-door", "shtb_train_07.jpg"),
    ("south-gate", "shtb_train_09.jpg"),
    ("east-door", "shtb_train_11.jpg"),
];

/// One accepted upload: the event id and count image-predict answered.
#[derive(Debug, Clone)]
struct Accepted {
    camera: String,
    event_id: String,
    count: u64,
}

async fn upload_photo(upload_port: u16, camera: &str, photo: &str) -> Accepted {
    let response = client()
        .post(format!("http://127.0.0.1:{upload_port}/upload"))
        .multipart(photo_form(camera, evalset_photo(photo)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "uploading {photo} as {camera}");
    let answer: Value = response.json().await.unwrap();
    Accepted {
        camera: camera.to_owned(),
        event_id: answer["event_id"].as_str().unwrap().to_owned(),
        count: answer["count"].as_u64().unwrap(),
    }
}

/// What every replica must agree on: the summary without its clock.
fn shared_part(summary: &Value) -> Value {
    let mut summary = summary.clone();
    summary.as_object_mut().unwrap().remove("server_time_ms");
    summary.as_object_mut().unwrap().remove("last_30s");
    summary
}

/// (camera, latest count) for each camera, from what was accepted, in upload order.
fn latest_per_camera(accepted: &[Accepted]) -> BTreeMap<String, u64> {
    accepted
        .iter()
        .map(|a| (a.camera.clone(), a.count))
        .collect()
}

fn check_summary(summary: &Value, accepted: &[Accepted]) {
    let total: u64 = accepted.iter().map(|a| a.count).sum();
    assert_eq!(
        summary["photos_total"].as_u64(),
        Some(accepted.len() as u64)
    );
    assert_eq!(summary["counted_total"].as_u64(), Some(total));
    let latest = latest_per_camera(accepted);
    let shown: BTreeMap<String, u64> = summary["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["camera"].as_str().unwrap().to_owned(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown, latest);
    assert_eq!(
        summary["people_now"].as_u64(),
        Some(latest.values().sum::<u64>())
    );
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// The histogram's non-empty windows (the full list ends at "now", which moves).
async fn counted_windows(port: u16) -> Vec<Value> {
    let histogram = get_json(&format!(
        "http://127.0.0.1:{port}/api/v1/histogram?windows=2880"
    ))
    .await;
    histogram["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["photos"].as_u64() != Some(0))
        .cloned()
        .collect()
}

/// A value of a Prometheus metric without labels.
async fn metric(port: u16, name: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found on port {port}"))
}

async fn photo_etag(port: u16, camera: &str) -> String {
    let response = reqwest::get(format!(
        "http://127.0.0.1:{port}/api/v1/cameras/{camera}/photo"
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200, "photo of {camera} on port {port}");
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    response.headers()["etag"].to_str().unwrap().to_owned()
}

/// image-predict pushing to the dashboards' ingest listeners through `service`, and image-upload
/// in front of it.
async fn predict_and_upload(service: &ServiceProxy) -> (Running, Running) {
    let ingest = ingest_url(service.port);
    let internal = format!("http://127.0.0.1:{}", service.port);
    let predict = start_predict(predict_config(&[
        "--dashboard-ingest-url",
        &ingest,
        "--dashboard-internal-url",
        &internal,
    ]))
    .await
    .unwrap();
    let predict_url = format!("http://127.0.0.1:{}", predict.port);
    let upload = start_upload(upload_config(&["--predict-url", &predict_url]))
        .await
        .unwrap();
    (predict, upload)
}

/// Reads `count` messages from a live feed until `n` of them have arrived; returns the event ids
/// they carried (every event here is its camera's newest, so each carries one).
async fn live_event_ids(live: &mut LiveSocket, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let message = next_count(live).await;
        ids.push(
            message["camera"]["event_id"]
                .as_str()
                .unwrap_or_else(|| panic!("a count without its camera: {message}"))
                .to_owned(),
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_shows_every_event_and_a_late_replica_catches_up() {
    let redis = RedisServer::start("replicas");
    let prefix = "replicas";
    let first = start_dashboard(shared_dashboard_config(&redis.url(), prefix, 0))
        .await
        .unwrap();
    let second = start_dashboard(shared_dashboard_config(&redis.url(), prefix, 0))
        .await
        .unwrap();
    let service = ServiceProxy::start(&[first.ingest_port, second.ingest_port]).await;
    let (_predict, upload) = predict_and_upload(&service).await;
    let (mut live_first, _) = live_feed(first.port).await;
    let (mut live_second, _) = live_feed(second.port).await;

    let mut accepted = Vec::new();
    for (camera, photo) in &UPLOADS[..4] {
        accepted.push(upload_photo(upload.port, camera, photo).await);
    }
    let mut expected_ids: Vec<String> = accepted.iter().map(|a| a.event_id.clone()).collect();
    expected_ids.sort();

    // image-predict reached one replica; browsers on both see every event, once.
    for live in [&mut live_first, &mut live_second] {
        let mut ids = live_event_ids(live, accepted.len()).await;
        ids.sort();
        assert_eq!(ids, expected_ids);
    }
    let summary_first = wait_for_json(
        &format!("http://127.0.0.1:{}/api/v1/summary", first.port),
        |s| s["photos_total"] == 4,
    )
    .await;
    let summary_second = wait_for_json(
        &format!("http://127.0.0.1:{}/api/v1/summary", second.port),
        |s| s["photos_total"] == 4,
    )
    .await;
    check_summary(&summary_first, &accepted);
    assert_eq!(shared_part(&summary_first), shared_part(&summary_second));
    let windows = counted_windows(first.port).await;
    assert_eq!(
        windows
            .iter()
            .map(|w| w["photos"].as_u64().unwrap())
            .sum::<u64>(),
        4
    );
    assert_eq!(counted_windows(second.port).await, windows);
    for camera in latest_per_camera(&accepted).keys() {
        assert_eq!(
            photo_etag(first.port, camera).await,
            photo_etag(second.port, camera).await
        );
    }

    // A replica added later (scale-out) rebuilds the same state from Redis.
    let late = start_dashboard(shared_dashboard_config(&redis.url(), prefix, 0))
        .await
        .unwrap();
    let summary_late = get_json(&format!("http://127.0.0.1:{}/api/v1/summary", late.port)).await;
    assert_eq!(shared_part(&summary_late), shared_part(&summary_first));
    assert_eq!(counted_windows(late.port).await, windows);
    let (_live_late, snapshot) = live_feed(late.port).await;
    assert_eq!(
        shared_part(&snapshot["summary"]),
        shared_part(&summary_first)
    );
    for camera in latest_per_camera(&accepted).keys() {
        assert_eq!(
            photo_etag(late.port, camera).await,
            photo_etag(first.port, camera).await
        );
    }

    // And it follows new events like the others.
    let (mut live_late, _) = live_feed(late.port).await;
    let (camera, photo) = UPLOADS[4];
    accepted.push(upload_photo(upload.port, camera, photo).await);
    assert_eq!(
        live_event_ids(&mut live_late, 1).await,
        [accepted[4].event_id.clone()]
    );
    for port in [first.port, second.port, late.port] {
        let summary = wait_for_json(&format!("http://127.0.0.1:{port}/api/v1/summary"), |s| {
            s["photos_total"] == 5
        })
        .await;
        check_summary(&summary, &accepted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_replica_predict_talks_to_loses_and_doubles_nothing() {
    let redis = RedisServer::start("kill");
    let prefix = "kill";
    let mut replicas = vec![
        start_dashboard(shared_dashboard_config(&redis.url(), prefix, 0))
            .await
            .unwrap(),
        start_dashboard(shared_dashboard_config(&redis.url(), prefix, 0))
            .await
            .unwrap(),
    ];
    let ports = [replicas[0].port, replicas[1].port];
    let metrics_ports = [replicas[0].metrics_port, replicas[1].metrics_port];
    let service = ServiceProxy::start(&[replicas[0].ingest_port, replicas[1].ingest_port]).await;
    let (predict, upload) = predict_and_upload(&service).await;
    // A browser on each replica; the one on the killed replica goes with it.
    let mut browsers = vec![live_feed(ports[0]).await.0, live_feed(ports[1]).await.0];

    const PHOTOS: usize = 12;
    const KILL_AFTER: usize = 4;
    let mut accepted = Vec::new();
    let mut killed_port = None;
    for i in 0..PHOTOS {
        let (camera, photo) = UPLOADS[i % UPLOADS.len()];
        if i + 1 == KILL_AFTER {
            // The replica holding image-predict's link is killed right after this count is
            // accepted: its event is then in flight, just stored, or just acknowledged.
            let connected = loop {
                let mut connected = None;
                for (index, port) in metrics_ports.iter().enumerate() {
                    if metric(*port, "dashboard_ingest_connections").await == 1.0 {
                        connected = Some(index);
                    }
                }
                if let Some(index) = connected {
                    break index;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            accepted.push(upload_photo(upload.port, camera, photo).await);
            replicas.remove(connected).kill().await;
            browsers.remove(connected);
            killed_port = Some(ports[connected]);
        } else {
            accepted.push(upload_photo(upload.port, camera, photo).await);
        }
    }
    let killed_port = killed_port.unwrap();
    let survivor = &replicas[0];
    let total: u64 = accepted.iter().map(|a| a.count).sum();

    // Every accepted count, once, on the surviving replica: its REST API and its browser.
    let summary = wait_for_json(
        &format!("http://127.0.0.1:{}/api/v1/summary", survivor.port),
        |s| s["photos_total"].as_u64() >= Some(PHOTOS as u64),
    )
    .await;
    check_summary(&summary, &accepted);
    let mut ids = live_event_ids(&mut browsers[0], PHOTOS).await;
    ids.sort();
    let mut expected: Vec<String> = accepted.iter().map(|a| a.event_id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected, "the browser saw each event exactly once");
    assert_eq!(
        metric(
            predict.metrics_port,
            "predict_dashboard_events_unacknowledged"
        )
        .await,
        0.0
    );
    assert!(
        metric(predict.metrics_port, "predict_dashboard_reconnects_total").await >= 1.0,
        "image-predict moved to the surviving replica"
    );

    // The killed replica comes back (a new pod) and shows the same.
    let restarted = start_dashboard(shared_dashboard_config(&redis.url(), prefix, killed_port))
        .await
        .unwrap();
    let summary_restarted = get_json(&format!(
        "http://127.0.0.1:{}/api/v1/summary",
        restarted.port
    ))
    .await;
    check_summary(&summary_restarted, &accepted);
    assert_eq!(
        counted_windows(restarted.port).await,
        counted_windows(survivor.port).await
    );
    println!(
        "killed the replica on port {killed_port} after {KILL_AFTER} of {PHOTOS} uploads; \
         people counted {total}; duplicates recognised by the survivor: {}; \
         predict reconnects: {}",
        metric(survivor.metrics_port, "dashboard_events_duplicate_total").await,
        metric(predict.metrics_port, "predict_dashboard_reconnects_total").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_redis_crash_with_the_append_only_file() {
    let mut redis = RedisServer::start("aof");
    let prefix = "aof";
    let dashboard = start_dashboard(shared_dashboard_config(&redis.url(), prefix, 0))
        .await
        .unwrap();
    let service = ServiceProxy::start(&[dashboard.ingest_port]).await;
    let (_predict, upload) = predict_and_upload(&service).await;
    let summary_url = format!("http://127.0.0.1:{}/api/v1/summary", dashboard.port);

    let mut accepted = Vec::new();
    for (camera, photo) in &UPLOADS[..3] {
        accepted.push(upload_photo(upload.port, camera, photo).await);
    }
    let before = wait_for_json(&summary_url, |s| s["photos_total"] == 3).await;
    let windows_before = counted_windows(dashboard.port).await;

    redis.crash_and_restart();

    // A replica started now reads everything back from the restarted Redis.
    let late = start_dashboard(shared_dashboard_config(&redis.url(), prefix, 0))
        .await
        .unwrap();
    let after = get_json(&format!("http://127.0.0.1:{}/api/v1/summary", late.port)).await;
    check_summary(&after, &accepted);
    assert_eq!(shared_part(&after), shared_part(&before));
    assert_eq!(counted_windows(late.port).await, windows_before);
    for camera in latest_per_camera(&accepted).keys() {
        photo_etag(late.port, camera).await;
    }

    // The replica that lived through the crash reconnects, and both take new counts.
    let (camera, photo) = UPLOADS[3];
    accepted.push(upload_photo(upload.port, camera, photo).await);
    for port in [dashboard.port, late.port] {
        let summary = wait_for_json(&format!("http://127.0.0.1:{port}/api/v1/summary"), |s| {
            s["photos_total"].as_u64() >= Some(4)
        })
        .await;
        check_summary(&summary, &accepted);
    }
}

/// A tiny real JPEG, as the dashboard accepts only JPEG thumbnails.
fn tiny_jpeg() -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::RgbImage::new(8, 8)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    jpeg
}

/// Sends one event frame on the ingest listener as image-predict does and returns the reply.
async fn send_event(ingest_port: u16, frame: &Bytes) -> Value {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut socket = ingest_socket(ingest_port).await;
    socket.send(Message::Binary(frame.clone())).await.unwrap();
    loop {
        match socket.next().await.expect("a reply").unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            _ => continue,
        }
    }
}

/// The case a kill can leave behind, made on purpose: replica A stored an event but its
/// acknowledgement never reached image-predict, which resends it, through the Service, to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stored_by_one_replica_and_resent_to_another_counts_once() {
    let redis = RedisServer::start("resend");
    let prefix = "resend";
    let a = start_dashboard(shared_dashboard_config(&redis.url(), prefix, 0))
        .await
        .unwrap();
    let b = start_dashboard(shared_dashboard_config(&redis.url(), prefix, 0))
        .await
        .unwrap();
    let frame =
        common::wire::encode_event_frame(&event("resent-1", "gate", 7, 1_000), None, &tiny_jpeg());

    assert_eq!(send_event(a.ingest_port, &frame).await["type"], "ack");
    // Stored: B shows it too, before the resend.
    wait_for_json(
        &format!("http://127.0.0.1:{}/api/v1/summary", b.port),
        |s| s["photos_total"] == 1,
    )
    .await;
    assert_eq!(
        send_event(b.ingest_port, &frame).await,
        serde_json::json!({"type": "ack", "id": "resent-1", "duplicate": true})
    );
    assert_eq!(
        metric(b.metrics_port, "dashboard_events_duplicate_total").await,
        1.0
    );
    assert_eq!(
        metric(b.metrics_port, "dashboard_events_stored_total").await,
        0.0
    );
    for port in [a.port, b.port] {
        let summary = get_json(&format!("http://127.0.0.1:{port}/api/v1/summary")).await;
        assert_eq!(summary["photos_total"], 1);
        assert_eq!(summary["counted_total"], 7);
    }
}

fn event(id: &str, camera: &str, count: u32, timestamp_ms: i64) -> CountEvent {
    CountEvent {
        id: id.into(),
        camera: camera.into(),
        count,
        timestamp_ms,
        counted_at_ms: timestamp_ms,
        model: "test".into(),
        zones: Vec::new(),
    }
}

fn settings(prefix: &str, stream_max_len: u64) -> SharedStoreSettings {
    SharedStoreSettings {
        key_prefix: prefix.into(),
        stream_max_len,
        id_memory: Duration::from_secs(3600),
        rollup_memory: Duration::from_secs(86_400),
        photos_per_camera: 4,
        password: None,
        ca_file: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_storing_the_same_resent_event_count_it_once() {
    let redis = RedisServer::start("idempotence");
    let first = SharedStore::connect(&redis.url(), settings("same", 1000))
        .await
        .unwrap();
    let second = SharedStore::connect(&redis.url(), settings("same", 1000))
        .await
        .unwrap();
    let thumbnail = Bytes::from_static(b"\xFF\xD8\xFFjpeg");
    for i in 0..50 {
        let resent = event(&format!("e-{i}"), "cam", 2, 1_000 + i);
        let (a, b) = tokio::join!(
            first.insert(&resent, &thumbnail, None),
            second.insert(&resent, &thumbnail, None)
        );
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| *o == Inserted::Duplicate);
        assert_eq!(outcomes, [Inserted::New, Inserted::Duplicate], "event {i}");
    }
    // A late, older event counts but does not replace the newest photo.
    first
        .insert(
            &event("old", "cam", 5, 10),
            &Bytes::from_static(b"old"),
            None,
        )
        .await
        .unwrap();
    let snapshot = second.snapshot(0).await.unwrap();
    assert_eq!(snapshot.photos_total, 51);
    assert_eq!(snapshot.people_total, 105);
    assert_eq!(snapshot.timeline.len(), 51);
    assert_eq!(snapshot.latest.len(), 1);
    assert_eq!(snapshot.latest[0].id, "e-49");
    assert_eq!(
        second.latest_photo("cam").await.unwrap(),
        Some((Bytes::from_static(b"\xFF\xD8\xFFjpeg"), "e-49".to_owned()))
    );

    // Following the log from a snapshot's position yields exactly what came after it.
    let mut reader = first.log_reader().await.unwrap();
    let position = snapshot.log_position.unwrap();
    second
        .insert(&event("next", "cam", 3, 9_999), &thumbnail, None)
        .await
        .unwrap();
    let entries = reader.read_after(&position).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].event.id, "next");
    assert_eq!(
        (entries[0].people_total, entries[0].photos_total),
        (108, 52)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_outlive_the_stream_retention() {
    let redis = RedisServer::start("retention");
    let store = SharedStore::connect(&redis.url(), settings("retention", 10))
        .await
        .unwrap();
    let thumbnail = Bytes::from_static(b"\xFF\xD8\xFFjpeg");
    for i in 0..300 {
        store
            .insert(
                &event(&format!("r-{i}"), "cam", 1, 1_000 + i),
                &thumbnail,
                None,
            )
            .await
            .unwrap();
    }
    let snapshot = store.snapshot(0).await.unwrap();
    assert!(
        snapshot.timeline.len() < 300,
        "the stream is trimmed: {} entries kept",
        snapshot.timeline.len()
    );
    assert_eq!((snapshot.people_total, snapshot.photos_total), (300, 300));
    // A resend of a trimmed event is still recognised.
    assert_eq!(
        store
            .insert(&event("r-0", "cam", 1, 1_000), &thumbnail, None)
            .await
            .unwrap(),
        Inserted::Duplicate
    );
}

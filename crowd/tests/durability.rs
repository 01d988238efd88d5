//! Nothing answered is lost, nothing retried counts twice: the services as separate processes
//! (`crowd run …`, the code of the service binaries), killed with SIGKILL as a node failure or an
//! OOM kill would, and started again.
//!
//! The promise under test: a 2xx answer means the dashboard has stored the count durably (redb
//! commit, or Redis with its append-only file fsynced); while it cannot, photos are answered 503
//! `count_not_stored` and the camera sends them again, with its idempotency key, after which they
//! count once.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::testing::ServiceProcess;
use serde_json::Value;
use support::redis_server::RedisServer;
use support::service_proxy::ServiceProxy;
use support::*;

const CROWD: &str = env!("CARGO_BIN_EXE_crowd");

fn start_dashboard_process(env: &[(&str, &str)]) -> ServiceProcess {
    let mut env = env.to_vec();
    env.push(("INGEST_TOKEN", INGEST_TOKEN));
    ServiceProcess::start_listening_args(
        CROWD,
        &["run", "dashboard"],
        &[
            "DASHBOARD_ADDR",
            "DASHBOARD_INGEST_ADDR",
            "DASHBOARD_METRICS_ADDR",
        ],
        &env,
        Duration::from_secs(60),
    )
}

fn start_predict_process(ingest_port: u16) -> ServiceProcess {
    let ingest = ingest_url(ingest_port);
    let internal = format!("http://127.0.0.1:{ingest_port}");
    let detector = repo_root().join("models/centernet/centernet.onnx");
    let density = repo_root().join("models/csrnet/csrnet.onnx");
    ServiceProcess::start_listening_args(
        CROWD,
        &["run", "predict"],
        &["PREDICT_ADDR", "PREDICT_METRICS_ADDR"],
        &[
            ("DASHBOARD_INGEST_URL", ingest.as_str()),
            ("DASHBOARD_INTERNAL_URL", internal.as_str()),
            ("INGEST_TOKEN", INGEST_TOKEN),
            ("API_KEYS_FILE", keys().file.to_str().unwrap()),
            ("DETECTOR_MODEL", detector.to_str().unwrap()),
            ("DENSITY_MODEL", density.to_str().unwrap()),
            ("DELIVERY_TIMEOUT_SECS", "3"),
        ],
        Duration::from_secs(180),
    )
}

fn start_upload_process(predict_port: u16) -> ServiceProcess {
    let predict = format!("http://127.0.0.1:{predict_port}");
    ServiceProcess::start_listening_args(
        CROWD,
        &["run", "upload"],
        &["UPLOAD_ADDR", "UPLOAD_METRICS_ADDR"],
        &[
            ("PREDICT_URL", predict.as_str()),
            ("API_KEYS_FILE", keys().file.to_str().unwrap()),
        ],
        Duration::from_secs(60),
    )
}

/// One upload with its idempotency key; (status, answer).
async fn upload(upload_port: u16, camera: &str, photo: &str, key: &str) -> (u16, Value) {
    let response = client()
        .post(format!(
            "http://127.0.0.1:{upload_port}/api/v1/cameras/{camera}/photos"
        ))
        .header("content-type", "image/jpeg")
        .header("Idempotency-Key", key)
        .body(evalset_photo(photo))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

const PHOTOS: [&str; 5] = [
    "shtb_train_01.jpg",
    "shtb_train_03.jpg",
    "shtb_train_05.jpg",
    "shtb_train_07.jpg",
    "shtb_train_09.jpg",
];

/// Every answered count once: the dashboard's totals are the sum of the 2xx answers, and its
/// export holds each answered event id exactly once.
async fn assert_each_answer_once(dashboard_port: u16, answered: &BTreeMap<String, u64>) {
    let total: u64 = answered.values().sum();
    let summary_url = format!("http://127.0.0.1:{dashboard_port}/api/v1/summary");
    let summary = wait_for_json(&summary_url, |s| {
        s["photos_total"].as_u64() >= Some(answered.len() as u64)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let summary: Value = reqwest::get(&summary_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(summary);
    assert_eq!(
        summary["photos_total"].as_u64(),
        Some(answered.len() as u64),
        "{summary}"
    );
    assert_eq!(summary["counted_total"].as_u64(), Some(total), "{summary}");
    let export: Vec<Value> = reqwest::get(format!(
        "http://127.0.0.1:{dashboard_port}/api/v1/export?kind=events&format=json"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let mut ids: Vec<String> = export
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let expected: Vec<String> = answered.keys().cloned().collect();
    assert_eq!(ids, expected, "each answered event stored exactly once");
}

/// Embedded store: SIGKILL of the dashboard, uploads, SIGKILL of image-predict, restart of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_services_lose_no_answered_count_and_retries_count_once() {
    let data = temp_data_dir("durability");
    let data_env = data.to_str().unwrap().to_owned();
    let dashboard = tokio::task::spawn_blocking({
        let data_env = data_env.clone();
        move || start_dashboard_process(&[("DASHBOARD_DATA_DIR", &data_env)])
    })
    .await
    .unwrap();
    let ports = (
        dashboard.port_of("DASHBOARD_ADDR"),
        dashboard.port_of("DASHBOARD_INGEST_ADDR"),
        dashboard.port_of("DASHBOARD_METRICS_ADDR"),
    );
    let ingest_port = ports.1;
    let predict = tokio::task::spawn_blocking(move || start_predict_process(ingest_port))
        .await
        .unwrap();
    let predict_port = predict.port;
    let upload_process = tokio::task::spawn_blocking(move || start_upload_process(predict_port))
        .await
        .unwrap();
    let upload_port = upload_process.port;

    let mut answered: BTreeMap<String, u64> = BTreeMap::new();
    for (i, photo) in PHOTOS[..3].iter().enumerate() {
        let (status, answer) = upload(upload_port, "cam", photo, &format!("cam/{i}")).await;
        assert_eq!(status, 200, "{answer}");
        answered.insert(
            answer["event_id"].as_str().unwrap().to_owned(),
            answer["count"].as_u64().unwrap(),
        );
    }

    // A node failure takes the dashboard: what is uploaded now cannot be stored, and is refused.
    dashboard.signal("KILL");
    let mut refused = Vec::new();
    for (i, photo) in PHOTOS[3..].iter().enumerate() {
        let key = format!("cam/{}", i + 3);
        let (status, answer) = upload(upload_port, "cam", photo, &key).await;
        match status {
            200 => {
                answered.insert(
                    answer["event_id"].as_str().unwrap().to_owned(),
                    answer["count"].as_u64().unwrap(),
                );
            }
            503 => {
                assert_eq!(answer["error"], "count_not_stored", "{answer}");
                refused.push((key, *photo));
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert!(
        !refused.is_empty(),
        "with the dashboard dead, uploads are refused"
    );
    // And image-predict dies too (its memory held nothing answered).
    predict.signal("KILL");
    drop(dashboard);
    drop(predict);

    let dashboard = tokio::task::spawn_blocking({
        let data_env = data_env.clone();
        move || {
            start_dashboard_process(&[
                ("DASHBOARD_DATA_DIR", &data_env),
                ("DASHBOARD_ADDR", &format!("127.0.0.1:{}", ports.0)),
                ("DASHBOARD_INGEST_ADDR", &format!("127.0.0.1:{}", ports.1)),
                ("DASHBOARD_METRICS_ADDR", &format!("127.0.0.1:{}", ports.2)),
            ])
        }
    })
    .await
    .unwrap();
    let _predict = tokio::task::spawn_blocking(move || {
        ServiceProcess::start_listening_args(
            CROWD,
            &["run", "predict"],
            &["PREDICT_ADDR", "PREDICT_METRICS_ADDR"],
            &predict_env(ingest_port, predict_port),
            Duration::from_secs(180),
        )
    })
    .await
    .unwrap();
    assert_each_answer_once(ports.0, &answered).await;

    // The cameras send the refused photos again, with their keys: counted now, once.
    for (key, photo) in &refused {
        let (status, answer) = upload(upload_port, "cam", photo, key).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["replayed"], false);
        answered.insert(
            answer["event_id"].as_str().unwrap().to_owned(),
            answer["count"].as_u64().unwrap(),
        );
    }
    // A retry of an answered photo gets the first answer and is not counted again.
    let (first_key, first_photo) = ("cam/0", PHOTOS[0]);
    let (status, replay) = upload(upload_port, "cam", first_photo, first_key).await;
    assert_eq!(status, 200);
    assert_eq!(replay["replayed"], true, "{replay}");
    assert!(answered.contains_key(replay["event_id"].as_str().unwrap()));
    // The same photo with two new keys is two photos.
    for key in ["again/a", "again/b"] {
        let (status, answer) = upload(upload_port, "cam", first_photo, key).await;
        assert_eq!(status, 200);
        answered.insert(
            answer["event_id"].as_str().unwrap().to_owned(),
            answer["count"].as_u64().unwrap(),
        );
    }
    assert_each_answer_once(ports.0, &answered).await;
    drop(dashboard);
    drop(upload_process);
    std::fs::remove_dir_all(data).ok();
}

fn predict_env(ingest_port: u16, predict_port: u16) -> Vec<(&'static str, String)> {
    let detector = repo_root().join("models/centernet/centernet.onnx");
    let density = repo_root().join("models/csrnet/csrnet.onnx");
    vec![
        ("PREDICT_ADDR", format!("127.0.0.1:{predict_port}")),
        ("DASHBOARD_INGEST_URL", ingest_url(ingest_port)),
        (
            "DASHBOARD_INTERNAL_URL",
            format!("http://127.0.0.1:{ingest_port}"),
        ),
        ("INGEST_TOKEN", INGEST_TOKEN.to_owned()),
        ("API_KEYS_FILE", keys().file.to_str().unwrap().to_owned()),
        ("DETECTOR_MODEL", detector.to_str().unwrap().to_owned()),
        ("DENSITY_MODEL", density.to_str().unwrap().to_owned()),
        ("DELIVERY_TIMEOUT_SECS", "3".to_owned()),
    ]
}

/// Redis store, two dashboard replicas behind a Service: the replica image-predict talks to
/// and image-predict itself are killed; every answered count is there once, on both replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_and_two_replicas_killing_the_connected_replica_and_predict_loses_nothing() {
    let redis = RedisServer::start("durability");
    let url = redis.url();
    let replicas = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            let env = [
                ("DASHBOARD_STORE", url.as_str()),
                ("DASHBOARD_REDIS_PREFIX", "durable"),
            ];
            [start_dashboard_process(&env), start_dashboard_process(&env)]
        }
    })
    .await
    .unwrap();
    let [first, second] = replicas;
    let service = ServiceProxy::start(&[
        first.port_of("DASHBOARD_INGEST_ADDR"),
        second.port_of("DASHBOARD_INGEST_ADDR"),
    ])
    .await;
    let service_port = service.port;
    let predict = tokio::task::spawn_blocking(move || start_predict_process(service_port))
        .await
        .unwrap();
    let predict_port = predict.port;
    let upload_process = tokio::task::spawn_blocking(move || start_upload_process(predict_port))
        .await
        .unwrap();
    let upload_port = upload_process.port;

    let mut answered = BTreeMap::new();
    for (i, photo) in PHOTOS[..2].iter().enumerate() {
        let (status, answer) = upload(upload_port, "gate-1", photo, &format!("r/{i}")).await;
        assert_eq!(status, 200, "{answer}");
        answered.insert(
            answer["event_id"].as_str().unwrap().to_owned(),
            answer["count"].as_u64().unwrap(),
        );
    }
    // Which replica holds image-predict's link.
    let connected = |process: &ServiceProcess| {
        let port = process.port_of("DASHBOARD_METRICS_ADDR");
        async move {
            let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines().any(|l| l == "dashboard_ingest_connections 1")
        }
    };
    let (victim, survivor) = if connected(&first).await {
        (first, second)
    } else {
        (second, first)
    };
    victim.signal("KILL");
    predict.signal("KILL");
    drop(victim);
    drop(predict);
    let _predict = tokio::task::spawn_blocking(move || {
        ServiceProcess::start_listening_args(
            CROWD,
            &["run", "predict"],
            &["PREDICT_ADDR", "PREDICT_METRICS_ADDR"],
            &predict_env(service_port, predict_port),
            Duration::from_secs(180),
        )
    })
    .await
    .unwrap();
    // After the restart image-predict reaches the surviving replica through the Service.
    for (i, photo) in PHOTOS[2..].iter().enumerate() {
        let key = format!("r/{}", i + 2);
        let mut stored = None;
        for _ in 0..20 {
            let (status, answer) = upload(upload_port, "gate-1", photo, &key).await;
            if status == 200 {
                stored = Some(answer);
                break;
            }
            assert_eq!(answer["error"], "count_not_stored", "{answer}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let answer = stored.expect("stored once the link is back");
        answered.insert(
            answer["event_id"].as_str().unwrap().to_owned(),
            answer["count"].as_u64().unwrap(),
        );
    }
    assert_each_answer_once(survivor.port, &answered).await;
    // A replica started now (the killed one's replacement) shows the same, from Redis.
    let replacement = tokio::task::spawn_blocking(move || {
        start_dashboard_process(&[
            ("DASHBOARD_STORE", &url),
            ("DASHBOARD_REDIS_PREFIX", "durable"),
        ])
    })
    .await
    .unwrap();
    assert_each_answer_once(replacement.port, &answered).await;
    drop(upload_process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_time_outside_the_window_is_refused() {
    let (dashboard, data) = start_test_dashboard("capture").await;
    let flags = predict_flags_for(&dashboard);
    let predict = crowd::start_predict(predict_config(
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .await
    .unwrap();
    let upload = crowd::start_upload(upload_config(&[
        "--predict-url",
        &format!("http://127.0.0.1:{}", predict.port),
    ]))
    .await
    .unwrap();
    let send = |time: &str| {
        client()
            .post(format!(
                "http://127.0.0.1:{}/api/v1/cameras/cam/photos",
                upload.port
            ))
            .header("content-type", "image/jpeg")
            .header("Capture-Time", time.to_owned())
            .body(evalset_photo("shtb_train_13.jpg"))
            .send()
    };
    for (time, what) in [
        ("2099-01-01T00:00:00Z", "ahead"),
        ("2020-01-01T00:00:00Z", "older"),
        ("yesterday", "RFC 3339"),
    ] {
        let response = send(time).await.unwrap();
        assert_eq!(response.status(), 400, "{time}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_capture_time");
        assert!(body["message"].as_str().unwrap().contains(what), "{body}");
    }
    // A capture time a minute ago is taken: the photo is placed at it.
    let minute_ago = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let stamp = minute_ago
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let response = send(&stamp).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let expected = (minute_ago.unix_timestamp_nanos() / 1_000_000) as i64;
    assert!(
        (answer["timestamp_ms"].as_i64().unwrap() - expected).abs() < 1000,
        "{answer}"
    );
    assert!(answer["counted_at_ms"].as_i64().unwrap() > answer["timestamp_ms"].as_i64().unwrap());
    dashboard.stop().await.unwrap();
    std::fs::remove_dir_all(data).ok();
}

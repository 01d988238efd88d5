//! image-upload spreads photos over image-predict replicas behind a Service (one connection per
//! photo, so the Service places each), and sends a photo once more, on a new connection, when a
//! replica answered 503 or refused the connection.

mod support;

use std::net::TcpListener;
use std::sync::Mutex;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use crowd::{start_predict, start_upload};
use serde_json::Value;
use support::service_proxy::ServiceProxy;
use support::*;

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

async fn upload_raw(upload_port: u16, photo: &[u8]) -> reqwest::Response {
    client()
        .post(format!(
            "http://127.0.0.1:{upload_port}/api/v1/cameras/gate/photos"
        ))
        .header("content-type", "image/jpeg")
        .body(photo.to_vec())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_reach_every_predict_replica_behind_a_service() {
    let (dashboard, data) = start_test_dashboard("spreading").await;
    let flags = predict_flags_for(&dashboard);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let replicas = [
        start_predict(predict_config(&flags)).await.unwrap(),
        start_predict(predict_config(&flags)).await.unwrap(),
    ];
    let service = ServiceProxy::start(&[replicas[0].port, replicas[1].port]).await;
    let predict_url = format!("http://127.0.0.1:{}", service.port);
    let upload = start_upload(upload_config(&["--predict-url", &predict_url]))
        .await
        .unwrap();
    let photo = evalset_photo("shtb_train_13.jpg");
    const PHOTOS: usize = 6;
    for _ in 0..PHOTOS {
        assert_eq!(upload_raw(upload.port, &photo).await.status(), 200);
    }
    let mut counted = Vec::new();
    for replica in &replicas {
        counted.push(metric(replica.metrics_port, "predict_photos_counted_total").await);
    }
    println!("photos counted per predict replica: {counted:?}");
    assert_eq!(counted.iter().sum::<f64>(), PHOTOS as f64);
    assert!(
        counted.iter().all(|&n| n > 0.0),
        "a kept-alive connection would send every photo to one replica: {counted:?}"
    );
    dashboard.stop().await.unwrap();
    std::fs::remove_dir_all(data).ok();
}

/// A fake image-predict: answers 503 `overloaded` to the first `busy_answers` requests, then a
/// count; remembers the client port of each request (one port = one connection).
struct FakePredict {
    busy_answers: usize,
    client_ports: Mutex<Vec<u16>>,
}

async fn fake_count(req: HttpRequest, fake: web::Data<FakePredict>) -> HttpResponse {
    let seen = {
        let mut ports = fake.client_ports.lock().unwrap();
        ports.push(req.peer_addr().unwrap().port());
        ports.len()
    };
    if seen <= fake.busy_answers {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(serde_json::json!({"error": "overloaded", "message": "all workers busy"}))
    } else {
        HttpResponse::Ok().json(serde_json::json!({"count": 3}))
    }
}

async fn start_fake_predict(busy_answers: usize) -> (u16, web::Data<FakePredict>) {
    let fake = web::Data::new(FakePredict {
        busy_answers,
        client_ports: Mutex::new(Vec::new()),
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = fake.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(served.clone())
            .default_service(web::to(fake_count))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (port, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_once_on_a_new_connection() {
    let photo = evalset_photo("shtb_train_13.jpg");

    // Busy once: the second try, on another connection, is counted.
    let (port, fake) = start_fake_predict(1).await;
    let url = format!("http://127.0.0.1:{port}");
    let upload = start_upload(upload_config(&["--predict-url", &url]))
        .await
        .unwrap();
    let response = upload_raw(upload.port, &photo).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["count"], 3);
    let ports = fake.client_ports.lock().unwrap().clone();
    assert_eq!(ports.len(), 2, "one retry");
    assert_ne!(ports[0], ports[1], "the retry uses a new connection");
    assert_eq!(
        metric(upload.metrics_port, "upload_predict_retries_total").await,
        1.0
    );

    // Busy twice: only one retry, then the 503 is passed through with its Retry-After.
    let (port, fake) = start_fake_predict(usize::MAX).await;
    let url = format!("http://127.0.0.1:{port}");
    let upload = start_upload(upload_config(&["--predict-url", &url]))
        .await
        .unwrap();
    let response = upload_raw(upload.port, &photo).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "overloaded"
    );
    assert_eq!(fake.client_ports.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_once() {
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let upload = start_upload(upload_config(&["--predict-url", &nobody]))
        .await
        .unwrap();
    let response = upload_raw(upload.port, &evalset_photo("shtb_train_13.jpg")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "predict_unavailable"
    );
    assert_eq!(
        metric(upload.metrics_port, "upload_predict_retries_total").await,
        1.0
    );
}

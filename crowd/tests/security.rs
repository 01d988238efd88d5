//! Only those who belong may write: a stranger's forged frame reaches no one, a camera without a
//! key cannot upload, one with a key only for its own cameras, and no faster than its rate;
//! nothing private is served on a public port; Redis with a password and over TLS.

mod support;

use std::time::Duration;

use common::wire::{CountEvent, encode_event_frame};
use crowd::Stack;
use dashboard::store::shared::{SharedStore, SharedStoreSettings};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::redis_server::RedisServer;
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "expected {status} {code}");
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"], code, "{body}");
    body
}

fn forged_event() -> CountEvent {
    CountEvent {
        id: "forged-1".into(),
        camera: "made-up".into(),
        count: 99_999,
        timestamp_ms: dashboard::state::now_ms(),
        counted_at_ms: 0,
        model: "forged".into(),
        zones: Vec::new(),
    }
}

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

/// The HTTP status a WebSocket upgrade to `url` with `token` is refused with, if refused.
async fn upgrade_refusal(url: &str, token: Option<&str>) -> Option<u16> {
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => None,
        Err(WsError::Http(response)) => Some(response.status().as_u16()),
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_forged_frame_reaches_no_one() {
    let data = temp_data_dir("forged");
    let stack = Stack::start(
        dashboard_config(&data, 0),
        predict_config(&[]),
        upload_config(&[]),
        auth(),
    )
    .await
    .unwrap();
    let summary_url = format!("http://127.0.0.1:{}/api/v1/summary", stack.dashboard.port);

    // The public port has no ingest route at all.
    let public = format!("ws://127.0.0.1:{}/ws/ingest", stack.dashboard.port);
    assert_eq!(upgrade_refusal(&public, None).await, Some(404));
    assert_eq!(
        upgrade_refusal(&public, Some(INGEST_TOKEN)).await,
        Some(404)
    );
    // The ingest listener wants the token.
    let ingest = ingest_url(stack.dashboard.ingest_port);
    assert_eq!(upgrade_refusal(&ingest, None).await, Some(401));
    assert_eq!(
        upgrade_refusal(&ingest, Some("not-the-token-0123456789")).await,
        Some(401)
    );
    let refused = reqwest::get(format!(
        "http://127.0.0.1:{}/internal/v1/cameras/x/zones",
        stack.dashboard.ingest_port
    ))
    .await
    .unwrap();
    let body = expect_error(refused, 401, "unauthorized").await;
    assert!(body["message"].as_str().unwrap().contains("credentials"));
    let summary: Value = reqwest::get(&summary_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["counted_total"], 0, "nothing stored: {summary}");
    assert_eq!(summary["camera_count"], 0);

    // With the token, the same frame is stored (the token is what makes image-predict itself).
    let mut socket = ingest_socket(stack.dashboard.ingest_port).await;
    socket
        .send(Message::Binary(encode_event_frame(
            &forged_event(),
            None,
            &tiny_jpeg(),
        )))
        .await
        .unwrap();
    let reply = loop {
        if let Message::Text(text) = socket.next().await.unwrap().unwrap() {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    assert_eq!(reply["type"], "ack", "{reply}");
    let summary = wait_for_json(&summary_url, |s| s["photos_total"] == 1).await;
    assert_eq!(summary["counted_total"], 99_999);
    let refusals: String = reqwest::get(format!(
        "http://127.0.0.1:{}/metrics",
        stack.dashboard.metrics_port
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        refusals
            .lines()
            .any(|l| l.starts_with("dashboard_ingest_refused_total") && !l.ends_with(" 0")),
        "refusals counted"
    );
    std::fs::remove_dir_all(data).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_need_a_key_for_their_camera() {
    let data = temp_data_dir("keys");
    let stack = Stack::start(
        dashboard_config(&data, 0),
        predict_config(&[]),
        upload_config(&[]),
        auth(),
    )
    .await
    .unwrap();
    let upload = format!("http://127.0.0.1:{}", stack.upload.port);
    let photo = evalset_photo("shtb_train_13.jpg");
    let anonymous = reqwest::Client::new();
    let post = |client: &reqwest::Client, camera: &str, key: Option<&str>| {
        let mut request = client
            .post(format!("{upload}/api/v1/cameras/{camera}/photos"))
            .header("content-type", "image/jpeg")
            .body(photo.clone());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };

    let response = post(&anonymous, "gate-1", None).await.unwrap();
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    expect_error(response, 401, "unauthorized").await;
    let unknown = "crowd_k_00000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    expect_error(
        post(&anonymous, "gate-1", Some(unknown)).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let body = expect_error(
        post(&anonymous, "north", Some(&keys().gates))
            .await
            .unwrap(),
        403,
        "camera_not_allowed",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("north"));
    // The form route checks the camera inside the form the same way.
    let form = anonymous
        .post(format!("{upload}/upload"))
        .bearer_auth(&keys().gates)
        .multipart(photo_form("north", photo.clone()))
        .send()
        .await
        .unwrap();
    expect_error(form, 403, "camera_not_allowed").await;

    let ok = post(&anonymous, "gate-1", Some(&keys().gates))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let counted: Value = ok.json().await.unwrap();
    assert!(counted["count"].as_u64().is_some());
    assert_eq!(
        post(&anonymous, "north", Some(&keys().all))
            .await
            .unwrap()
            .status(),
        200
    );

    // image-predict, reachable inside the cluster, checks the key too.
    let predict = format!(
        "http://127.0.0.1:{}/api/v1/cameras/gate-1/photos",
        stack.predict.port
    );
    let direct = anonymous
        .post(&predict)
        .header("content-type", "image/jpeg")
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    expect_error(direct, 401, "unauthorized").await;
    let direct = anonymous
        .post(format!(
            "http://127.0.0.1:{}/api/v1/cameras/north/photos",
            stack.predict.port
        ))
        .bearer_auth(&keys().gates)
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    expect_error(direct, 403, "camera_not_allowed").await;

    // Nothing refused reached the dashboard.
    let summary = wait_for_json(
        &format!("http://127.0.0.1:{}/api/v1/summary", stack.dashboard.port),
        |s| s["photos_total"] == 2,
    )
    .await;
    let cameras: Vec<&str> = summary["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["camera"].as_str().unwrap())
        .collect();
    assert_eq!(cameras, ["gate-1", "north"]);
    std::fs::remove_dir_all(data).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_over_its_rate_gets_429_and_recovers() {
    let data = temp_data_dir("rate");
    let stack = Stack::start(
        dashboard_config(&data, 0),
        predict_config(&[]),
        upload_config(&["--rate-limit-per-minute", "60", "--rate-limit-burst", "2"]),
        auth(),
    )
    .await
    .unwrap();
    let url = format!(
        "http://127.0.0.1:{}/api/v1/cameras/gate-1/photos",
        stack.upload.port
    );
    // Not photos: each costs a token (checked before the body is read) and is refused 415
    // afterwards, so that the test measures the bucket, not the model.
    let send = |key: &str| {
        reqwest::Client::new()
            .post(&url)
            .bearer_auth(key)
            .header("content-type", "image/jpeg")
            .body(b"not a photo".to_vec())
            .send()
    };
    assert_eq!(send(&keys().gates).await.unwrap().status(), 415);
    assert_eq!(send(&keys().gates).await.unwrap().status(), 415);
    let limited = send(&keys().gates).await.unwrap();
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    let body = expect_error(limited, 429, "rate_limited").await;
    assert!(body["message"].as_str().unwrap().contains("60 a minute"));
    // Another key has its own bucket.
    assert_eq!(send(&keys().all).await.unwrap().status(), 415);
    // One token a second comes back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send(&keys().gates).await.unwrap().status(), 415);
    let metrics = reqwest::get(format!(
        "http://127.0.0.1:{}/metrics",
        stack.upload.metrics_port
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("upload_rate_limited_total{key=\"k_") && l.ends_with(" 1")),
        "the refusal is counted per key:\n{metrics}"
    );
    std::fs::remove_dir_all(data).ok();
}

/// The secret part of a key `crowd_k_<8 hex digits>_<secret>`. Not the text after the last `_`:
/// the secret is base64url, which has `_` in its alphabet, and a fragment of a few characters
/// after one is often found in a file of hex digests by chance.
fn secret_of(key: &str) -> &str {
    let secret = &key["crowd_k_".len() + 9..];
    assert_eq!(secret.len(), 43, "32 bytes, base64url: {key}");
    secret
}

#[test]
fn the_key_file_holds_no_key_and_crowd_keys_new_writes_only_the_line() {
    let text = std::fs::read_to_string(&keys().file).unwrap();
    for key in [&keys().all, &keys().gates] {
        assert!(!text.contains(secret_of(key)), "a secret in the key file");
    }
    let dir = temp_data_dir("keys-new");
    let file = dir.join("api-keys");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crowd"))
        .args(["keys", "new", "--cameras", "gate-*", "--append"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("crowd_k_"), "{key}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(!written.contains(secret_of(&key)), "{written}");
    let parsed = common::auth::KeyFile::parse(&written).unwrap();
    let entry = parsed.verify(&key).unwrap();
    assert!(entry.scope.allows("gate-7") && !entry.scope.allows("north"));
    std::fs::remove_dir_all(dir).ok();
}

fn store_settings(
    prefix: &str,
    password: Option<&str>,
    ca_file: Option<std::path::PathBuf>,
) -> SharedStoreSettings {
    SharedStoreSettings {
        key_prefix: prefix.into(),
        stream_max_len: 1000,
        id_memory: Duration::from_secs(3600),
        rollup_memory: Duration::from_secs(86_400),
        photos_per_camera: 4,
        password: password.map(str::to_owned),
        ca_file,
    }
}

async fn stores_an_event(store: &SharedStore) {
    let event = CountEvent {
        id: "e-1".into(),
        ..forged_event()
    };
    let jpeg = bytes::Bytes::from(tiny_jpeg());
    assert_eq!(
        store.insert(&event, &jpeg, None).await.unwrap(),
        dashboard::store::Inserted::New
    );
    assert_eq!(store.snapshot(0).await.unwrap().photos_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_a_password() {
    let redis = RedisServer::start_with("password", Some("s3cret-redis-password"), false);
    let Err(error) = SharedStore::connect(&redis.url(), store_settings("pw", None, None)).await
    else {
        panic!("connected without the password");
    };
    assert!(
        error.to_string().contains("NOAUTH") || error.to_string().contains("auth"),
        "{error}"
    );
    assert!(
        SharedStore::connect(&redis.url(), store_settings("pw", Some("wrong"), None))
            .await
            .is_err()
    );
    let store = SharedStore::connect(
        &redis.url(),
        store_settings("pw", Some("s3cret-redis-password"), None),
    )
    .await
    .unwrap();
    stores_an_event(&store).await;

    // A dashboard given the password (REDIS_PASSWORD) serves from it.
    let config = shared_dashboard_config_with(
        &redis.url(),
        "pw",
        0,
        &["--redis-password", "s3cret-redis-password"],
    );
    let dashboard = crowd::start_dashboard(config).await.unwrap();
    let summary: Value = reqwest::get(format!(
        "http://127.0.0.1:{}/api/v1/summary",
        dashboard.port
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(summary["photos_total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_a_private_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let redis = RedisServer::start_with("tls", Some("tls-password-0123"), true);
    assert!(redis.url().starts_with("rediss://"));
    // Without the CA the server's certificate is not trusted.
    assert!(
        SharedStore::connect(
            &redis.url(),
            store_settings("tls", Some("tls-password-0123"), None)
        )
        .await
        .is_err()
    );
    let store = SharedStore::connect(
        &redis.url(),
        store_settings("tls", Some("tls-password-0123"), redis.ca_file.clone()),
    )
    .await
    .unwrap();
    stores_an_event(&store).await;
}

/// With a viewer token, every public route of the dashboard but `/healthz` needs it (Bearer, or
/// HTTP Basic with it as the password, as a browser sends it), the live feed included; the admin
/// token opens them too, so that one credential serves an administrator's page and its settings
/// changes, and the viewer token does not change settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_prove_who_they_are_when_the_dashboard_has_a_viewer_token() {
    const VIEWER: &str = "viewer-token-0123456789abcdef";
    const ADMIN: &str = "admin-token-0123456789abcdef";
    let data = temp_data_dir("viewer-token");
    let dashboard = crowd::start_dashboard(dashboard_config_with(
        &data,
        0,
        &["--viewer-token", VIEWER, "--admin-token", ADMIN],
    ))
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", dashboard.port);
    let http = reqwest::Client::new();

    for path in ["/", "/api/v1/summary", "/api/v1/histogram"] {
        let refused = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(
            refused.headers()["www-authenticate"],
            "Basic realm=\"crowd dashboard\"",
            "{path}: a browser is asked for the credential"
        );
        expect_error(refused, 401, "unauthorized").await;
        let wrong = http
            .get(format!("{base}{path}"))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        expect_error(wrong, 401, "unauthorized").await;
        for request in [
            http.get(format!("{base}{path}")).bearer_auth(VIEWER),
            http.get(format!("{base}{path}"))
                .basic_auth("analyst", Some(VIEWER)),
            http.get(format!("{base}{path}")).bearer_auth(ADMIN),
        ] {
            let admitted = request.send().await.unwrap();
            assert_eq!(admitted.status(), 200, "{path}");
        }
    }
    let healthz = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200, "liveness needs no credential");

    let live = format!("ws://127.0.0.1:{}/ws/live", dashboard.port);
    assert_eq!(upgrade_refusal(&live, None).await, Some(401));
    assert_eq!(upgrade_refusal(&live, Some(VIEWER)).await, None);

    let settings = format!("{base}/api/v1/cameras/gate-1/settings");
    let body = serde_json::json!({"name": "Gate 1", "group": "north"});
    let as_viewer = http
        .put(&settings)
        .bearer_auth(VIEWER)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(as_viewer.status(), 401, "the viewer token changes nothing");
    let as_admin = http
        .put(&settings)
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(as_admin.status(), 200, "{}", as_admin.text().await.unwrap());
    std::fs::remove_dir_all(data).ok();
}

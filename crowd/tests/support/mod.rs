//! Helpers shared by the launcher's black-box tests: configs on port 0, the dev photos, and a
//! WebSocket client for the dashboard's live feed.

#![allow(dead_code)] // each test binary uses a different subset

pub mod browser;
pub mod redis_server;
pub mod service_proxy;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use clap::{Args, Parser};
use crowd::StackAuth;
use dashboard::DashboardConfig;
use futures_util::StreamExt;
use image_predict::PredictConfig;
use image_upload::UploadConfig;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The labelled photos provided beside the project (`../shared/evalset/dev`), or
/// `$CROWD_EVALSET_DIR`.
pub fn evalset_dir() -> PathBuf {
    std::env::var_os("CROWD_EVALSET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/evalset/dev"))
}

pub fn evalset_photo(name: &str) -> Vec<u8> {
    let path = evalset_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The true count of `name` from `truth.csv`.
pub fn true_count(name: &str) -> u32 {
    let truth = std::fs::read_to_string(evalset_dir().join("truth.csv")).expect("truth.csv");
    truth
        .lines()
        .skip(1)
        .find_map(|line| {
            let mut fields = line.split(',');
            (fields.next()? == name).then(|| fields.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("{name} is not in truth.csv"))
}

/// The ingest token every test stack uses.
pub const INGEST_TOKEN: &str = "test-ingest-token-0123456789";

/// The camera key file of the tests (made once per test binary, one key for every camera and
/// one for cameras `gate-*` only), and those keys.
pub struct TestKeys {
    pub file: PathBuf,
    /// May upload for every camera.
    pub all: String,
    /// May upload for `gate-*` only.
    pub gates: String,
}

pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use common::auth::{CameraScope, new_key};
        let dir = temp_data_dir("keys");
        let all = new_key(&CameraScope::parse("*").unwrap());
        let gates = new_key(&CameraScope::parse("gate-*").unwrap());
        let file = dir.join("api-keys");
        std::fs::write(&file, format!("{}\n{}\n", all.line, gates.line)).unwrap();
        TestKeys {
            file,
            all: all.key,
            gates: gates.key,
        }
    })
}

/// The stack's auth as the tests run it: the test key file and ingest token.
pub fn auth() -> StackAuth {
    StackAuth {
        no_auth: false,
        keys_file: Some(keys().file.clone()),
        ingest_token: Some(INGEST_TOKEN.to_owned()),
    }
}

/// An HTTP client that sends the all-cameras key with every request.
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", keys().all).parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Parses a service's config from flags, so that tests get the documented defaults.
fn parse<C: Args>(flags: &[&str]) -> C {
    #[derive(Parser)]
    struct Wrapper<C: Args> {
        #[command(flatten)]
        config: C,
    }
    let args = std::iter::once("test").chain(flags.iter().copied());
    Wrapper::<C>::parse_from(args).config
}

pub fn temp_data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "crowd-test-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port free now (the OS may hand it out again later: used for servers started by the test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A dashboard replica on the shared store at `redis_url`, keys under `prefix`.
pub fn shared_dashboard_config(redis_url: &str, prefix: &str, port: u16) -> DashboardConfig {
    shared_dashboard_config_with(redis_url, prefix, port, &[])
}

/// A dashboard replica on the shared store, its ingest listener on `ingest_port` (0: any).
pub fn shared_dashboard_config_with(
    redis_url: &str,
    prefix: &str,
    port: u16,
    extra: &[&str],
) -> DashboardConfig {
    let mut flags = vec![
        "--dashboard-addr".to_owned(),
        format!("127.0.0.1:{port}"),
        "--ingest-addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--dashboard-metrics-addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--ingest-token".to_owned(),
        INGEST_TOKEN.to_owned(),
        "--store".to_owned(),
        redis_url.to_owned(),
        "--redis-prefix".to_owned(),
        prefix.to_owned(),
    ];
    flags.extend(extra.iter().map(|s| s.to_string()));
    parse(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

pub fn dashboard_config(data_dir: &Path, port: u16) -> DashboardConfig {
    dashboard_config_with(data_dir, port, &[])
}

pub fn dashboard_config_with(data_dir: &Path, port: u16, extra: &[&str]) -> DashboardConfig {
    let mut flags = vec![
        "--dashboard-addr".to_owned(),
        format!("127.0.0.1:{port}"),
        "--ingest-addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--dashboard-metrics-addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--ingest-token".to_owned(),
        INGEST_TOKEN.to_owned(),
        "--data-dir".to_owned(),
        data_dir.to_str().unwrap().to_owned(),
    ];
    flags.extend(extra.iter().map(|s| s.to_string()));
    parse(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

pub fn predict_config(extra: &[&str]) -> PredictConfig {
    let detector = repo_root().join("models/centernet/centernet.onnx");
    let density = repo_root().join("models/csrnet/csrnet.onnx");
    let keys_file = keys().file.to_str().unwrap();
    let mut flags = vec![
        "--predict-addr",
        "127.0.0.1:0",
        "--predict-metrics-addr",
        "127.0.0.1:0",
        "--predict-ingest-token",
        INGEST_TOKEN,
        "--predict-api-keys-file",
        keys_file,
        "--detector-model",
        detector.to_str().unwrap(),
        "--density-model",
        density.to_str().unwrap(),
    ];
    flags.extend_from_slice(extra);
    let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    parse(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A dashboard on the embedded store in a fresh folder, for tests that need one to store
/// counts (an answer 200 means the dashboard stored it).
pub async fn start_test_dashboard(name: &str) -> (crowd::Running, PathBuf) {
    let data = temp_data_dir(name);
    let dashboard = crowd::start_dashboard(dashboard_config(&data, 0))
        .await
        .expect("a dashboard starts");
    (dashboard, data)
}

/// image-predict's flags pointing it at `dashboard`'s ingest listener.
pub fn predict_flags_for(dashboard: &crowd::Running) -> Vec<String> {
    vec![
        "--dashboard-ingest-url".into(),
        ingest_url(dashboard.ingest_port),
        "--dashboard-internal-url".into(),
        format!("http://127.0.0.1:{}", dashboard.ingest_port),
    ]
}

pub fn upload_config(extra: &[&str]) -> UploadConfig {
    let keys_file = keys().file.to_str().unwrap();
    let mut flags = vec![
        "--upload-addr",
        "127.0.0.1:0",
        "--upload-metrics-addr",
        "127.0.0.1:0",
        "--api-keys-file",
        keys_file,
    ];
    flags.extend_from_slice(extra);
    parse(&flags)
}

pub type LiveSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The dashboard's ingest WebSocket URL.
pub fn ingest_url(ingest_port: u16) -> String {
    format!("ws://127.0.0.1:{ingest_port}/ws/ingest")
}

/// Connects to a dashboard's ingest listener as image-predict does (with the token).
pub async fn ingest_socket(ingest_port: u16) -> LiveSocket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = ingest_url(ingest_port).into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {INGEST_TOKEN}").parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("ingest socket")
        .0
}

/// Connects to the dashboard's live feed and returns it with the first (snapshot) message.
pub async fn live_feed(dashboard_port: u16) -> (LiveSocket, Value) {
    let url = format!("ws://127.0.0.1:{dashboard_port}/ws/live");
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("live feed");
    let first = next_json(&mut socket).await;
    assert_eq!(first["type"], "snapshot", "first live message: {first}");
    (socket, first)
}

/// The next JSON text message, within 30 seconds.
pub async fn next_json(socket: &mut LiveSocket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a live message within 30 s")
            .expect("the live feed is open")
            .expect("a valid frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("live messages are JSON");
        }
    }
}

/// The next live message of type `count`.
pub async fn next_count(socket: &mut LiveSocket) -> Value {
    loop {
        let message = next_json(socket).await;
        if message["type"] == "count" {
            return message;
        }
    }
}

/// A multipart form as the upload page sends it.
pub fn photo_form(camera: &str, photo: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("camera_id", camera.to_owned())
        .part(
            "imageFileField",
            reqwest::multipart::Part::bytes(photo).file_name("photo.jpg"),
        )
}

/// Polls `url` until `done` holds for its JSON, or fails after 30 seconds.
pub async fn wait_for_json(url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let client = client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(url).send().await
            && let Ok(json) = response.json::<Value>().await
            && done(&json)
        {
            return json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} did not reach the expected state within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

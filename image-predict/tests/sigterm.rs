//! SIGTERM, as Kubernetes sends it, while photos are being counted: image-predict stops taking
//! new work, answers every photo it had accepted, hands their events to the dashboard, and exits 0.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use common::testing::ServiceProcess;
use dashboard::DashboardConfig;
use serde_json::Value;

const PHOTOS: usize = 3;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A dev-set photo (`../shared/evalset/dev`, or `$CROWD_EVALSET_DIR`).
fn dev_photo(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("CROWD_EVALSET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/evalset/dev"));
    std::fs::read(dir.join(name)).expect("the dev photos beside the project")
}

#[derive(Parser)]
struct DashboardArgs {
    #[command(flatten)]
    config: DashboardConfig,
}

/// The value of an unlabelled gauge in a Prometheus text page.
fn gauge(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_accepted_photos_and_flushes_their_events() {
    let data = std::env::temp_dir().join(format!("crowd-predict-sigterm-{}", std::process::id()));
    const TOKEN: &str = "sigterm-test-token-0123456789";
    let dashboard = dashboard::Application::build(
        DashboardArgs::parse_from([
            "dashboard",
            "--dashboard-addr",
            "127.0.0.1:0",
            "--ingest-addr",
            "127.0.0.1:0",
            "--dashboard-metrics-addr",
            "127.0.0.1:0",
            "--ingest-token",
            TOKEN,
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .config,
    )
    .await
    .unwrap();
    let dashboard_port = dashboard.port();
    let ingest_port = dashboard.ingest_port();
    tokio::spawn(dashboard.run_until_stopped());

    let ingest = format!("ws://127.0.0.1:{ingest_port}/ws/ingest");
    let internal = format!("http://127.0.0.1:{ingest_port}");
    let detector = repo_root().join("models/centernet/centernet.onnx");
    let density = repo_root().join("models/csrnet/csrnet.onnx");
    let key = common::auth::new_key(&common::auth::CameraScope::parse("*").unwrap());
    let keys_file = data.with_extension("keys");
    std::fs::write(&keys_file, format!("{}\n", key.line)).unwrap();
    let keys_path = keys_file.clone();
    let mut predict = tokio::task::spawn_blocking(move || {
        ServiceProcess::start_listening(
            env!("CARGO_BIN_EXE_image-predict"),
            &["PREDICT_ADDR", "PREDICT_METRICS_ADDR"],
            &[
                ("DASHBOARD_INGEST_URL", ingest.as_str()),
                ("DASHBOARD_INTERNAL_URL", internal.as_str()),
                ("INGEST_TOKEN", TOKEN),
                ("API_KEYS_FILE", keys_path.to_str().unwrap()),
                ("DETECTOR_MODEL", detector.to_str().unwrap()),
                ("DENSITY_MODEL", density.to_str().unwrap()),
                // One worker, so that the photos queue behind each other.
                ("INFERENCE_WORKERS", "1"),
            ],
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    let metrics_url = format!(
        "http://127.0.0.1:{}/metrics",
        predict.port_of("PREDICT_METRICS_ADDR")
    );

    let http = reqwest::Client::new();
    let photo = dev_photo("shtb_train_03.jpg");
    let counts: Vec<_> = (0..PHOTOS)
        .map(|_| {
            let request = http
                .post(predict.url("/api/v1/cameras/sigterm/photos"))
                .bearer_auth(&key.key)
                .header("content-type", "image/jpeg")
                .body(photo.clone())
                .send();
            tokio::spawn(request)
        })
        .collect();

    // Terminate only once photos are certainly in flight: one counted, the others waiting.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = http.get(&metrics_url).send().await.unwrap();
        let page = page.text().await.unwrap();
        if gauge(&page, "predict_inference_waiting").unwrap_or(0.0) >= (PHOTOS - 1) as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "the photos never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    predict.signal("TERM");

    for count in counts {
        let response = count
            .await
            .unwrap()
            .expect("an answer, not a dropped connection");
        assert_eq!(response.status(), 200);
    }
    let status = tokio::task::spawn_blocking(move || predict.wait(Duration::from_secs(40)))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");

    // Each event reached the dashboard before image-predict exited.
    let summary: Value = http
        .get(format!("http://127.0.0.1:{dashboard_port}/api/v1/summary"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["photos_total"], PHOTOS, "{summary}");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(&keys_file);
}

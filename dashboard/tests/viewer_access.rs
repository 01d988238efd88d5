//! Viewers prove who they are wherever other machines reach the dashboard: without a viewer
//! token it refuses to start on such an address (and says why); with one, or behind a proxy that
//! checks (`--open-viewers`), it starts there.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use dashboard::DashboardConfig;

const INGEST_TOKEN: &str = "viewer-access-test-token-0123456789";
const VIEWER_TOKEN: &str = "viewer-access-viewer-token-0123";

#[derive(Parser)]
struct DashboardArgs {
    #[command(flatten)]
    config: DashboardConfig,
}

fn data_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("crowd-viewer-access-{name}-{}", std::process::id()))
}

fn config_on_all_interfaces(name: &str, extra: &[&str]) -> DashboardConfig {
    let data = data_dir(name);
    let mut arguments = vec![
        "dashboard",
        "--dashboard-addr",
        "0.0.0.0:0",
        "--ingest-addr",
        "127.0.0.1:0",
        "--dashboard-metrics-addr",
        "127.0.0.1:0",
        "--ingest-token",
        INGEST_TOKEN,
        "--data-dir",
    ];
    let data = data.to_str().unwrap().to_owned();
    arguments.push(&data);
    arguments.extend_from_slice(extra);
    DashboardArgs::parse_from(arguments).config
}

#[test]
fn the_binary_refuses_an_open_public_listener_without_a_viewer_token() {
    let data = data_dir("binary");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dashboard"))
        .env_remove("VIEWER_TOKEN")
        .env_remove("OPEN_VIEWERS")
        .env_remove("CROWD_NO_AUTH")
        .env("DASHBOARD_ADDR", "0.0.0.0:0")
        .env("DASHBOARD_INGEST_ADDR", "127.0.0.1:0")
        .env("DASHBOARD_METRICS_ADDR", "127.0.0.1:0")
        .env("INGEST_TOKEN", INGEST_TOKEN)
        .env("DASHBOARD_DATA_DIR", &data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the dashboard binary starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the dashboard served viewers on 0.0.0.0 without a viewer token");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(
        stderr.contains("VIEWER_TOKEN") && stderr.contains("0.0.0.0:0"),
        "the refusal names the listener and the setting: {stderr}"
    );
    let _ = std::fs::remove_dir_all(data);
}

#[actix_web::test]
async fn with_a_viewer_token_it_serves_on_all_interfaces_and_checks_viewers() {
    let app = dashboard::Application::build(config_on_all_interfaces(
        "token",
        &["--viewer-token", VIEWER_TOKEN],
    ))
    .await
    .expect("a viewer token allows an address other machines reach");
    let port = app.port();
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let summary = format!("http://127.0.0.1:{port}/api/v1/summary");
    let anonymous = client.get(&summary).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let viewer = client
        .get(&summary)
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(viewer.status(), 200);
    handle.stop(true).await;
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(data_dir("token"));
}

#[actix_web::test]
async fn behind_a_checking_proxy_it_may_serve_on_all_interfaces() {
    let app = dashboard::Application::build(config_on_all_interfaces("open", &["--open-viewers"]))
        .await
        .expect("--open-viewers allows an address other machines reach");
    let port = app.port();
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    let summary = format!("http://127.0.0.1:{port}/api/v1/summary");
    assert_eq!(reqwest::get(&summary).await.unwrap().status(), 200);
    handle.stop(true).await;
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(data_dir("open"));
}

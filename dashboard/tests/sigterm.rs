//! SIGTERM, as Kubernetes sends it: the dashboard stops, exits 0, and leaves its store closed
//! cleanly, so the next start opens it without a repair.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::testing::ServiceProcess;

fn temp_data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crowd-dashboard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn start(data_dir: &Path) -> ServiceProcess {
    ServiceProcess::start_listening(
        env!("CARGO_BIN_EXE_dashboard"),
        &[
            "DASHBOARD_ADDR",
            "DASHBOARD_INGEST_ADDR",
            "DASHBOARD_METRICS_ADDR",
        ],
        &[
            ("DASHBOARD_DATA_DIR", data_dir.to_str().unwrap()),
            ("INGEST_TOKEN", "sigterm-test-token-0123456789"),
        ],
        Duration::from_secs(30),
    )
}

/// Whether opening the store file needs redb's repair, which it does after an unclean close.
fn needs_repair(data_dir: &Path) -> bool {
    let repaired = Arc::new(AtomicBool::new(false));
    let flag = repaired.clone();
    redb::Database::builder()
        .set_repair_callback(move |_| flag.store(true, Ordering::SeqCst))
        .create(data_dir.join("dashboard.redb"))
        .expect("the store opens");
    repaired.load(Ordering::SeqCst)
}

#[test]
fn sigterm_stops_the_dashboard_with_its_store_closed_cleanly() {
    let data = temp_data_dir("sigterm");
    let mut dashboard = start(&data);
    dashboard.signal("TERM");
    let status = dashboard.wait(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    assert_eq!(dashboard.get_status("/healthz"), None, "still answering");
    assert!(!needs_repair(&data), "the store was not closed cleanly");

    // The probe above can tell: a dashboard killed outright leaves a store that needs repair.
    let killed = temp_data_dir("sigkill");
    let mut dashboard = start(&killed);
    dashboard.signal("KILL");
    dashboard.wait(Duration::from_secs(30));
    assert!(needs_repair(&killed));
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&killed);
}

//! The dashboard can go away and come back. An answer 200 means the count is stored: while the
//! dashboard is down, photos are answered 503 `count_not_stored` with `Retry-After`, nothing is
//! kept for them, and the camera's retry after the dashboard is back is counted, once, thanks
//! to its idempotency key. History survives the restart.

mod support;

use crowd::{Stack, start_dashboard};
use serde_json::Value;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_dashboard_is_down_photos_are_refused_and_their_retries_count_once() {
    let data = temp_data_dir("restart");
    let Stack {
        dashboard,
        predict: _predict,
        upload,
    } = Stack::start(
        dashboard_config(&data, 0),
        predict_config(&["--delivery-timeout-secs", "2"]),
        upload_config(&[]),
        auth(),
    )
    .await
    .unwrap();
    let dashboard_port = dashboard.port;
    let ingest_port = dashboard.ingest_port;
    let summary_url = format!("http://127.0.0.1:{dashboard_port}/api/v1/summary");
    let http = client();
    let upload_url = format!("http://127.0.0.1:{}/upload", upload.port);
    let upload_photo = |camera: &'static str, name: &'static str, key: Option<&'static str>| {
        let http = http.clone();
        let url = upload_url.clone();
        async move {
            let mut request = http
                .post(url)
                .multipart(photo_form(camera, evalset_photo(name)));
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry_after, response.json::<Value>().await.unwrap())
        }
    };

    let (status, _, before) = upload_photo("cam-a", "shtb_train_05.jpg", None).await;
    assert_eq!(status, 200, "{before}");
    let summary = wait_for_json(&summary_url, |s| s["photos_total"] == 1).await;
    assert_eq!(summary["counted_total"], before["count"]);

    dashboard.stop().await.unwrap();
    // Nothing can store it now: 503, the camera keeps its photo and sends it again later.
    let (status, retry_after, refused) =
        upload_photo("cam-b", "shtb_train_07.jpg", Some("cam-b/1")).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"], "count_not_stored");
    assert!(retry_after.is_some(), "Retry-After is set");

    let mut config = dashboard_config(&data, dashboard_port);
    config.ingest_listen = crowd::loopback(ingest_port);
    let dashboard = start_dashboard(config)
        .await
        .expect("the dashboard restarts on its ports");
    let summary = wait_for_json(&summary_url, |s| s["photos_total"] == 1).await;
    assert_eq!(
        summary["counted_total"], before["count"],
        "history survived, the refused photo is not in it"
    );

    // The camera's retry, once image-predict has reconnected: counted.
    let mut retried = None;
    for _ in 0..50 {
        let (status, _, answer) = upload_photo("cam-b", "shtb_train_07.jpg", Some("cam-b/1")).await;
        if status == 200 {
            retried = Some(answer);
            break;
        }
        assert_eq!(status, 503, "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let retried = retried.expect("the retry is stored once the dashboard is back");
    assert_eq!(retried["replayed"], false);
    // And again: the same answer, not counted again.
    let (status, _, again) = upload_photo("cam-b", "shtb_train_07.jpg", Some("cam-b/1")).await;
    assert_eq!(status, 200);
    assert_eq!(again["replayed"], true);
    assert_eq!(again["event_id"], retried["event_id"]);
    assert_eq!(again["count"], retried["count"]);

    let total = before["count"].as_u64().unwrap() + retried["count"].as_u64().unwrap();
    let summary = wait_for_json(&summary_url, |s| s["photos_total"] == 2).await;
    assert_eq!(summary["counted_total"].as_u64(), Some(total));

    // A live browser connecting now sees the same state, and the photos are there.
    let (_live, snapshot) = live_feed(dashboard_port).await;
    assert_eq!(snapshot["summary"]["counted_total"].as_u64(), Some(total));
    for camera in ["cam-a", "cam-b"] {
        let photo = http
            .get(format!(
                "http://127.0.0.1:{dashboard_port}/api/v1/cameras/{camera}/photo"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(photo.status(), 200, "{camera}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let summary: Value = http
        .get(&summary_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["photos_total"], 2);
    dashboard.stop().await.unwrap();
    std::fs::remove_dir_all(data).ok();
}

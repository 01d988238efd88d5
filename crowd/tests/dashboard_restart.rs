//! The dashboard can go away and come back: counts accepted meanwhile are delivered when it
//! returns, history survives the restart, nothing is counted twice.

mod support;

use crowd::{Stack, start_dashboard};
use serde_json::Value;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_restart_loses_no_accepted_count() {
    let data = temp_data_dir("restart");
    let Stack {
        dashboard,
        predict: _predict,
        upload,
    } = Stack::start(
        dashboard_config(&data, 0),
        predict_config(&[]),
        upload_config(&[]),
    )
    .await
    .unwrap();
    let dashboard_port = dashboard.port;
    let summary_url = format!("http://127.0.0.1:{dashboard_port}/api/v1/summary");
    let http = reqwest::Client::new();
    let upload_photo = |camera: &'static str, name: &'static str| {
        let http = http.clone();
        let url = format!("http://127.0.0.1:{}/upload", upload.port);
        async move {
            let response = http
                .post(url)
                .multipart(photo_form(camera, evalset_photo(name)))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{camera}");
            response.json::<Value>().await.unwrap()["count"]
                .as_u64()
                .unwrap()
        }
    };

    let before = upload_photo("cam-a", "shtb_train_05.jpg").await;
    wait_for_json(&summary_url, |s| s["photos_total"] == 1).await;

    dashboard.stop().await.unwrap();
    // Accepted while the dashboard is down: image-predict keeps them until acknowledged.
    let during_b = upload_photo("cam-b", "shtb_train_07.jpg").await;
    let during_c = upload_photo("cam-c", "shtb_train_09.jpg").await;
    let during_b2 = upload_photo("cam-b", "shtb_train_11.jpg").await;

    let dashboard = start_dashboard(dashboard_config(&data, dashboard_port))
        .await
        .expect("the dashboard restarts on its port");
    let total = before + during_b + during_c + during_b2;
    let summary = wait_for_json(&summary_url, |s| s["photos_total"] == 4).await;
    assert_eq!(summary["counted_total"].as_u64(), Some(total));
    let latest: Vec<(String, u64)> = summary["cameras"]
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
    assert_eq!(
        latest,
        [
            ("cam-a".to_owned(), before),
            ("cam-b".to_owned(), during_b2),
            ("cam-c".to_owned(), during_c),
        ]
    );
    assert_eq!(
        summary["people_now"].as_u64(),
        Some(before + during_b2 + during_c)
    );

    // A live browser connecting now sees the same state, and the photos are there.
    let (_live, snapshot) = live_feed(dashboard_port).await;
    assert_eq!(snapshot["summary"]["counted_total"].as_u64(), Some(total));
    for camera in ["cam-a", "cam-b", "cam-c"] {
        let photo = http
            .get(format!(
                "http://127.0.0.1:{dashboard_port}/api/v1/cameras/{camera}/photo"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(photo.status(), 200, "{camera}");
    }

    // Nothing is counted twice, even after a while (resends are ignored by id).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let summary: Value = http
        .get(&summary_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["photos_total"], 4);
    dashboard.stop().await.unwrap();
    std::fs::remove_dir_all(data).ok();
}

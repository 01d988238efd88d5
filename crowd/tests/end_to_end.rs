//! A real photo goes in at image-upload, is counted by the real model in image-predict, and
//! reaches the dashboard's live feed, REST API and photo endpoint.

mod support;

use crowd::Stack;
use serde_json::Value;
use support::*;

/// The detector's miss on this photo, measured at the default threshold, plus a margin.
/// (Accuracy overall is measured by `crowd eval`; this guards the wiring and the decoding.)
const COUNT_TOLERANCE: i64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_travels_from_upload_to_the_live_dashboard() {
    let data = temp_data_dir("e2e");
    let stack = Stack::start(
        dashboard_config(&data, 0),
        predict_config(&[]),
        upload_config(&[]),
        auth(),
    )
    .await
    .expect("the stack starts");
    let upload = format!("http://127.0.0.1:{}", stack.upload.port);
    let dashboard = format!("http://127.0.0.1:{}", stack.dashboard.port);
    let http = client();

    let (mut live, snapshot) = live_feed(stack.dashboard.port).await;
    assert_eq!(snapshot["summary"]["counted_total"], 0);
    assert_eq!(
        snapshot["histogram"]["windows"].as_array().unwrap().len(),
        60
    );

    // Through the upload page's form.
    let name = "shtb_train_01.jpg";
    let response = http
        .post(format!("{upload}/upload"))
        .multipart(photo_form("north-gate", evalset_photo(name)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let count = answer["count"].as_i64().unwrap();
    let truth = i64::from(true_count(name));
    assert!(
        (count - truth).abs() <= COUNT_TOLERANCE,
        "counted {count}, truth {truth}: {answer}"
    );
    assert_eq!(answer["camera"], "north-gate");
    assert_eq!(answer["boxes"].as_array().unwrap().len() as i64, count);
    for b in answer["boxes"].as_array().unwrap() {
        let (x1, x2) = (b["x1"].as_f64().unwrap(), b["x2"].as_f64().unwrap());
        assert!(
            (0.0..=1.0).contains(&x1) && x1 < x2 && x2 <= 1.0,
            "normalised box {b}"
        );
    }
    assert_eq!(answer["image"]["width"], 1024);
    assert_eq!(answer["image"]["height"], 768);
    assert!(answer["model"].as_str().unwrap().starts_with("centernet"));
    assert!(answer["inference_ms"].as_f64().unwrap() > 0.0);
    assert!(answer["score_threshold"].as_f64().unwrap() > 0.0);

    // The same count arrives on the dashboard's live feed.
    let pushed = next_count(&mut live).await;
    assert_eq!(pushed["camera"]["camera"], "north-gate");
    assert_eq!(pushed["camera"]["count"].as_i64(), Some(count));
    assert_eq!(pushed["camera"]["event_id"], answer["event_id"]);
    assert_eq!(pushed["totals"]["counted_total"].as_i64(), Some(count));
    assert_eq!(pushed["window"]["people"].as_i64(), Some(count));

    // The annotated photo is served as a JPEG no larger than 640 px.
    let photo_url = pushed["camera"]["photo_url"].as_str().unwrap();
    let photo = http
        .get(format!("{dashboard}{photo_url}"))
        .send()
        .await
        .unwrap();
    assert_eq!(photo.status(), 200);
    assert_eq!(photo.headers()["content-type"], "image/jpeg");
    let thumbnail = image::load_from_memory(&photo.bytes().await.unwrap()).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (640, 480));

    // A second camera through the raw-body route.
    let second = "shtb_train_13.jpg";
    let response = http
        .post(format!("{upload}/api/v1/cameras/south_side/photos"))
        .header("content-type", "image/jpeg")
        .body(evalset_photo(second))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let second_count = response.json::<Value>().await.unwrap()["count"]
        .as_i64()
        .unwrap();
    let pushed = next_count(&mut live).await;
    assert_eq!(pushed["camera"]["camera"], "south_side");

    let summary: Value = http
        .get(format!("{dashboard}/api/v1/summary"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        summary["counted_total"].as_i64(),
        Some(count + second_count)
    );
    assert_eq!(summary["people_now"].as_i64(), Some(count + second_count));
    assert_eq!(summary["photos_total"], 2);
    let cameras: Vec<&str> = summary["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["camera"].as_str().unwrap())
        .collect();
    assert_eq!(cameras, ["north-gate", "south_side"]);

    let histogram: Value = http
        .get(format!("{dashboard}/api/v1/histogram?windows=10"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let windows = histogram["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 10);
    let people: i64 = windows.iter().map(|w| w["people"].as_i64().unwrap()).sum();
    assert_eq!(people, count + second_count);

    let counters: Value = http
        .get(format!("{dashboard}/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["counter"].as_i64(), Some(count + second_count));

    stack.dashboard.stop().await.unwrap();
    std::fs::remove_dir_all(data).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_answers_its_probes_and_metrics() {
    let data = temp_data_dir("probes");
    let stack = Stack::start(
        dashboard_config(&data, 0),
        predict_config(&[]),
        upload_config(&[]),
        auth(),
    )
    .await
    .unwrap();
    let http = client();
    for (service, port, metric) in [
        (
            "upload",
            stack.upload.metrics_port,
            "upload_requests_refused_total",
        ),
        (
            "predict",
            stack.predict.metrics_port,
            "predict_inference_waiting",
        ),
        (
            "dashboard",
            stack.dashboard.metrics_port,
            "dashboard_events_stored_total",
        ),
    ] {
        for probe in ["healthz", "readyz"] {
            let response = http
                .get(format!("http://127.0.0.1:{port}/{probe}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{service} /{probe}");
        }
        // Counters without labels are exported from the start; labelled ones once used.
        let _ = http
            .post(format!("http://127.0.0.1:{}/upload", stack.upload.port))
            .multipart(photo_form("probe", b"not an image".to_vec()))
            .send()
            .await
            .unwrap();
        let metrics = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), 200);
        let text = metrics.text().await.unwrap();
        assert!(
            text.contains(metric),
            "{service} metrics lack {metric}:\n{text}"
        );
    }
    // Nothing private on the public ports: no metrics, no readiness details.
    for (service, port) in [
        ("upload", stack.upload.port),
        ("predict", stack.predict.port),
        ("dashboard", stack.dashboard.port),
    ] {
        let response = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            404,
            "{service} serves /metrics on its public port"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "not_found");
    }
    std::fs::remove_dir_all(data).ok();
}

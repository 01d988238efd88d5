//! When every inference worker is busy and the queue is full, image-predict answers 503 with
//! Retry-After at once instead of queuing without bound.

mod support;

use crowd::start_predict;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    let (dashboard, data) = start_test_dashboard("overload").await;
    let mut flags = predict_flags_for(&dashboard);
    flags.extend(["--inference-workers", "1", "--inference-queue", "1"].map(String::from));
    let predict = start_predict(predict_config(
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .await
    .unwrap();
    let url = format!(
        "http://127.0.0.1:{}/api/v1/cameras/busy/photos",
        predict.port
    );
    let photo = evalset_photo("shtb_train_15.jpg");
    let http = client();
    // Eight at once: one runs, one waits, the others are refused.
    let requests = (0..8).map(|_| {
        let request = http
            .post(&url)
            .header("content-type", "image/jpeg")
            .body(photo.clone());
        async move { request.send().await.unwrap() }
    });
    let responses = futures_util::future::join_all(requests).await;
    let mut counted = 0;
    let mut refused = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => counted += 1,
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["error"], "overloaded");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(counted >= 2, "the running and the queued photo are counted");
    assert!(
        refused >= 1,
        "the rest are refused: {counted} counted, {refused} refused"
    );
    assert_eq!(counted + refused, 8);
    dashboard.stop().await.unwrap();
    std::fs::remove_dir_all(data).ok();
}

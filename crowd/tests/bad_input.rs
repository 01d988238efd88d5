//! Every kind of bad input gets its status and a JSON error that names the problem, and the
//! stack keeps serving afterwards.

mod support;

use std::time::Duration;

use crowd::{Stack, start_upload};
use serde_json::Value;
use support::*;

async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "expected {status} {code}");
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        !body["message"].as_str().unwrap_or_default().is_empty(),
        "{body}"
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_get_a_status_and_a_json_error() {
    let data = temp_data_dir("bad-input");
    let stack = Stack::start(
        dashboard_config(&data, 0),
        predict_config(&[]),
        upload_config(&[
            "--upload-max-body-bytes",
            "1000000",
            "--upload-max-pixels",
            "1000000",
        ]),
        auth(),
    )
    .await
    .unwrap();
    let upload = format!("http://127.0.0.1:{}", stack.upload.port);
    let http = client();
    let photo = evalset_photo("shtb_train_03.jpg"); // 1024x768, well under 1 MB
    assert!(photo.len() < 1_000_000);

    let form = |camera: &str, bytes: Vec<u8>| photo_form(camera, bytes);
    let post_form =
        |f: reqwest::multipart::Form| http.post(format!("{upload}/upload")).multipart(f).send();
    let post_raw = |camera: &str, content_type: &str, bytes: Vec<u8>| {
        http.post(format!("{upload}/api/v1/cameras/{camera}/photos"))
            .header("content-type", content_type)
            .body(bytes)
            .send()
    };

    let body = expect_error(
        post_form(form("no spaces allowed", photo.clone()))
            .await
            .unwrap(),
        400,
        "invalid_camera_id",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("A-Z"));
    expect_error(
        post_raw("x%3Cimg%3E", "image/jpeg", photo.clone())
            .await
            .unwrap(),
        400,
        "invalid_camera_id",
    )
    .await;
    expect_error(
        post_raw(&"c".repeat(65), "image/jpeg", photo.clone())
            .await
            .unwrap(),
        400,
        "invalid_camera_id",
    )
    .await;

    let no_camera = reqwest::multipart::Form::new().part(
        "imageFileField",
        reqwest::multipart::Part::bytes(photo.clone()).file_name("a.jpg"),
    );
    let body = expect_error(post_form(no_camera).await.unwrap(), 400, "missing_field").await;
    assert!(body["message"].as_str().unwrap().contains("camera_id"));
    let no_photo = reqwest::multipart::Form::new().text("camera_id", "cam1");
    let body = expect_error(post_form(no_photo).await.unwrap(), 400, "missing_field").await;
    assert!(body["message"].as_str().unwrap().contains("imageFileField"));
    expect_error(
        post_raw("cam1", "image/jpeg", Vec::new()).await.unwrap(),
        400,
        "missing_field",
    )
    .await;
    let not_multipart = http
        .post(format!("{upload}/upload"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(not_multipart.status(), 400);
    assert!(
        not_multipart.json::<Value>().await.is_ok(),
        "JSON body even for a non-form"
    );

    let too_big = vec![0xFFu8; 1_500_000];
    expect_error(
        post_form(form("cam1", too_big.clone())).await.unwrap(),
        413,
        "body_too_large",
    )
    .await;
    expect_error(
        post_raw("cam1", "image/jpeg", too_big).await.unwrap(),
        413,
        "body_too_large",
    )
    .await;

    // Content-Type says JPEG; the bytes say otherwise. Decided by the bytes.
    expect_error(
        post_raw("cam1", "image/jpeg", b"hello, not a photo".to_vec())
            .await
            .unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    expect_error(
        post_form(form("cam1", b"GIF89a\x01\x00\x01\x00".to_vec()))
            .await
            .unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;

    // 2048x1536 = 3.1 MP > the 1 MP limit, read from the header; the body is small (a flat PNG).
    let mut big_png = Vec::new();
    image::RgbImage::new(2048, 1536)
        .write_to(
            &mut std::io::Cursor::new(&mut big_png),
            image::ImageFormat::Png,
        )
        .unwrap();
    assert!(big_png.len() < 1_000_000);
    let body = expect_error(
        post_raw("cam1", "image/png", big_png).await.unwrap(),
        413,
        "image_too_large",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("2048x1536"));

    // A JPEG cut short: the header reads, the pixels do not. image-predict refuses it with 422,
    // passed through by image-upload.
    let truncated = photo[..photo.len() / 3].to_vec();
    expect_error(
        post_raw("cam1", "image/jpeg", truncated).await.unwrap(),
        422,
        "undecodable_image",
    )
    .await;

    let unknown = http.get(format!("{upload}/nope")).send().await.unwrap();
    expect_error(unknown, 404, "not_found").await;

    // After all that, a good photo is still counted.
    let ok = post_form(form("cam1", photo)).await.unwrap();
    assert_eq!(ok.status(), 200);
    std::fs::remove_dir_all(data).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_unreachable_is_503_and_too_slow_is_504() {
    let photo = evalset_photo("shtb_train_03.jpg");
    let http = client();

    // Nothing listens on the port of a listener we bound and closed.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let predict_url = format!("http://127.0.0.1:{closed_port}");
    let unreachable = start_upload(upload_config(&["--predict-url", &predict_url]))
        .await
        .unwrap();
    let response = http
        .post(format!(
            "http://127.0.0.1:{}/api/v1/cameras/c/photos",
            unreachable.port
        ))
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    expect_error(response, 503, "predict_unavailable").await;
    // The pod itself can serve: readiness does not follow image-predict (a missing predict is
    // answered per upload, as above, not by emptying the public Service).
    let ready = http
        .get(format!(
            "http://127.0.0.1:{}/readyz",
            unreachable.metrics_port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // A predict that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (socket, _) = silent.accept().await.unwrap();
            held.push(socket);
        }
    });
    let slow = start_upload(upload_config(&[
        "--predict-url",
        &silent_url,
        "--predict-timeout-secs",
        "1",
    ]))
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let response = http
        .post(format!(
            "http://127.0.0.1:{}/api/v1/cameras/c/photos",
            slow.port
        ))
        .body(photo)
        .send()
        .await
        .unwrap();
    expect_error(response, 504, "predict_timeout").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    hold.abort();
}

//! An analyst watching many places, in headless Chromium (chromedriver, `fantoccini`), as
//! `browser.rs` does: 200 cameras in the table view, sorted and filtered with the state kept in
//! the URL (a reload keeps it), one more real upload that changes exactly its own row (and moves
//! it to its place in the sort), and a camera's own page with its chart over a range.
//!
//! The 200 cameras are sent to the dashboard's ingest socket as image-predict sends them (200
//! inferences would take minutes in a test build); the one live update is a real photo through
//! image-upload and the model. Needs Debian's `chromium` and `chromium-driver`; fails, never
//! skips, when they are missing. Leaves screenshots in `target/screenshots/`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::wire::{CountEvent, encode_event_frame};
use crowd::Stack;
use fantoccini::{Client, Locator};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::browser::*;
use support::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;

const CAMERAS: usize = 200;
/// The camera that gets a history, the live upload, and whose page is opened.
const WATCHED: &str = "cam-015";
/// Matches cam-010 … cam-019 only.
const FILTER: &str = "cam-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_sorts_filters_bookmarks_and_opens_one_of_200_cameras() {
    let browser = Browser::start().await;
    let data = temp_data_dir("browser-analyst");
    let stack = Stack::start(
        dashboard_config(&data, 0),
        predict_config(&[]),
        upload_config(&[]),
        auth(),
    )
    .await
    .expect("the stack starts");
    let dashboard_url = format!("http://127.0.0.1:{}", stack.dashboard.port);
    let client = &browser.client;

    // 200 cameras, each with one photo of a distinct count (37 and 300 are coprime), all taken in
    // the last minute (none is stale while the test runs); the watched one also has ten older
    // photos over the last hour, for its chart.
    let now = now_ms();
    let mut events = Vec::new();
    for k in (1..=10).rev() {
        events.push(event(
            &format!("history-{k}"),
            WATCHED,
            20 + 7 * k as u32,
            now - k * 5 * 60_000,
        ));
    }
    let mut counts = BTreeMap::new();
    for i in 0..CAMERAS {
        let camera = camera_id(i);
        let count = ((i * 37) % 300) as u32;
        counts.insert(camera.clone(), count);
        events.push(event(
            &format!("latest-{i}"),
            &camera,
            count,
            now - i as i64 * 250,
        ));
    }
    ingest(
        &ingest_url(stack.dashboard.ingest_port),
        Some(INGEST_TOKEN),
        &events,
    )
    .await;

    // The table view: a row per camera.
    client
        .goto(&format!("{dashboard_url}/?view=table"))
        .await
        .unwrap();
    wait_for(client, "200 rows, live", TABLE, |t| {
        t["link"] == "connected"
            && t["rendered"] == "200"
            && t["rows"].as_array().unwrap().len() == CAMERAS
    })
    .await;

    // Sorted by count: a first click orders by people now, most first; a second click reverses.
    click(client, "#camera-table button[data-sort='count']").await;
    let table = wait_for(client, "sorted by count", TABLE, |t| {
        t["sort"] == "descending"
    })
    .await;
    assert_eq!(
        row_ids(&table, false),
        sorted_ids(&counts, true),
        "rows by count, most first: {table}"
    );
    assert_url_has(
        client,
        &[("view", "table"), ("sort", "count"), ("order", "desc")],
    )
    .await;
    click(client, "#camera-table button[data-sort='count']").await;
    let table = wait_for(client, "sorted by count, fewest first", TABLE, |t| {
        t["sort"] == "ascending"
    })
    .await;
    assert_eq!(
        row_ids(&table, false),
        sorted_ids(&counts, false),
        "{table}"
    );
    click(client, "#camera-table button[data-sort='count']").await;
    wait_for(client, "most first again", TABLE, |t| {
        t["sort"] == "descending"
    })
    .await;

    // Filtered by text: only the ten matching rows are shown, still sorted.
    let filter = client.find(Locator::Id("filter")).await.unwrap();
    filter.send_keys(FILTER).await.unwrap();
    let expected: BTreeMap<String, u32> = counts
        .iter()
        .filter(|(id, _)| id.contains(FILTER))
        .map(|(id, c)| (id.clone(), *c))
        .collect();
    let table = wait_for(client, "the filter applied", TABLE, |t| {
        t["shown"].as_array().unwrap().len() == expected.len()
    })
    .await;
    assert_eq!(
        row_ids(&table, true),
        sorted_ids(&expected, true),
        "{table}"
    );
    assert_url_has(
        client,
        &[
            ("view", "table"),
            ("sort", "count"),
            ("order", "desc"),
            ("q", FILTER),
        ],
    )
    .await;

    // A reload keeps view, sort and filter (they live in the URL).
    client.refresh().await.unwrap();
    let reloaded = wait_for(client, "the table after a reload", TABLE, |t| {
        t["rendered"] == "200" && t["shown"].as_array().unwrap().len() == expected.len()
    })
    .await;
    assert_eq!(reloaded["view"], "table", "{reloaded}");
    assert_eq!(reloaded["filter"], FILTER, "{reloaded}");
    assert_eq!(reloaded["sort"], "descending", "{reloaded}");
    assert_eq!(
        row_ids(&reloaded, true),
        sorted_ids(&expected, true),
        "{reloaded}"
    );
    save_screenshot(client, "analyst-table.png").await;

    // One more photo, through the real stack: exactly its row changes, and moves to its place.
    client.execute(WATCH_ROWS, vec![]).await.unwrap();
    let before = client.execute(ROW_CONTENT, vec![]).await.unwrap();
    let answer = upload_photo(
        stack.upload.port,
        WATCHED,
        evalset_photo("shtb_train_05.jpg"),
    )
    .await;
    let new_count = answer["count"].as_u64().expect("a count") as u32;
    let updated = wait_for(client, "the live update", TABLE, |t| {
        t["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[0] == WATCHED && r[1] == new_count)
    })
    .await;
    let after = client.execute(ROW_CONTENT, vec![]).await.unwrap();
    let changed: Vec<&String> = before
        .as_object()
        .unwrap()
        .keys()
        .filter(|id| before[id.as_str()] != after[id.as_str()])
        .collect();
    assert_eq!(
        changed,
        vec![WATCHED],
        "only the watched row changes: {before} -> {after}"
    );
    let mutated = client
        .execute("return [...window.crowdChangedRows].sort();", vec![])
        .await
        .unwrap();
    assert_eq!(
        mutated,
        json!([WATCHED]),
        "DOM changes outside the watched row"
    );
    let mut expected_now = expected.clone();
    expected_now.insert(WATCHED.to_owned(), new_count);
    assert_eq!(
        row_ids(&updated, true),
        sorted_ids(&expected_now, true),
        "{updated}"
    );
    let timing = client
        .execute("return window.crowdPage.lastLiveUpdate;", vec![])
        .await
        .unwrap();
    eprintln!("live update among {CAMERAS} cameras: {timing}");

    // The camera's own page: a click on its row, a chart of its counts with labelled axes,
    // hover values, the range's figures.
    click(
        client,
        &format!("#camera-rows [data-camera='{WATCHED}'] a.name"),
    )
    .await;
    let page = wait_for(client, "the camera's page", CAMERA_PAGE, |p| {
        p["points"].as_u64().unwrap_or(0) >= 10
    })
    .await;
    assert_eq!(page["path"], format!("/cameras/{WATCHED}"), "{page}");
    assert_eq!(page["title"], WATCHED, "{page}");
    assert!(page["bars"].as_u64().unwrap() >= 10, "{page}");
    assert_eq!(
        page["axes"],
        json!(["people", "time (each step: 1 min)"]),
        "{page}"
    );
    let max = (1..=10)
        .map(|k| 20 + 7 * k)
        .chain([counts[WATCHED], new_count])
        .max()
        .unwrap();
    assert_eq!(page["max"], max.to_string(), "the range's max: {page}");
    let tip = client.execute(HOVER_FIRST_POINT, vec![]).await.unwrap();
    let text = tip["tip"].as_str().expect("a tip over the point");
    assert!(
        text.contains(&format!("last {}", tip["last"].as_str().unwrap()))
            && text.contains("max")
            && text.contains("mean"),
        "hover tip: {tip}"
    );
    save_screenshot(client, "analyst-camera.png").await;

    // Another range, bookmarkable: the URL says so and a reload keeps it.
    click(client, "#range-6h").await;
    wait_for(client, "the 6 h range", CAMERA_PAGE, |p| {
        p["search"] == "?range=6h" && p["points"].as_u64().unwrap_or(0) >= 10
    })
    .await;
    client.refresh().await.unwrap();
    let page = wait_for(client, "the 6 h range after a reload", CAMERA_PAGE, |p| {
        p["range_pressed"] == "6h" && p["points"].as_u64().unwrap_or(0) >= 10
    })
    .await;
    assert_eq!(page["search"], "?range=6h", "{page}");

    // Back: the overview as it was left.
    client.back().await.unwrap();
    let table = wait_for(client, "the overview again", TABLE, |t| {
        t["overview"] == true && t["rendered"] == "200"
    })
    .await;
    assert_eq!(table["view"], "table", "{table}");
    assert_eq!(table["filter"], FILTER, "{table}");
    assert_eq!(table["sort"], "descending", "{table}");

    browser.close().await;
    let Stack {
        dashboard,
        predict,
        upload,
    } = stack;
    upload.stop().await.unwrap();
    predict.stop().await.unwrap();
    dashboard.stop().await.unwrap();
    std::fs::remove_dir_all(data).ok();
}

/// The table as the page shows it: rows in DOM order as `[camera, count, hidden]`.
const TABLE: &str = r#"
    const rows = [...document.querySelectorAll('#camera-rows [data-camera]')];
    const header = document.querySelector('#camera-table [data-column="count"]');
    return {
      link: document.getElementById('link-status').dataset.state,
      overview: !document.getElementById('overview').hidden,
      rendered: document.body.dataset.rendered ?? null,
      view: document.body.dataset.view ?? null,
      filter: document.getElementById('filter').value,
      sort: header ? header.getAttribute('aria-sort') : null,
      rows: rows.map((r) => [r.dataset.camera, Number(r.dataset.count), r.hidden]),
      shown: rows.filter((r) => !r.hidden).map((r) => r.dataset.camera),
    };
"#;

/// What each row says, without the ages (they move on every second) and the sparkline (it moves
/// on with the clock in 5-minute steps): camera -> [count, capacity, change, photo time, level].
const ROW_CONTENT: &str = r#"
    const out = {};
    for (const r of document.querySelectorAll('#camera-rows [data-camera]')) {
      out[r.dataset.camera] = [
        r.querySelector('.c-count .n').textContent,
        r.querySelector('.c-count .cap').textContent,
        r.querySelector('.c-change').textContent,
        r.querySelector('.c-time time').dateTime,
        r.querySelector('.c-level').textContent,
      ];
    }
    return out;
"#;

/// Records which rows the page touches from now on (ages and sparklines aside).
const WATCH_ROWS: &str = r#"
    window.crowdChangedRows = new Set();
    new MutationObserver((list) => {
      for (const m of list) {
        const node = m.target.nodeType === 1 ? m.target : m.target.parentElement;
        if (node.closest('.age, .c-hour')) continue;
        if (m.type === 'attributes' && m.attributeName === 'class') continue; // stale look
        const row = node.closest('[data-camera]');
        if (row) window.crowdChangedRows.add(row.dataset.camera);
        for (const n of m.addedNodes) if (n.dataset && n.dataset.camera) window.crowdChangedRows.add(n.dataset.camera);
      }
    }).observe(document.getElementById('camera-rows'),
      {subtree: true, childList: true, characterData: true, attributes: true});
"#;

const CAMERA_PAGE: &str = r#"
    const pressed = document.querySelector('#range button[aria-pressed="true"]');
    return {
      path: location.pathname,
      search: location.search,
      shown: !document.getElementById('camera-page').hidden,
      title: document.getElementById('cam-title').textContent,
      points: document.querySelectorAll('#series-chart circle.point').length,
      bars: document.querySelectorAll('#series-chart rect.bar').length,
      axes: [...document.querySelectorAll('#series-chart text.axis-title')].map((t) => t.textContent),
      min: document.getElementById('stat-min').textContent,
      max: document.getElementById('stat-max').textContent.replace(/[^0-9]/g, ''),
      mean: document.getElementById('stat-mean').textContent,
      range_pressed: pressed ? pressed.dataset.range : null,
    };
"#;

const HOVER_FIRST_POINT: &str = r#"
    const point = document.querySelector('#series-chart circle.point');
    const box = point.getBoundingClientRect();
    const chart = document.getElementById('series-chart');
    chart.dispatchEvent(new PointerEvent('pointermove',
      {clientX: box.x + box.width / 2, clientY: box.y + box.height / 2, bubbles: true}));
    const tip = document.getElementById('series-tip');
    const seen = {last: Number(point.dataset.last).toLocaleString(), tip: tip.hidden ? null : tip.textContent};
    chart.dispatchEvent(new PointerEvent('pointerleave'));
    return seen;
"#;

/// The page's timings with 1,000 cameras, for BENCHMARKS.md (a measurement, not a check of
/// speed, so not run by default):
/// `cargo test -p crowd --test browser_analyst -- --ignored --nocapture page_timings`.
/// Five loads of the table view, then five live updates of one camera: from the snapshot's
/// arrival to the rows built (applied) and to the next frame drawn (painted), and from the
/// navigation's start to the rows built; from a count's arrival to its row changed and drawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for BENCHMARKS.md; run with --ignored"]
async fn page_timings_with_1000_cameras() {
    const MANY: usize = 1000;
    let browser = Browser::start().await;
    let data = temp_data_dir("page-timings");
    let dashboard = crowd::start_dashboard(dashboard_config(&data, 0))
        .await
        .unwrap();
    let now = now_ms();
    let events: Vec<CountEvent> = (0..MANY)
        .map(|i| {
            event(
                &format!("many-{i}"),
                &camera_id(i),
                ((i * 37) % 300) as u32,
                now - i as i64 * 20,
            )
        })
        .collect();
    ingest(
        &ingest_url(dashboard.ingest_port),
        Some(INGEST_TOKEN),
        &events,
    )
    .await;
    let client = &browser.client;
    let url = format!("http://127.0.0.1:{}/?view=table", dashboard.port);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut applied, mut painted, mut from_navigation) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        client.goto(&url).await.unwrap();
        let timings = wait_for(client, "1000 rows, painted", PAGE_TIMINGS, |t| {
            t["rendered"].as_str() == Some("1000") && t["paint"].is_number()
        })
        .await;
        applied.push(timings["apply"].as_f64().unwrap());
        painted.push(timings["paint"].as_f64().unwrap());
        from_navigation.push(timings["navigation"].as_f64().unwrap());
    }
    let (mut update_applied, mut update_painted) = (Vec::new(), Vec::new());
    for k in 0..5u32 {
        let id = format!("update-{k}");
        ingest(
            &ingest_url(dashboard.ingest_port),
            Some(INGEST_TOKEN),
            &[event(&id, &camera_id(500), 900 + k, now_ms())],
        )
        .await;
        let update = wait_for(client, "the live update, painted", LIVE_TIMINGS, |t| {
            t["liveUpdates"].as_u64() == Some(u64::from(k) + 1) && t["paint"].is_number()
        })
        .await;
        update_applied.push(update["apply"].as_f64().unwrap());
        update_painted.push(update["paint"].as_f64().unwrap());
    }
    eprintln!(
        "page timings, {MANY} cameras, table view, medians of 5: snapshot applied {:.1} ms, painted {:.1} ms, rows built {:.1} ms after the navigation's start; one live update applied {:.2} ms, painted {:.1} ms",
        median(applied),
        median(painted),
        median(from_navigation),
        median(update_applied),
        median(update_painted)
    );
    browser.close().await;
    std::fs::remove_dir_all(data).ok();
}

const PAGE_TIMINGS: &str = r#"
    return {
      rendered: document.body.dataset.rendered ?? null,
      apply: window.crowdPage.snapshotApplyMs ?? null,
      paint: window.crowdPage.snapshotPaintMs ?? null,
      navigation: window.crowdPage.marks["cameras-rendered"] ?? null,
    };
"#;

const LIVE_TIMINGS: &str = r#"
    const u = window.crowdPage.lastLiveUpdate;
    return {
      liveUpdates: window.crowdPage.liveUpdates,
      apply: u ? u.applyMs : null,
      paint: u ? u.paintMs : null,
    };
"#;

fn camera_id(i: usize) -> String {
    format!("cam-{i:03}")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn event(id: &str, camera: &str, count: u32, timestamp_ms: i64) -> CountEvent {
    CountEvent {
        id: id.into(),
        camera: camera.into(),
        count,
        timestamp_ms,
        counted_at_ms: timestamp_ms,
        model: "test".into(),
        zones: Vec::new(),
    }
}

/// Camera ids by count (most or fewest first), ties by id: the page's order.
fn sorted_ids(counts: &BTreeMap<String, u32>, most_first: bool) -> Vec<String> {
    let mut ids: Vec<(&String, u32)> = counts.iter().map(|(id, c)| (id, *c)).collect();
    ids.sort_by(|a, b| {
        let by_count = if most_first {
            b.1.cmp(&a.1)
        } else {
            a.1.cmp(&b.1)
        };
        by_count.then_with(|| a.0.cmp(b.0))
    });
    ids.into_iter().map(|(id, _)| id.clone()).collect()
}

/// The rows' camera ids in page order, all of them or only those shown.
fn row_ids(table: &Value, shown_only: bool) -> Vec<String> {
    table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !shown_only || r[2] == false)
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect()
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn assert_url_has(client: &Client, pairs: &[(&str, &str)]) {
    let url = client.current_url().await.unwrap();
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    for (key, value) in pairs {
        assert_eq!(
            query.get(*key).map(String::as_str),
            Some(*value),
            "{key} in {url}"
        );
    }
}

/// Sends events on the ingest socket as image-predict does, each acknowledged before the next.
async fn ingest(url: &str, token: Option<&str>, events: &[CountEvent]) {
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the dashboard's ingest socket");
    let jpeg = small_jpeg();
    for event in events {
        socket
            .send(Message::Binary(encode_event_frame(event, None, &jpeg)))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
                .await
                .expect("a reply within 30 s")
                .expect("the ingest socket is open")
                .expect("a valid frame");
            if let Message::Text(text) = message {
                let reply: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(reply["type"], "ack", "{reply}");
                break;
            }
        }
    }
    socket.close(None).await.ok();
}

/// A small real JPEG: the dashboard accepts only JPEG thumbnails.
fn small_jpeg() -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(64, 48, image::Rgb([40, 48, 60]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    jpeg
}

/// One photo through image-upload (the upload page's form fields); returns its answer.
async fn upload_photo(upload_port: u16, camera: &str, photo: Vec<u8>) -> Value {
    let response = support::client()
        .post(format!("http://127.0.0.1:{upload_port}/upload"))
        .header("Idempotency-Key", format!("analyst-{camera}-{}", now_ms()))
        .multipart(photo_form(camera, photo))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.expect("a JSON answer");
    assert_eq!(status, 200, "upload for {camera}: {answer}");
    answer
}

//! The dashboard as a person sees it: headless Chromium (driven through chromedriver) opens the
//! dashboard, uploads photos for two cameras through the upload page in the same browser, and
//! watches the page update live, survive a dashboard restart, and show hostile text as text.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); fails, never skips,
//! when they are missing. Set `CROWD_CHROMIUM` / `CROWD_CHROMEDRIVER` to use other binaries.
//! Leaves screenshots in `target/screenshots/` for a reviewer.

mod support;

use std::path::{Path, PathBuf};

use crowd::{Stack, start_dashboard};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use support::browser::*;
use support::*;

/// Camera text an attacker would like to see run as HTML.
const HOSTILE_TEXT: &str = "<img src=x onerror=alert(1)>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_watches_two_cameras_arrive_and_the_page_survives_a_dashboard_restart() {
    let browser = Browser::start().await;
    let data = temp_data_dir("browser");
    let Stack {
        dashboard,
        predict: _predict,
        upload,
    } = Stack::start(
        dashboard_config(&data, 0),
        predict_config(&[]),
        upload_config(&[]),
        auth(),
    )
    .await
    .expect("the stack starts");
    let dashboard_port = dashboard.port;
    let ingest_port = dashboard.ingest_port;
    let dashboard_url = format!("http://127.0.0.1:{dashboard_port}/");
    let upload_url = format!("http://127.0.0.1:{}/", upload.port);
    let client = &browser.client;

    // The empty dashboard, live.
    client.goto(&dashboard_url).await.unwrap();
    let dashboard_window = client.window().await.unwrap();
    wait_for(client, "the page connects", LINK_STATE, |s| {
        s == "connected"
    })
    .await;
    let before = client.execute(DASHBOARD, vec![]).await.unwrap();
    assert_eq!(before["cameras"], json!([]), "{before}");
    assert_eq!(before["counted_total"], 0, "{before}");
    assert_eq!(before["people_now"], 0, "{before}");
    assert_eq!(before["bars"], json!([]), "{before}");
    // Survives only as long as the page is not reloaded.
    client
        .execute("window.crowdTestMarker = 'not reloaded';", vec![])
        .await
        .unwrap();
    instrument_alerts(client).await;

    // Two cameras through the upload page, in a second tab of the same browser; "south" first, to
    // see the panels sorted by id rather than by arrival.
    let photos = Photos::new(&data);
    let tab = client.new_window(true).await.unwrap();
    client.switch_to_window(tab.handle).await.unwrap();
    client.goto(&upload_url).await.unwrap();
    instrument_alerts(client).await;
    // The camera key, typed once into the page's key field.
    let key_input = client.find(Locator::Id("camera_key")).await.unwrap();
    key_input.send_keys(&keys().all).await.unwrap();
    let south = upload_through_page(client, "south-gate", &photos.copy("shtb_train_05.jpg")).await;
    let north = upload_through_page(client, "north-gate", &photos.copy("shtb_train_07.jpg")).await;
    let south = south.as_u64().expect("a count");
    let north = north.as_u64().expect("a count");

    // Hostile text. The camera id rules refuse it with a JSON 400 (asked directly, as a script
    // would) ...
    let refused = support::client()
        .post(format!("{upload_url}upload"))
        .multipart(photo_form(HOSTILE_TEXT, evalset_photo("shtb_train_05.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let refusal: Value = refused.json().await.expect("a JSON error body");
    assert_eq!(refusal["error"], "invalid_camera_id", "{refusal}");
    // ... and through the page (its `pattern` check removed, as a hostile client would), the
    // refusal that echoes the id, and a file named like markup, are shown as text.
    client
        .execute(
            "document.getElementById('camera_id').removeAttribute('pattern');",
            vec![],
        )
        .await
        .unwrap();
    let hostile_file = photos.copy_as("shtb_train_05.jpg", &format!("{HOSTILE_TEXT}.jpg"));
    let row = submit_upload(client, HOSTILE_TEXT, &hostile_file).await;
    assert_eq!(row["error"], "invalid_camera_id", "{row}");
    assert_eq!(row["name"], format!("{HOSTILE_TEXT}.jpg"), "{row}");
    assert!(
        row["details"].as_str().unwrap().contains(HOSTILE_TEXT),
        "the refusal names the id, as text: {row}"
    );
    assert_no_markup_ran(client, "#results img").await;

    // Back on the dashboard: both panels, sorted, with the upload page's counts and a photo that
    // loaded; both totals and the histogram moved; no reload.
    client.switch_to_window(dashboard_window).await.unwrap();
    let expected_cameras = json!([
        {"camera": "north-gate", "count": north},
        {"camera": "south-gate", "count": south},
    ]);
    let shown = wait_for(client, "both camera panels", DASHBOARD, |d| {
        d["cameras"] == expected_cameras
            && d["photos_loaded"] == 2
            && d["counted_total"] == north + south
    })
    .await;
    assert_eq!(shown["people_now"], north + south, "{shown}");
    assert_eq!(shown["photos_total"], 2, "{shown}");
    assert_eq!(shown["camera_count"], 2, "{shown}");
    let bar_people: u64 = shown["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .sum();
    assert!(
        !shown["bars"].as_array().unwrap().is_empty() && bar_people == north + south,
        "the histogram shows the new counts: {shown}"
    );
    assert_eq!(shown["marker"], "not reloaded", "{shown}");
    assert_eq!(shown["link"], "connected", "{shown}");
    assert_no_markup_ran(client, "#cameras img:not(.thumbnail)").await;

    // Hovering the histogram shows a window's value.
    let tip = client
        .execute(
            "const bar = [...document.querySelectorAll('#histogram rect.bar')]
               .find((b) => Number(b.dataset.people) > 0);
             const box = bar.getBoundingClientRect();
             document.getElementById('histogram').dispatchEvent(new PointerEvent('pointermove',
               {clientX: box.x + box.width / 2, clientY: box.y + box.height / 2, bubbles: true}));
             const tip = document.getElementById('histogram-tip');
             const seen = {people: Number(bar.dataset.people), tip: tip.hidden ? null : tip.textContent};
             document.getElementById('histogram').dispatchEvent(new PointerEvent('pointerleave'));
             return seen;",
            vec![],
        )
        .await
        .unwrap();
    let text = tip["tip"].as_str().expect("a tip over the bar");
    assert!(
        text.contains(&format!(": {} people in ", tip["people"])),
        "hover tip: {tip}"
    );

    // A click on a camera opens its own page (its own URL, no reload), where its photo can be
    // enlarged; back returns to the overview.
    client
        .find(Locator::Css("article.camera[data-camera='north-gate'] img"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        client,
        "the camera's page",
        "const page = document.getElementById('camera-page'), img = document.getElementById('zone-photo');
         return location.pathname === '/cameras/north-gate' && page && !page.hidden
           && img && img.complete && img.naturalWidth > 0;",
        |ok| ok == &json!(true),
    )
    .await;
    client
        .find(Locator::Id("zone-overlay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        client,
        "the enlarged photo",
        "const d = document.getElementById('photo-dialog'), img = d.querySelector('img');
         return d.open && img.complete && img.naturalWidth > 0 ? img.naturalWidth : null;",
        |w| w.as_u64().is_some_and(|w| w > 0),
    )
    .await;
    save_screenshot(client, "dashboard-photo.png").await;
    client
        .execute(
            "document.getElementById('photo-dialog').close(); history.back();",
            vec![],
        )
        .await
        .unwrap();
    wait_for(
        client,
        "the overview again",
        "const o = document.getElementById('overview'); return location.pathname === '/' && o && !o.hidden;",
        |ok| ok == &json!(true),
    )
    .await;
    assert_eq!(
        client
            .execute("return window.crowdTestMarker ?? null;", vec![])
            .await
            .unwrap(),
        "not reloaded"
    );
    save_screenshot(client, "dashboard.png").await;

    // The dashboard goes away: the page says so, then reconnects by itself to the same state.
    dashboard.stop().await.unwrap();
    wait_for(client, "the page notices", LINK_STATE, |s| {
        s == "reconnecting"
    })
    .await;
    let mut config = dashboard_config(&data, dashboard_port);
    config.ingest_listen = crowd::loopback(ingest_port);
    let dashboard = start_dashboard(config)
        .await
        .expect("the dashboard restarts on its port");
    let after = wait_for(client, "the page reconnects", DASHBOARD, |d| {
        d["link"] == "connected"
    })
    .await;
    for field in [
        "cameras",
        "counted_total",
        "people_now",
        "photos_total",
        "camera_count",
        "bars",
        "photos_loaded",
        "marker",
    ] {
        assert_eq!(
            after[field], shown[field],
            "{field} after the restart: {after}"
        );
    }
    save_screenshot(client, "dashboard-reconnected.png").await;
    assert_no_markup_ran(client, "#cameras img:not(.thumbnail)").await;

    browser.close().await;
    dashboard.stop().await.unwrap();
    std::fs::remove_dir_all(data).ok();
}

/// The live link's state as the page shows it.
const LINK_STATE: &str = "return document.getElementById('link-status').dataset.state;";

/// What a person sees on the dashboard, read from the DOM.
const DASHBOARD: &str = r#"
    const number = (id) => Number(document.getElementById(id).textContent.replace(/[^0-9]/g, ''));
    const cards = [...document.querySelectorAll('#cameras article.camera')];
    return {
      link: document.getElementById('link-status').dataset.state,
      counted_total: number('counted-total'),
      people_now: number('people-now'),
      photos_total: number('photos-total'),
      camera_count: number('camera-count'),
      cameras: cards.map((card) => ({
        camera: card.querySelector('.name').textContent,
        count: Number(card.querySelector('.n').textContent.replace(/[^0-9]/g, '')),
      })),
      photos_loaded: cards.filter((card) => {
        const img = card.querySelector('img.thumbnail');
        return img && img.complete && img.naturalWidth > 0;
      }).length,
      bars: [...document.querySelectorAll('#histogram rect.bar')]
        .map((bar) => Number(bar.dataset.people))
        .filter((people) => people > 0),
      marker: window.crowdTestMarker ?? null,
    };
"#;

/// Records every `alert()` the page calls instead of showing it: injected markup would call it.
async fn instrument_alerts(client: &Client) {
    client
        .execute(
            "window.crowdAlerts = []; window.alert = (m) => window.crowdAlerts.push(String(m));",
            vec![],
        )
        .await
        .unwrap();
}

/// No alert was called and no element matching `injected` exists.
async fn assert_no_markup_ran(client: &Client, injected: &str) {
    let found = client
        .execute(
            "return {alerts: window.crowdAlerts, injected: document.querySelectorAll(arguments[0]).length};",
            vec![json!(injected)],
        )
        .await
        .unwrap();
    assert_eq!(found, json!({"alerts": [], "injected": 0}), "markup ran");
}

/// Uploads `photo` for `camera` through the upload page and returns the count it shows.
async fn upload_through_page(client: &Client, camera: &str, photo: &Path) -> Value {
    let row = submit_upload(client, camera, photo).await;
    assert!(row["error"].is_null(), "upload for {camera} failed: {row}");
    row["count"].clone()
}

/// Fills the upload form, submits it, and returns the result row it adds, once finished.
async fn submit_upload(client: &Client, camera: &str, photo: &Path) -> Value {
    let rows_before = client
        .execute(
            "return document.querySelectorAll('#results tbody tr').length;",
            vec![],
        )
        .await
        .unwrap();
    let camera_input = client.find(Locator::Id("camera_id")).await.unwrap();
    camera_input.clear().await.unwrap();
    camera_input.send_keys(camera).await.unwrap();
    // A file input keeps adding files; start from none.
    client
        .execute(
            "document.getElementById('imageFileField').value = '';",
            vec![],
        )
        .await
        .unwrap();
    let file_input = client.find(Locator::Id("imageFileField")).await.unwrap();
    file_input.send_keys(photo.to_str().unwrap()).await.unwrap();
    client
        .find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let finished = format!(
        "const rows = document.querySelectorAll('#results tbody tr');
         if (rows.length <= {rows_before}) return null;
         const row = rows[0]; // newest first
         if (!row.dataset.count && !row.dataset.error) return null;
         return {{
           name: row.querySelector('.name').textContent,
           count: row.dataset.count ? Number(row.querySelector('.count').textContent) : null,
           error: row.dataset.error ?? null,
           details: row.querySelector('.details').textContent,
         }};"
    );
    wait_for(
        client,
        &format!("the upload for {camera}"),
        &finished,
        |row| !row.is_null(),
    )
    .await
}

/// Evaluation photos copied where the browser may read them, under names we choose.
struct Photos {
    dir: PathBuf,
}

impl Photos {
    fn new(data_dir: &Path) -> Self {
        let dir = data_dir.join("photos");
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn copy(&self, name: &str) -> PathBuf {
        self.copy_as(name, name)
    }

    fn copy_as(&self, name: &str, as_name: &str) -> PathBuf {
        let path = self.dir.join(as_name);
        std::fs::write(&path, evalset_photo(name)).unwrap();
        path.canonicalize().unwrap()
    }
}

//! Headless Chromium for the browser tests (`browser.rs`, `browser_analyst.rs`): Debian's
//! `chromium` under a `chromedriver` of our own on a free port, driven with fantoccini; polling
//! the page and saving screenshots to `target/screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

use super::{free_port, temp_data_dir};

/// Inference takes a few seconds per photo in test builds on a small machine; be generous.
pub const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

/// Headless Chromium under a chromedriver of our own, on a free port; both end with the test.
pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    pub async fn start() -> Self {
        let chromium = binary("CROWD_CHROMIUM", "chromium");
        let chromedriver = binary("CROWD_CHROMEDRIVER", "chromedriver");
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let profile = temp_data_dir("chromium-profile");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,1300",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + BROWSER_DEADLINE;
        let client = loop {
            // chromedriver takes a moment to listen; the first attempts may be refused.
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no browser session from chromedriver at {url}: {e}"),
            }
        };
        Self {
            client,
            driver,
            profile,
        }
    }

    /// Ends the session (and Chromium) cleanly; dropping then ends chromedriver.
    pub async fn close(self) {
        self.client.clone().close().await.ok();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        std::fs::remove_dir_all(&self.profile).ok();
    }
}

/// The binary `name` from `env` or the PATH; fails the test clearly when it is not installed.
fn binary(env: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed (the browser test needs it): \
                 apt-get install -y chromium chromium-driver, or set {env}"
            )
        })
}

/// Polls `script` (a function body returning JSON) until `done` holds, for up to
/// [`BROWSER_DEADLINE`].
pub async fn wait_for(
    client: &Client,
    what: &str,
    script: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + BROWSER_DEADLINE;
    loop {
        let value = client.execute(script, vec![]).await.unwrap();
        if done(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not seen within {BROWSER_DEADLINE:?}; last seen: {value}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Saves the page as `target/screenshots/NAME` for a reviewer.
pub async fn save_screenshot(client: &Client, name: &str) {
    // CARGO_TARGET_TMPDIR is `target/tmp`: keep the pictures beside it, under target/.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, client.screenshot().await.unwrap()).unwrap();
    eprintln!("screenshot: {}", path.display());
}

//! What image-predict asks the dashboard before counting, on the dashboard's internal listener
//! (`--dashboard-internal-url`, with the ingest token): the answer already given to an
//! idempotent upload, and a camera's counting zones (cached for a few seconds, so that a zone
//! edited on the camera's page applies to the next photos without a round trip per photo).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::wire::CountResponse;
use common::zones::Zone;
use serde::Deserialize;

/// How long a camera's zones are reused before they are asked for again.
const ZONES_FRESH_FOR: Duration = Duration::from_secs(10);
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

pub struct DashboardLookup {
    http: reqwest::Client,
    base_url: String,
    token: Option<String>,
    zones: Mutex<HashMap<String, CachedZones>>,
}

/// A camera's zones and when they were fetched.
type CachedZones = (Instant, Arc<Vec<Zone>>);

#[derive(Deserialize)]
struct ZonesAnswer {
    zones: Vec<Zone>,
}

impl DashboardLookup {
    pub fn new(base_url: &str, token: Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().timeout(LOOKUP_TIMEOUT).build()?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            zones: Mutex::new(HashMap::new()),
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.get(format!("{}{path}", self.base_url));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The stored answer of `event_id`, if the dashboard has one.
    pub async fn answer(&self, event_id: &str) -> Result<Option<CountResponse>, String> {
        let response = self
            .get(&format!("/internal/v1/answers/{event_id}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match response.status().as_u16() {
            200 => response.json().await.map(Some).map_err(|e| e.to_string()),
            404 => Ok(None),
            status => Err(format!("the dashboard answered {status}")),
        }
    }

    /// The camera's zones: from the cache when fresh, else from the dashboard; when the
    /// dashboard cannot be asked, the last zones known (or none), so that counting goes on.
    pub async fn zones(&self, camera: &str) -> Arc<Vec<Zone>> {
        let cached = self
            .zones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(camera)
            .cloned();
        if let Some((at, zones)) = &cached
            && at.elapsed() < ZONES_FRESH_FOR
        {
            return Arc::clone(zones);
        }
        let asked = async {
            let response = self
                .get(&format!("/internal/v1/cameras/{camera}/zones"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("the dashboard answered {}", response.status()));
            }
            response
                .json::<ZonesAnswer>()
                .await
                .map_err(|e| e.to_string())
        };
        match asked.await {
            Ok(answer) => {
                let zones = Arc::new(answer.zones);
                self.zones
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(camera.to_owned(), (Instant::now(), Arc::clone(&zones)));
                zones
            }
            Err(error) => {
                tracing::debug!(camera, %error, "cannot ask the dashboard for the camera's zones");
                cached.map(|(_, zones)| zones).unwrap_or_default()
            }
        }
    }
}

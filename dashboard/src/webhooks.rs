//! Alerts leave the dashboard: each recorded alert is POSTed as JSON to every configured
//! webhook, at least once, with retries and back-off, in the order recorded.
//!
//! The queue is the store's, so that a restart or a replica's death loses nothing: with the
//! embedded store, a table of alerts waiting per webhook; with Redis, the alert stream read
//! through one consumer group per webhook (each alert goes to one replica's worker; one that
//! dies holding an alert has it claimed by another after a minute). Each request carries the
//! alert's id as `Idempotency-Key` (a receiver drops a repeat by it) and, with a secret, an
//! HMAC-SHA256 of the body in `X-Crowd-Signature: sha256=<hex>`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use redis::streams::{StreamId, StreamReadReply};
use sha2::Sha256;

use crate::alerts::Alert;
use crate::state::DashboardState;
use crate::store::Store;
use crate::store::shared::alert_entry;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A Redis consumer's alert unacknowledged this long is claimed by another replica's worker.
const CLAIM_AFTER: Duration = Duration::from_secs(60);
const BATCH: usize = 20;

#[derive(Clone)]
pub struct WebhookSettings {
    pub urls: Vec<String>,
    pub secret: Option<String>,
    /// This replica's name among the consumers of the Redis alert stream.
    pub consumer: String,
}

/// The body POSTed for an alert.
pub fn body(alert: &Alert) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "type": "crowd.alert", "alert": alert }))
        .expect("alerts serialise")
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Starts one delivery worker per webhook; they run until the state is dropped.
pub fn start(
    state: &Arc<DashboardState>,
    settings: WebhookSettings,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook client: alerts will not leave the dashboard");
            return Vec::new();
        }
    };
    settings
        .urls
        .iter()
        .enumerate()
        .map(|(target, url)| {
            let worker = Worker {
                state: Arc::downgrade(state),
                http: http.clone(),
                url: url.clone(),
                target,
                secret: settings.secret.clone(),
                consumer: settings.consumer.clone(),
            };
            tokio::spawn(worker.run())
        })
        .collect()
}

struct Worker {
    state: std::sync::Weak<DashboardState>,
    http: reqwest::Client,
    url: String,
    target: usize,
    secret: Option<String>,
    consumer: String,
}

impl Worker {
    async fn run(self) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let store = state.store().clone();
        let wake = Arc::clone(&state.new_alert);
        drop(state);
        tracing::info!(url = %self.url, "alert webhook ready");
        match store {
            Store::Embedded(_) => self.run_embedded(store, wake).await,
            Store::Shared(_) => self.run_shared(store).await,
        }
    }

    /// Posts until the webhook takes it (2xx), retrying with back-off; false once the state is
    /// gone (the dashboard stopped).
    async fn post(&self, alert: &Alert) -> bool {
        let body = body(alert);
        let mut wait = FIRST_RETRY;
        loop {
            let Some(state) = self.state.upgrade() else {
                return false;
            };
            let mut request = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .header("idempotency-key", &alert.id)
                .header("x-crowd-alert-id", &alert.id)
                .body(body.clone());
            if let Some(secret) = &self.secret {
                request = request.header("x-crowd-signature", signature(secret, &body));
            }
            let outcome = request.send().await;
            match outcome {
                Ok(response) if response.status().is_success() => {
                    state
                        .metrics
                        .deliveries
                        .with_label_values(&["delivered"])
                        .inc();
                    return true;
                }
                Ok(response) => {
                    state
                        .metrics
                        .deliveries
                        .with_label_values(&["failed"])
                        .inc();
                    tracing::warn!(url = %self.url, alert = %alert.id, status = %response.status(), retry_in = ?wait, "webhook refused an alert");
                }
                Err(error) => {
                    state
                        .metrics
                        .deliveries
                        .with_label_values(&["failed"])
                        .inc();
                    tracing::warn!(url = %self.url, alert = %alert.id, %error, retry_in = ?wait, "webhook unreachable");
                }
            }
            drop(state);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_RETRY);
        }
    }

    async fn run_embedded(self, store: Store, wake: Arc<tokio::sync::Notify>) {
        let Store::Embedded(embedded) = store else {
            unreachable!("checked by run")
        };
        loop {
            let notified = wake.notified();
            let target = self.target;
            let store = Arc::clone(&embedded);
            let pending =
                tokio::task::spawn_blocking(move || store.pending_deliveries(target, BATCH))
                    .await
                    .expect("store calls do not panic");
            match pending {
                Ok(alerts) if !alerts.is_empty() => {
                    for alert in alerts {
                        if !self.post(&alert).await {
                            return;
                        }
                        let (store, target) = (Arc::clone(&embedded), self.target);
                        let done =
                            tokio::task::spawn_blocking(move || store.delivered(target, &alert))
                                .await
                                .expect("store calls do not panic");
                        if let Err(error) = done {
                            tracing::error!(%error, "marking an alert delivered failed; it may be sent again");
                        }
                    }
                }
                Ok(_) => {
                    if self.state.strong_count() == 0 {
                        return;
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
                }
                Err(error) => {
                    tracing::error!(%error, "reading the alert queue failed");
                    tokio::time::sleep(FIRST_RETRY).await;
                }
            }
        }
    }

    async fn run_shared(self, store: Store) {
        let Store::Shared(shared) = store else {
            unreachable!("checked by run")
        };
        let group = format!("webhook-{}", self.target);
        let stream = shared.alert_stream().to_owned();
        let mut connection = match shared.blocking_connection().await {
            Ok(c) => c,
            Err(error) => {
                tracing::error!(%error, "the webhook worker cannot reach Redis; retrying");
                tokio::time::sleep(FIRST_RETRY).await;
                return Box::pin(self.run_shared(Store::Shared(shared))).await;
            }
        };
        // From the stream's start: alerts recorded before this webhook's group existed are
        // delivered too. A second replica creating it finds it there (BUSYGROUP).
        let created: redis::RedisResult<String> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(&group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut connection)
            .await;
        if let Err(error) = created
            && !error.to_string().contains("BUSYGROUP")
        {
            tracing::warn!(%error, "creating the webhook's consumer group failed");
        }
        // Own pending entries first (read before a restart, not acknowledged), then others'
        // stale ones, then new ones.
        let mut own_pending = true;
        loop {
            if self.state.strong_count() == 0 {
                return;
            }
            let mut entries: Vec<StreamId> = Vec::new();
            if own_pending {
                match read_group(&mut connection, &group, &self.consumer, &stream, "0", None).await
                {
                    Ok(found) if !found.is_empty() => entries = found,
                    Ok(_) => own_pending = false,
                    Err(error) => {
                        tracing::warn!(%error, "reading the alert stream failed");
                        tokio::time::sleep(FIRST_RETRY).await;
                        continue;
                    }
                }
            }
            if entries.is_empty() {
                let claimed: redis::RedisResult<(String, StreamReadReplyIds, Vec<String>)> =
                    redis::cmd("XAUTOCLAIM")
                        .arg(&stream)
                        .arg(&group)
                        .arg(&self.consumer)
                        .arg(CLAIM_AFTER.as_millis() as u64)
                        .arg("0-0")
                        .arg("COUNT")
                        .arg(BATCH)
                        .query_async(&mut connection)
                        .await;
                if let Ok((_, StreamReadReplyIds(ids), _)) = claimed {
                    entries = ids;
                }
            }
            if entries.is_empty() {
                match read_group(
                    &mut connection,
                    &group,
                    &self.consumer,
                    &stream,
                    ">",
                    Some(5_000),
                )
                .await
                {
                    Ok(found) => entries = found,
                    Err(error) => {
                        tracing::warn!(%error, "reading the alert stream failed");
                        tokio::time::sleep(FIRST_RETRY).await;
                        continue;
                    }
                }
            }
            for entry in entries {
                match alert_entry(&entry) {
                    Ok((_, alert)) => {
                        if !self.post(&alert).await {
                            return;
                        }
                    }
                    Err(_) => {
                        // Trimmed from the stream while waiting (the queue's bound): dropped.
                        if let Some(state) = self.state.upgrade() {
                            state
                                .metrics
                                .deliveries
                                .with_label_values(&["dropped"])
                                .inc();
                        }
                    }
                }
                let acked: redis::RedisResult<i64> = redis::cmd("XACK")
                    .arg(&stream)
                    .arg(&group)
                    .arg(&entry.id)
                    .query_async(&mut connection)
                    .await;
                if let Err(error) = acked {
                    tracing::warn!(%error, "acknowledging a delivered alert failed; it may be sent again");
                }
            }
        }
    }
}

/// The entries of an XAUTOCLAIM reply's second element.
struct StreamReadReplyIds(Vec<StreamId>);

impl redis::FromRedisValue for StreamReadReplyIds {
    fn from_redis_value(value: redis::Value) -> Result<Self, redis::ParsingError> {
        let range: redis::streams::StreamRangeReply =
            redis::FromRedisValue::from_redis_value(value)?;
        Ok(Self(range.ids))
    }
}

async fn read_group(
    connection: &mut redis::aio::MultiplexedConnection,
    group: &str,
    consumer: &str,
    stream: &str,
    from: &str,
    block_ms: Option<u64>,
) -> redis::RedisResult<Vec<StreamId>> {
    let mut command = redis::cmd("XREADGROUP");
    command
        .arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(BATCH);
    if let Some(ms) = block_ms {
        command.arg("BLOCK").arg(ms);
    }
    command.arg("STREAMS").arg(stream).arg(from);
    let reply: Option<StreamReadReply> = command.query_async(connection).await?;
    Ok(reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

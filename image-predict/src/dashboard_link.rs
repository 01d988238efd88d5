//! The persistent WebSocket link that hands every count to the dashboard, and the waiting for
//! its acknowledgement that makes an answer mean "stored".
//!
//! [`DashboardLink::deliver`] puts the event in the outbox and waits until the dashboard says it
//! has stored it (it acknowledges only after its durable commit, and says so as well for an id
//! it already had). Only then is the camera answered 200. When the dashboard does not
//! acknowledge in time (it is down, or unreachable), the event is withdrawn from the outbox and
//! the camera is answered 503: it still holds the photo and sends it again. So no answered
//! count lives only in this process's memory, and a killed image-predict loses nothing it
//! answered for.
//!
//! While the link is down the task reconnects with exponential backoff and resends everything
//! still waiting. The upgrade request carries the ingest token (`Authorization: Bearer`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::wire::{CountEvent, CountResponse, IngestReply, encode_event_frame};
use futures_util::{SinkExt, StreamExt};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// With no frame from the dashboard for this long, a ping is sent; after two silent periods the
/// connection is considered dead (a vanished host sends no RST).
const IDLE_PING_AFTER: Duration = Duration::from_secs(15);
/// A dashboard host that drops packets would otherwise hold a connection attempt for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct LinkMetrics {
    pub connected: IntGauge,
    pub buffered: IntGauge,
    pub sent: IntCounter,
    pub acknowledged: IntCounter,
    pub rejected: IntCounter,
    pub dropped: IntCounter,
    pub reconnects: IntCounter,
    /// Events withdrawn unacknowledged (answered 503 `count_not_stored`).
    pub not_stored: IntCounter,
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The dashboard stored it now.
    Stored,
    /// The dashboard had this id already (a retry with the same idempotency key).
    AlreadyStored,
    /// No acknowledgement in time: withdrawn, the camera must send the photo again.
    NotStored,
    /// The dashboard refused it as malformed (never expected: our own events).
    Rejected,
}

struct Pending {
    seq: u64,
    id: String,
    frame: Bytes,
    done: Option<oneshot::Sender<Delivery>>,
}

struct Outbox {
    pending: Mutex<VecDeque<Pending>>,
    next_seq: Mutex<u64>,
    capacity: usize,
    new_event: Notify,
    metrics: LinkMetrics,
}

impl Outbox {
    fn push(&self, id: String, frame: Bytes, done: oneshot::Sender<Delivery>) {
        let seq = {
            let mut next = self.next_seq.lock().expect("outbox seq lock");
            *next += 1;
            *next
        };
        let mut pending = self.pending.lock().expect("outbox lock");
        while pending.len() >= self.capacity {
            if let Some(mut old) = pending.pop_front() {
                tracing::warn!(event_id = %old.id, "dashboard outbox full: the oldest event is not stored");
                self.metrics.dropped.inc();
                if let Some(done) = old.done.take() {
                    let _ = done.send(Delivery::NotStored);
                }
            }
        }
        pending.push_back(Pending {
            seq,
            id,
            frame,
            done: Some(done),
        });
        self.metrics.buffered.set(pending.len() as i64);
        drop(pending);
        self.new_event.notify_one();
    }

    /// Frames not yet sent on the current connection (sequence number >= `from`).
    fn unsent(&self, from: u64) -> Vec<(u64, Bytes)> {
        let pending = self.pending.lock().expect("outbox lock");
        pending
            .iter()
            .filter(|p| p.seq >= from)
            .map(|p| (p.seq, p.frame.clone()))
            .collect()
    }

    /// Removes `id` and tells its waiter how it ended; false when it was not waiting.
    fn finish(&self, id: &str, how: Delivery) -> bool {
        let mut pending = self.pending.lock().expect("outbox lock");
        let found = pending.iter().position(|p| p.id == id);
        if let Some(index) = found
            && let Some(mut entry) = pending.remove(index)
            && let Some(done) = entry.done.take()
        {
            let _ = done.send(how);
        }
        self.metrics.buffered.set(pending.len() as i64);
        found.is_some()
    }

    fn len(&self) -> usize {
        self.pending.lock().expect("outbox lock").len()
    }
}

/// Handle to the link; cheap to clone.
#[derive(Clone)]
pub struct DashboardLink {
    outbox: Arc<Outbox>,
}

impl DashboardLink {
    /// Starts the background task that keeps a connection to `url` (e.g.
    /// `ws://dashboard-ingest:4401/ws/ingest`), sending `token` as a bearer token, and delivers
    /// events. `capacity` bounds the events waiting at once.
    pub fn start(
        url: String,
        token: Option<String>,
        capacity: usize,
        metrics: LinkMetrics,
    ) -> (Self, JoinHandle<()>) {
        let outbox = Arc::new(Outbox {
            pending: Mutex::new(VecDeque::new()),
            next_seq: Mutex::new(0),
            capacity: capacity.max(1),
            new_event: Notify::new(),
            metrics,
        });
        let task = tokio::spawn(keep_connected(url, token, Arc::clone(&outbox)));
        (Self { outbox }, task)
    }

    /// Hands the event (and, for an idempotent upload, its answer, which the dashboard keeps)
    /// to the dashboard and waits until it is stored, or `limit` passes.
    pub async fn deliver(
        &self,
        event: &CountEvent,
        answer: Option<&CountResponse>,
        thumbnail_jpeg: &[u8],
        limit: Duration,
    ) -> Delivery {
        let (done, outcome) = oneshot::channel();
        let frame = encode_event_frame(event, answer, thumbnail_jpeg);
        self.outbox.push(event.id.clone(), frame, done);
        match tokio::time::timeout(limit, outcome).await {
            Ok(Ok(how)) => how,
            Ok(Err(_)) => Delivery::NotStored,
            Err(_) => {
                // Withdrawn, so that it is not stored after the camera was told it was not.
                // (If an acknowledgement crossed this on the wire, the dashboard has it: a
                // camera's retry with the same idempotency key is then recognised.)
                self.outbox.finish(&event.id, Delivery::NotStored);
                self.outbox.metrics.not_stored.inc();
                Delivery::NotStored
            }
        }
    }

    pub fn is_connected(&self) -> bool {
        self.outbox.metrics.connected.get() == 1
    }

    /// Events waiting for the dashboard's acknowledgement.
    pub fn unacknowledged(&self) -> usize {
        self.outbox.len()
    }

    /// Waits until every waiting event is acknowledged, or `limit` passes. True when all were.
    pub async fn flush(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.outbox.len() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

async fn keep_connected(url: String, token: Option<String>, outbox: Arc<Outbox>) {
    let mut backoff = FIRST_BACKOFF;
    let mut failures_in_a_row = 0u32;
    loop {
        let attempt = match upgrade_request(&url, token.as_deref()) {
            Ok(request) => {
                tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request))
                    .await
                    .unwrap_or_else(|_| {
                        Err(tokio_tungstenite::tungstenite::Error::Io(
                            std::io::ErrorKind::TimedOut.into(),
                        ))
                    })
            }
            Err(error) => Err(error),
        };
        match attempt {
            Ok((socket, _response)) => {
                tracing::info!(%url, "connected to the dashboard");
                backoff = FIRST_BACKOFF;
                failures_in_a_row = 0;
                outbox.metrics.connected.set(1);
                let reason = deliver(socket, &outbox).await;
                outbox.metrics.connected.set(0);
                outbox.metrics.reconnects.inc();
                tracing::warn!(%url, %reason, unacknowledged = outbox.len(), "dashboard link lost; reconnecting");
            }
            Err(error) => {
                failures_in_a_row += 1;
                // Say it once, then only now and then: the dashboard may be away for a while.
                if failures_in_a_row == 1 || failures_in_a_row.is_multiple_of(60) {
                    tracing::warn!(%url, %error, failures_in_a_row, "cannot reach the dashboard");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn upgrade_request(
    url: &str,
    token: Option<&str>,
) -> Result<
    tokio_tungstenite::tungstenite::handshake::client::Request,
    tokio_tungstenite::tungstenite::Error,
> {
    let mut request = url.into_client_request()?;
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().map_err(
            |e: tokio_tungstenite::tungstenite::http::header::InvalidHeaderValue| {
                tokio_tungstenite::tungstenite::Error::Io(std::io::Error::other(e))
            },
        )?;
        request.headers_mut().insert("authorization", value);
    }
    Ok(request)
}

/// Runs one connection until it fails; returns why it ended.
async fn deliver<S>(socket: tokio_tungstenite::WebSocketStream<S>, outbox: &Outbox) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    // Every event still waiting was either never sent or sent on a dead connection: send all.
    let mut send_from = 0u64;
    let mut silent_periods = 0u32;
    loop {
        for (seq, frame) in outbox.unsent(send_from) {
            if let Err(e) = sink.send(Message::Binary(frame)).await {
                return format!("sending: {e}");
            }
            outbox.metrics.sent.inc();
            send_from = seq + 1;
        }
        tokio::select! {
            _ = outbox.new_event.notified() => {}
            incoming = tokio::time::timeout(IDLE_PING_AFTER, stream.next()) => match incoming {
                Ok(Some(Ok(Message::Text(text)))) => {
                    silent_periods = 0;
                    handle_reply(text.as_str(), outbox);
                }
                Ok(Some(Ok(Message::Close(frame)))) => return format!("closed by the dashboard: {frame:?}"),
                Ok(Some(Ok(_))) => silent_periods = 0, // ping, pong, binary: alive
                Ok(Some(Err(e))) => return format!("receiving: {e}"),
                Ok(None) => return "connection closed".into(),
                Err(_elapsed) => {
                    silent_periods += 1;
                    if silent_periods >= 2 {
                        return "no answer to ping".into();
                    }
                    if let Err(e) = sink.send(Message::Ping(Bytes::new())).await {
                        return format!("sending ping: {e}");
                    }
                }
            },
        }
    }
}

fn handle_reply(text: &str, outbox: &Outbox) {
    match serde_json::from_str::<IngestReply>(text) {
        Ok(IngestReply::Ack { id, duplicate }) => {
            let how = if duplicate {
                Delivery::AlreadyStored
            } else {
                Delivery::Stored
            };
            if outbox.finish(&id, how) {
                outbox.metrics.acknowledged.inc();
            }
        }
        Ok(IngestReply::Reject { id, reason }) => {
            tracing::error!(event_id = ?id, %reason, "the dashboard rejected an event; dropping it");
            if let Some(id) = id {
                outbox.finish(&id, Delivery::Rejected);
            }
            outbox.metrics.rejected.inc();
        }
        Err(e) => tracing::warn!(error = %e, "unreadable reply from the dashboard"),
    }
}

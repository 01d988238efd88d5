//! The persistent WebSocket link that pushes every count to the dashboard.
//!
//! Delivery is at-least-once: each event waits in a bounded outbox until the dashboard
//! acknowledges it (it acknowledges only after storing it, and ignores ids it already has).
//! When the link drops, the task reconnects with exponential backoff and resends everything
//! still unacknowledged, so a dashboard restart loses no count. When the outbox is full (the
//! dashboard has been away for a long time) the oldest event is dropped and counted in
//! `predict_dashboard_events_dropped_total`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::wire::{CountEvent, IngestReply, encode_event_frame};
use futures_util::{SinkExt, StreamExt};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

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
}

struct Pending {
    seq: u64,
    id: String,
    frame: Bytes,
}

struct Outbox {
    pending: Mutex<VecDeque<Pending>>,
    next_seq: Mutex<u64>,
    capacity: usize,
    new_event: Notify,
    metrics: LinkMetrics,
}

impl Outbox {
    fn push(&self, id: String, frame: Bytes) {
        let seq = {
            let mut next = self.next_seq.lock().expect("outbox seq lock");
            *next += 1;
            *next
        };
        let mut pending = self.pending.lock().expect("outbox lock");
        while pending.len() >= self.capacity {
            if let Some(old) = pending.pop_front() {
                tracing::warn!(event_id = %old.id, "dashboard outbox full: dropping the oldest event");
                self.metrics.dropped.inc();
            }
        }
        pending.push_back(Pending { seq, id, frame });
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

    fn forget(&self, id: &str) -> bool {
        let mut pending = self.pending.lock().expect("outbox lock");
        let found = pending.iter().position(|p| p.id == id);
        if let Some(index) = found {
            pending.remove(index);
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
    /// `ws://dashboard:4400/ws/ingest`) and delivers events. `capacity` bounds the outbox.
    pub fn start(url: String, capacity: usize, metrics: LinkMetrics) -> (Self, JoinHandle<()>) {
        let outbox = Arc::new(Outbox {
            pending: Mutex::new(VecDeque::new()),
            next_seq: Mutex::new(0),
            capacity: capacity.max(1),
            new_event: Notify::new(),
            metrics,
        });
        let task = tokio::spawn(keep_connected(url, Arc::clone(&outbox)));
        (Self { outbox }, task)
    }

    /// Queues an event for delivery; never blocks.
    pub fn push(&self, event: &CountEvent, thumbnail_jpeg: &[u8]) {
        self.outbox
            .push(event.id.clone(), encode_event_frame(event, thumbnail_jpeg));
    }

    pub fn is_connected(&self) -> bool {
        self.outbox.metrics.connected.get() == 1
    }

    /// Events waiting for the dashboard's acknowledgement.
    pub fn unacknowledged(&self) -> usize {
        self.outbox.len()
    }

    /// Waits until every queued event is acknowledged, or `limit` passes. True when all were.
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

async fn keep_connected(url: String, outbox: Arc<Outbox>) {
    let mut backoff = FIRST_BACKOFF;
    let mut failures_in_a_row = 0u32;
    loop {
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(tokio_tungstenite::tungstenite::Error::Io(
                std::io::ErrorKind::TimedOut.into(),
            ))
        });
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

/// Runs one connection until it fails; returns why it ended.
async fn deliver<S>(socket: tokio_tungstenite::WebSocketStream<S>, outbox: &Outbox) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    // Every event still pending was either never sent or sent on a dead connection: send all.
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
        Ok(IngestReply::Ack { id }) => {
            if outbox.forget(&id) {
                outbox.metrics.acknowledged.inc();
            }
        }
        Ok(IngestReply::Reject { id, reason }) => {
            tracing::error!(event_id = ?id, %reason, "the dashboard rejected an event; dropping it");
            if let Some(id) = id {
                outbox.forget(&id);
            }
            outbox.metrics.rejected.inc();
        }
        Err(e) => tracing::warn!(error = %e, "unreadable reply from the dashboard"),
    }
}

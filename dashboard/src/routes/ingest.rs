//! `GET /ws/ingest`: the WebSocket image-predict pushes count events into.
//! Each binary frame is one event (see `common::wire`); each gets a text reply: `ack` once stored,
//! `reject` when malformed. If the store fails, the connection is closed without an ack so that
//! image-predict resends the event later.

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::AggregatedMessage;

use crate::state::DashboardState;

/// Largest event frame accepted (a 640 px JPEG thumbnail is well under this).
const MAX_EVENT_FRAME_BYTES: usize = 4 * 1024 * 1024;

pub async fn ingest(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<DashboardState>,
) -> actix_web::Result<HttpResponse> {
    let (response, mut session, stream) = actix_ws::handle(&req, body)?;
    let mut stream = stream
        .max_frame_size(MAX_EVENT_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_EVENT_FRAME_BYTES);
    let peer = req
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    actix_web::rt::spawn(async move {
        state.metrics.ingest_connections.inc();
        tracing::info!(%peer, "image-predict connected");
        while let Some(message) = stream.recv().await {
            let reply = match message {
                Ok(AggregatedMessage::Binary(frame)) => match state.ingest(frame).await {
                    Ok(reply) => reply,
                    Err(error) => {
                        tracing::error!(%error, "cannot store an event; closing the link so it is resent");
                        break;
                    }
                },
                Ok(AggregatedMessage::Ping(bytes)) => {
                    if session.pong(&bytes).await.is_err() {
                        break;
                    }
                    continue;
                }
                Ok(AggregatedMessage::Text(_)) => common::wire::IngestReply::Reject {
                    id: None,
                    reason: "events are binary frames (see common::wire)".into(),
                },
                Ok(AggregatedMessage::Pong(_)) => continue,
                Ok(AggregatedMessage::Close(_)) => break,
                Err(error) => {
                    tracing::warn!(%peer, %error, "ingest protocol error");
                    break;
                }
            };
            let text = serde_json::to_string(&reply).expect("replies always serialise");
            if session.text(text).await.is_err() {
                break;
            }
        }
        let _ = session.close(None).await;
        state.metrics.ingest_connections.dec();
        tracing::info!(%peer, "image-predict disconnected");
    });
    Ok(response)
}

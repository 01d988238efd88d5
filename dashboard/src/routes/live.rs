//! `GET /ws/live`: the browsers' live feed. On connect a browser gets a `snapshot` of the whole
//! state, then a `count` message per new event and a `totals` message every few seconds. A browser
//! too slow to keep up is sent a fresh snapshot instead of the messages it missed.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::Message;
use tokio::sync::broadcast::error::RecvError;

use crate::state::{DashboardState, LiveMessage};

const TOTALS_EVERY: Duration = Duration::from_secs(5);

pub async fn live(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<DashboardState>,
) -> actix_web::Result<HttpResponse> {
    let (response, mut session, mut stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        state.metrics.live_clients.inc();
        // Subscribe before the snapshot so that no event falls between the two; the page applies
        // messages idempotently, so one seen twice does no harm.
        let mut updates = state.subscribe();
        let to_json = |m: &LiveMessage| serde_json::to_string(m).expect("serialisable");
        let mut ok = session
            .text(to_json(&state.snapshot_message().await))
            .await
            .is_ok();
        let mut ticker = tokio::time::interval(TOTALS_EVERY);
        ticker.tick().await;
        while ok {
            ok = tokio::select! {
                update = updates.recv() => match update {
                    Ok(json) => session.text(json.to_string()).await.is_ok(),
                    Err(RecvError::Lagged(_)) => session.text(to_json(&state.snapshot_message().await)).await.is_ok(),
                    Err(RecvError::Closed) => false,
                },
                incoming = stream.recv() => match incoming {
                    Some(Ok(Message::Ping(bytes))) => session.pong(&bytes).await.is_ok(),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => false,
                    Some(Ok(_)) => true,
                },
                _ = ticker.tick() => {
                    let totals = LiveMessage::Totals { totals: state.totals() };
                    session.text(to_json(&totals)).await.is_ok()
                }
            };
        }
        let _ = session.close(None).await;
        state.metrics.live_clients.dec();
    });
    Ok(response)
}

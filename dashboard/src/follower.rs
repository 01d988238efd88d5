//! With the shared store, each replica follows the store's logs: every stored event, whichever
//! replica stored it, is applied to this replica's view and sent to this replica's browsers, in
//! log order, once; every recorded alert likewise. When Redis goes away a follower reconnects
//! with backoff and rebuilds the view from a fresh snapshot, so that nothing that happened
//! meanwhile is missed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use crate::state::{DashboardState, LiveMessage, now_ms};
use crate::store::StoreError;
use crate::store::shared::SharedStore;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Follows the event log from `position` (where the view's snapshot ended) for ever.
pub async fn follow(
    store: Arc<SharedStore>,
    state: web::Data<DashboardState>,
    mut position: String,
    retention: Duration,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut resync = false;
    loop {
        let Err(error) = follow_once(
            &store,
            &state,
            &mut position,
            &mut resync,
            &mut backoff,
            retention,
        )
        .await;
        tracing::warn!(%error, ?backoff, "following the shared store failed; retrying");
        resync = true;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn follow_once(
    store: &SharedStore,
    state: &DashboardState,
    position: &mut String,
    resync: &mut bool,
    backoff: &mut Duration,
    retention: Duration,
) -> Result<Infallible, StoreError> {
    let mut reader = store.log_reader().await?;
    if *resync {
        // Entries may have been trimmed from the log while this replica was not reading it.
        let snapshot = store
            .snapshot(now_ms() - retention.as_millis() as i64)
            .await?;
        *position = snapshot
            .log_position
            .clone()
            .expect("the shared store's snapshot has a log position");
        state.replace_view(snapshot).await;
        *resync = false;
        tracing::info!(%position, "view rebuilt from the shared store");
    }
    *backoff = FIRST_BACKOFF;
    loop {
        for entry in reader.read_after(position).await? {
            state.apply(&entry.event, Some((entry.people_total, entry.photos_total)));
            *position = entry.position;
        }
    }
}

/// Follows the alert stream from now on: each recorded alert (by any replica) sets the level in
/// this replica's view and goes to its browsers.
pub async fn follow_alerts(store: Arc<SharedStore>, state: web::Data<DashboardState>) {
    let mut position = "$".to_owned();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let result: Result<Infallible, StoreError> = async {
            let mut reader = store.alert_reader().await?;
            backoff = FIRST_BACKOFF;
            loop {
                for (id, alert) in reader.read_after(&position).await? {
                    state.show_level(alert.subject_kind, &alert.subject, alert.level);
                    state.broadcast(&LiveMessage::Alert { alert });
                    position = id;
                }
            }
        }
        .await;
        let Err(error) = result;
        tracing::warn!(%error, ?backoff, "following the alert stream failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Re-reads the registry's run-time changes every `every` (another replica may have made one).
pub async fn refresh_registry(state: web::Data<DashboardState>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if let Err(error) = state.reload_registry().await {
            tracing::warn!(%error, "re-reading the camera registry failed");
        }
    }
}

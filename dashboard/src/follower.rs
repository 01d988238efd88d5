//! With the shared store, each replica follows the store's event log: every stored event, whichever
//! replica stored it, is applied to this replica's view and sent to this replica's browsers, in
//! log order, once. When Redis goes away the follower reconnects with backoff and rebuilds the
//! view from a fresh snapshot, so that nothing that happened meanwhile is missed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use crate::state::{DashboardState, now_ms};
use crate::store::StoreError;
use crate::store::shared::SharedStore;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Follows the log from `position` (where the view's snapshot ended) for ever.
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
        state.replace_view(snapshot);
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

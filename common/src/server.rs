//! The HTTP servers of one service, run and stopped together: each service has a public
//! listener (browsers, cameras or its callers) and an ops listener (`/metrics`, `/healthz`,
//! `/readyz`, for the cluster only); the dashboard also has its internal ingest listener. One
//! actix server per listener, so that a route is served on exactly the listener it belongs to.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::{Server, ServerHandle};
use anyhow::Context;
use futures_util::future::join_all;

/// Binds `address` for the listener named `what` (for the error message).
pub fn bind(address: SocketAddr, what: &str) -> anyhow::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind(address)
        .with_context(|| format!("binding the {what} listener to {address}"))?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

/// Running servers; [`Servers::run`] returns when all have stopped, on SIGTERM or SIGINT or
/// [`ServersHandle::stop`].
///
/// Every server is built with `disable_signals()`: actix's own handler stops the whole actix
/// system once *its* server has stopped, so the quick ops server would tear down the public
/// server's workers mid-request. Here a signal stops all servers gracefully and each waits for
/// its own in-flight requests.
#[derive(Default)]
pub struct Servers {
    servers: Vec<(&'static str, Server)>,
}

impl Servers {
    pub fn add(&mut self, name: &'static str, server: Server) {
        self.servers.push((name, server));
    }

    pub fn handle(&self) -> ServersHandle {
        ServersHandle(self.servers.iter().map(|(_, s)| s.handle()).collect())
    }

    /// Serves until every server has stopped; when one fails, or on SIGTERM/SIGINT, the others
    /// are stopped too (gracefully: in-flight requests finish within each server's grace).
    pub async fn run(self) -> anyhow::Result<()> {
        let handle = self.handle();
        let on_signal = {
            let handle = handle.clone();
            tokio::spawn(async move {
                stop_signal().await;
                tracing::info!("stop signal received; finishing in-flight requests");
                handle.stop(true).await;
            })
        };
        let results = join_all(self.servers.into_iter().map(|(name, server)| {
            let handle = handle.clone();
            async move {
                let result = server.await;
                if result.is_err() {
                    handle.stop(true).await;
                }
                result.with_context(|| format!("the {name} server"))
            }
        }))
        .await;
        on_signal.abort();
        results.into_iter().collect()
    }
}

/// Stops every server of a [`Servers`].
#[derive(Clone)]
pub struct ServersHandle(Vec<ServerHandle>);

impl ServersHandle {
    /// Stops accepting; `graceful`: let in-flight requests finish (up to the servers' grace).
    pub async fn stop(&self, graceful: bool) {
        join_all(self.0.iter().map(|h| h.stop(graceful))).await;
    }
}

/// SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

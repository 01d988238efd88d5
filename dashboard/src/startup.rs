//! Building and running the dashboard HTTP service.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use common::http::{self, SHUTDOWN_GRACE_SECS, healthz, json_extractor_errors, not_found};
use prometheus::Registry;
use tracing_actix_web::TracingLogger;

use crate::configuration::DashboardConfig;
use crate::follower::follow;
use crate::history::History;
use crate::metrics::DashboardMetrics;
use crate::routes::{api, ingest, live, page};
use crate::state::{DashboardState, now_ms};
use crate::store::{Store, StoreChoice};

const PRUNE_EVERY: Duration = Duration::from_secs(600);

pub struct Application {
    port: u16,
    server: Server,
    background: BackgroundTasks,
    state: web::Data<DashboardState>,
}

/// The pruner and, with the shared store, the log follower. Aborted when the application is
/// dropped, so that a stopped (or killed) dashboard leaves nothing running.
struct BackgroundTasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Application {
    /// Opens the store, rebuilds the view from it, and binds the listener.
    pub async fn build(config: DashboardConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("binding the dashboard to {}", config.listen))?;
        let port = listener.local_addr()?.port();

        let retention = config.history_retention();
        let retention_ms = retention.as_millis() as i64;
        let store = Store::open(&config).await.context("opening the store")?;
        let snapshot = store.snapshot(now_ms() - retention_ms).await?;
        let store_name = match &config.store {
            StoreChoice::Embedded => format!("embedded ({})", config.data_dir.display()),
            StoreChoice::Redis(_) => format!("redis (prefix {})", config.redis_prefix),
        };
        tracing::info!(
            store = %store_name,
            photos = snapshot.photos_total,
            cameras = snapshot.latest.len(),
            "history loaded"
        );
        let log_position = snapshot.log_position.clone();

        let registry = Registry::new();
        let state = web::Data::new(DashboardState::new(
            store.clone(),
            History::from_snapshot(snapshot),
            DashboardMetrics::register(&registry),
        ));
        let registry = web::Data::new(registry);

        let mut background = BackgroundTasks(Vec::new());
        if let (Some(shared), Some(position)) = (store.shared(), log_position) {
            background.0.push(tokio::spawn(follow(
                shared.clone(),
                state.clone(),
                position,
                retention,
            )));
        }
        background.0.push({
            let state = state.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(PRUNE_EVERY);
                loop {
                    every.tick().await;
                    match state.prune(now_ms() - retention_ms).await {
                        Ok(0) => {}
                        Ok(removed) => tracing::info!(removed, "pruned old history"),
                        Err(error) => tracing::error!(%error, "pruning history failed"),
                    }
                }
            })
        });

        let server_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::default())
                .configure(json_extractor_errors)
                .app_data(server_state.clone())
                .app_data(registry.clone())
                .route("/", web::get().to(page::index))
                .route("/static/{name}", web::get().to(page::asset))
                .route("/ws/ingest", web::get().to(ingest::ingest))
                .route("/ws/live", web::get().to(live::live))
                .route("/api/v1/summary", web::get().to(api::summary))
                .route("/api/v1/histogram", web::get().to(api::histogram))
                .route("/api/v1/cameras/{camera}/photo", web::get().to(api::photo))
                .route("/counters", web::get().to(api::counters))
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(api::readyz))
                .route("/metrics", web::get().to(http::metrics))
                .default_service(web::to(not_found))
        })
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .listen(listener)?
        .run();
        tracing::info!(port, "dashboard listening");
        Ok(Self {
            port,
            server,
            background,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped. Every acknowledged event was committed durably when it arrived, so
    /// there is nothing left to flush; the store is closed when the state is dropped.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            server,
            background,
            state,
            ..
        } = self;
        let result = server.await;
        drop(background);
        // The connections' tasks (browsers, image-predict) end with the worker threads, a moment
        // after the server itself; wait for their handles on the state, so that the store is
        // closed when this returns and a new dashboard can open its file at once.
        let state = state.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(SHUTDOWN_GRACE_SECS);
        while Arc::strong_count(&state) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        result.map_err(Into::into)
    }
}

//! Building and running the image-predict HTTP service.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use common::http::{self, SHUTDOWN_GRACE_SECS, healthz, json_extractor_errors, not_found};
use prometheus::Registry;
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::configuration::PredictConfig;
use crate::counting::CountingService;
use crate::dashboard_link::DashboardLink;
use crate::metrics::PredictMetrics;
use crate::model::PeopleCounter;
use crate::pool::InferencePool;
use crate::routes::{Limits, count_form, count_raw, readyz};

/// How long a stopping service keeps trying to hand its last events to the dashboard.
const EVENT_FLUSH_ON_STOP: Duration = Duration::from_secs(5);

pub struct Application {
    port: u16,
    server: Server,
    service: web::Data<CountingService>,
    link_task: JoinHandle<()>,
}

impl Application {
    /// Loads the model, starts the workers and the dashboard link, and binds the listener.
    pub async fn build(config: PredictConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("binding image-predict to {}", config.listen))?;
        let port = listener.local_addr()?.port();

        let started = std::time::Instant::now();
        let counter: Arc<dyn PeopleCounter> = Arc::new(config.model.load()?);
        tracing::info!(
            counting = ?config.model.counting,
            load_ms = started.elapsed().as_millis() as u64,
            "model ready"
        );

        let registry = Registry::new();
        let metrics = PredictMetrics::register(&registry);
        let pool = InferencePool::start(
            config.worker_count(),
            config.inference_queue,
            metrics.pool.clone(),
        );
        let (link, link_task) = DashboardLink::start(
            config.dashboard_ingest_url.clone(),
            config.event_buffer,
            metrics.link.clone(),
        );
        let service = web::Data::new(CountingService {
            counter,
            pool,
            link,
            metrics,
            max_pixels: config.predict_max_pixels,
        });
        let limits = web::Data::new(Limits {
            max_body_bytes: config.predict_max_body_bytes,
        });
        let registry = web::Data::new(registry);

        let server = {
            let service = service.clone();
            HttpServer::new(move || {
                App::new()
                    .wrap(TracingLogger::default())
                    .configure(json_extractor_errors)
                    .app_data(service.clone())
                    .app_data(limits.clone())
                    .app_data(registry.clone())
                    .route("/api/v1/count", web::post().to(count_form))
                    .route("/api/v1/cameras/{camera}/photos", web::post().to(count_raw))
                    .route("/healthz", web::get().to(healthz))
                    .route("/readyz", web::get().to(readyz))
                    .route("/metrics", web::get().to(http::metrics))
                    .default_service(web::to(not_found))
            })
            .shutdown_timeout(SHUTDOWN_GRACE_SECS)
            .listen(listener)?
            .run()
        };
        tracing::info!(port, "image-predict listening");
        Ok(Self {
            port,
            server,
            service,
            link_task,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from another task (tests, the launcher).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGTERM/SIGINT or [`Self::handle`]); then finishes in-flight
    /// requests, hands the last events to the dashboard, and stops the workers.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await?;
        let link = &self.service.link;
        if !link.flush(EVENT_FLUSH_ON_STOP).await {
            tracing::warn!(
                unacknowledged = link.unacknowledged(),
                "stopping with events the dashboard has not acknowledged"
            );
        }
        self.link_task.abort();
        let service = self.service.clone();
        tokio::task::spawn_blocking(move || service.pool.shutdown()).await?;
        Ok(())
    }
}

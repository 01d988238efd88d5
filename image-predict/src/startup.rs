//! Building and running image-predict: the API listener (inside the cluster, camera keys
//! required) and the ops listener (`/metrics`, `/healthz`, `/readyz`).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use common::auth::{CameraKeys, required_token};
use common::http::{self, SHUTDOWN_GRACE_SECS, healthz, json_extractor_errors, not_found};
use common::server::{Servers, ServersHandle, bind};
use prometheus::Registry;
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::configuration::PredictConfig;
use crate::counting::CountingService;
use crate::dashboard_link::DashboardLink;
use crate::dashboard_lookup::DashboardLookup;
use crate::metrics::PredictMetrics;
use crate::model::PeopleCounter;
use crate::pool::InferencePool;
use crate::routes::{Limits, count_form, count_raw, readyz};

/// How long a stopping service keeps trying to hand its last events to the dashboard.
const EVENT_FLUSH_ON_STOP: Duration = Duration::from_secs(5);
/// How often the camera key file is checked for changes.
const KEY_FILE_CHECK: Duration = Duration::from_secs(10);

pub struct Application {
    port: u16,
    metrics_port: u16,
    servers: Servers,
    service: web::Data<CountingService>,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Loads the model, starts the workers and the dashboard link, and binds the listeners.
    pub async fn build(config: PredictConfig) -> anyhow::Result<Self> {
        let (listener, port) = bind(config.listen, "image-predict API")?;
        let (ops_listener, metrics_port) = bind(config.metrics_listen, "image-predict ops")?;
        let keys = CameraKeys::configure(
            config.api_keys_file.as_deref(),
            config.no_auth,
            "image-predict",
        )
        .map_err(anyhow::Error::msg)?;
        let ingest_token = required_token(
            config.ingest_token.as_deref(),
            config.no_auth,
            "INGEST_TOKEN (the dashboard's ingest token)",
        )
        .map_err(anyhow::Error::msg)?;

        let started = std::time::Instant::now();
        let counter: Arc<dyn PeopleCounter> = Arc::new(config.model.load()?);
        tracing::info!(
            counting = ?config.model.counting,
            model = counter.name(),
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
            ingest_token.clone(),
            config.event_buffer,
            metrics.link.clone(),
        );
        let lookup = DashboardLookup::new(&config.dashboard_internal_url, ingest_token)
            .context("the dashboard lookup client")?;
        let service = web::Data::new(CountingService {
            counter,
            pool,
            link,
            lookup,
            metrics,
            max_pixels: config.predict_max_pixels,
            delivery_timeout: config.delivery_timeout(),
        });
        let limits = web::Data::new(Limits {
            max_body_bytes: config.predict_max_body_bytes,
            max_capture_age_ms: i64::from(config.max_capture_age_hours) * 3_600_000,
        });
        let registry = web::Data::new(registry);
        let background = vec![link_task, tokio::spawn(keys.clone().watch(KEY_FILE_CHECK))];
        let keys = web::Data::new(keys);

        let mut servers = Servers::default();
        let api = {
            let service = service.clone();
            HttpServer::new(move || {
                App::new()
                    .wrap(TracingLogger::default())
                    .configure(json_extractor_errors)
                    .app_data(service.clone())
                    .app_data(limits.clone())
                    .app_data(keys.clone())
                    .route("/api/v1/count", web::post().to(count_form))
                    .route("/api/v1/cameras/{camera}/photos", web::post().to(count_raw))
                    .route("/healthz", web::get().to(healthz))
                    .default_service(web::to(not_found))
            })
            .shutdown_timeout(SHUTDOWN_GRACE_SECS)
            .disable_signals()
            .listen(listener)?
            .run()
        };
        servers.add("image-predict API", api);
        let ops = {
            let service = service.clone();
            HttpServer::new(move || {
                App::new()
                    .app_data(service.clone())
                    .app_data(registry.clone())
                    .route("/metrics", web::get().to(http::metrics))
                    .route("/healthz", web::get().to(healthz))
                    .route("/readyz", web::get().to(readyz))
                    .default_service(web::to(not_found))
            })
            .workers(1)
            .shutdown_timeout(1)
            .disable_signals()
            .listen(ops_listener)?
            .run()
        };
        servers.add("image-predict ops", ops);
        tracing::info!(port, metrics_port, "image-predict listening");
        Ok(Self {
            port,
            metrics_port,
            servers,
            service,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// Stops the servers from another task (tests, the launcher).
    pub fn handle(&self) -> ServersHandle {
        self.servers.handle()
    }

    /// Serves until stopped (SIGTERM/SIGINT or [`Self::handle`]); then finishes in-flight
    /// requests (each waits for its count to be stored), and stops the workers.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.servers.run().await?;
        let link = &self.service.link;
        if !link.flush(EVENT_FLUSH_ON_STOP).await {
            tracing::warn!(
                unacknowledged = link.unacknowledged(),
                "stopping with counts the dashboard has not acknowledged (their cameras were answered 503)"
            );
        }
        for task in &self.background {
            task.abort();
        }
        let service = self.service.clone();
        tokio::task::spawn_blocking(move || service.pool.shutdown()).await?;
        Ok(())
    }
}

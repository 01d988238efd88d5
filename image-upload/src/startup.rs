//! Building and running image-upload: the public listener (the page and the uploads) and the
//! ops listener (`/metrics`, `/healthz`, `/readyz`).

use std::time::Duration;

use actix_web::{App, HttpServer, web};
use common::auth::{CameraKeys, RateLimits};
use common::http::{self, SHUTDOWN_GRACE_SECS, healthz, json_extractor_errors, not_found};
use common::server::{Servers, ServersHandle, bind};
use prometheus::Registry;
use tracing_actix_web::TracingLogger;

use crate::configuration::UploadConfig;
use crate::metrics::UploadMetrics;
use crate::predict_client::PredictClient;
use crate::routes::{Access, Limits, page, readyz, script, upload_form, upload_raw};

/// How often the camera key file is checked for changes.
const KEY_FILE_CHECK: Duration = Duration::from_secs(10);

pub struct Application {
    port: u16,
    metrics_port: u16,
    servers: Servers,
    key_watch: tokio::task::JoinHandle<()>,
}

impl Application {
    pub async fn build(config: UploadConfig) -> anyhow::Result<Self> {
        let (listener, port) = bind(config.listen, "image-upload public")?;
        let (ops_listener, metrics_port) = bind(config.metrics_listen, "image-upload ops")?;
        let keys = CameraKeys::configure(
            config.api_keys_file.as_deref(),
            config.no_auth,
            "image-upload",
        )
        .map_err(anyhow::Error::msg)?;
        let key_watch = tokio::spawn(keys.clone().watch(KEY_FILE_CHECK));
        let access = web::Data::new(Access {
            keys,
            limits: RateLimits::new(config.rate_limit_per_minute, config.rate_limit_burst),
        });
        let registry = Registry::new();
        let upload_metrics = web::Data::new(UploadMetrics::register(&registry));
        let predict = web::Data::new(PredictClient::new(
            &config.predict_url,
            config.predict_timeout(),
            upload_metrics.predict_retries.clone(),
        )?);
        let limits = web::Data::new(Limits {
            max_body_bytes: config.upload_max_body_bytes,
            max_pixels: config.upload_max_pixels,
            max_capture_age_ms: i64::from(config.max_capture_age_hours) * 3_600_000,
        });
        let registry = web::Data::new(registry);
        let mut servers = Servers::default();
        let public = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::default())
                .configure(json_extractor_errors)
                .app_data(predict.clone())
                .app_data(limits.clone())
                .app_data(access.clone())
                .app_data(upload_metrics.clone())
                .route("/", web::get().to(page))
                .route("/static/upload.js", web::get().to(script))
                .route("/upload", web::post().to(upload_form))
                .route(
                    "/api/v1/cameras/{camera}/photos",
                    web::post().to(upload_raw),
                )
                .route("/healthz", web::get().to(healthz))
                .default_service(web::to(not_found))
        })
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .disable_signals()
        .listen(listener)?
        .run();
        servers.add("image-upload public", public);
        let ops = HttpServer::new(move || {
            App::new()
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
        .run();
        servers.add("image-upload ops", ops);
        tracing::info!(port, metrics_port, predict_url = %config.predict_url, "image-upload listening");
        Ok(Self {
            port,
            metrics_port,
            servers,
            key_watch,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    pub fn handle(&self) -> ServersHandle {
        self.servers.handle()
    }

    /// Serves until stopped (SIGTERM/SIGINT or [`Self::handle`]), letting in-flight uploads finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = self.servers.run().await;
        self.key_watch.abort();
        result
    }
}

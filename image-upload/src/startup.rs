//! Building and running the image-upload HTTP service.

use std::net::TcpListener;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use common::http::{self, SHUTDOWN_GRACE_SECS, healthz, json_extractor_errors, not_found};
use prometheus::Registry;
use tracing_actix_web::TracingLogger;

use crate::configuration::UploadConfig;
use crate::metrics::UploadMetrics;
use crate::predict_client::PredictClient;
use crate::routes::{Limits, page, readyz, script, upload_form, upload_raw};

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    pub async fn build(config: UploadConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("binding image-upload to {}", config.listen))?;
        let port = listener.local_addr()?.port();
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
        });
        let registry = web::Data::new(registry);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::default())
                .configure(json_extractor_errors)
                .app_data(predict.clone())
                .app_data(limits.clone())
                .app_data(upload_metrics.clone())
                .app_data(registry.clone())
                .route("/", web::get().to(page))
                .route("/static/upload.js", web::get().to(script))
                .route("/upload", web::post().to(upload_form))
                .route(
                    "/api/v1/cameras/{camera}/photos",
                    web::post().to(upload_raw),
                )
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(http::metrics))
                .default_service(web::to(not_found))
        })
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .listen(listener)?
        .run();
        tracing::info!(port, predict_url = %config.predict_url, "image-upload listening");
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGTERM/SIGINT or [`Self::handle`]), letting in-flight uploads finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await.map_err(Into::into)
    }
}

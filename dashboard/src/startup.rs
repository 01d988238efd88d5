//! Building and running the dashboard: three listeners (public, ingest, ops), the store, the
//! view rebuilt from it, and the background tasks (log followers, pruner, alert recorder,
//! webhook workers).
//!
//! The ops listener starts first: while the store cannot be reached (Redis not yet up after a
//! first apply, or rescheduled), the dashboard keeps retrying in-process, `/healthz` answers and
//! `/readyz` says 503, instead of the process exiting and crash-looping.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use common::auth::{SharedToken, check_viewer_access, required_token};
use common::http::{
    self, SHUTDOWN_GRACE_SECS, healthz, json_error, json_extractor_errors, not_found,
};
use common::server::{Servers, ServersHandle, bind, stop_signal};
use prometheus::Registry;
use tracing_actix_web::TracingLogger;

use crate::configuration::DashboardConfig;
use crate::follower::{follow, follow_alerts, refresh_registry};
use crate::history::History;
use crate::metrics::DashboardMetrics;
use crate::registry::{Registry as CameraRegistry, RegistryFile};
use crate::routes::api::{AdminToken, Retention};
use crate::routes::guard::{Guard, check_token};
use crate::routes::{api, export, ingest, internal, live, page};
use crate::state::{DashboardState, now_ms, record_alerts};
use crate::store::{Store, StoreChoice};
use crate::webhooks::{self, WebhookSettings};

/// With Redis, how often a replica re-reads the registry changes other replicas made.
const REGISTRY_REFRESH: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub struct Application {
    port: u16,
    ingest_port: u16,
    metrics_port: u16,
    servers: Servers,
    background: BackgroundTasks,
    state: web::Data<DashboardState>,
}

/// The pruner, the alert recorder, the webhook workers and, with the shared store, the log
/// followers. Aborted when the application is dropped, so that a stopped (or killed) dashboard
/// leaves nothing running.
struct BackgroundTasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A webhook URL the delivery workers can reach. Only plain http://: the services' HTTP client is
/// built without TLS (each service would need a process-wide crypto provider before any client),
/// so an https:// receiver is refused here rather than failing every delivery later; reach one
/// through an in-cluster relay.
fn check_webhook_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "http" && parsed.host().is_some() => Ok(()),
        Ok(parsed) if parsed.scheme() == "https" => Err(format!(
            "ALERT_WEBHOOK_URLS: {url}: https webhooks are not supported (plain http:// only; use an in-cluster relay)"
        )),
        Ok(_) => Err(format!(
            "ALERT_WEBHOOK_URLS: {url}: not an http:// URL with a host"
        )),
        Err(error) => Err(format!("ALERT_WEBHOOK_URLS: {url}: {error}")),
    }
}

/// `/readyz` of the ops listener, before and after the store is open.
async fn readyz(ready: web::Data<AtomicBool>) -> HttpResponse {
    if ready.load(Ordering::Acquire) {
        api::readyz().await
    } else {
        json_error(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the dashboard is still opening its store",
        )
    }
}

impl Application {
    /// Binds the listeners, starts the ops listener, opens the store (retrying while Redis is
    /// unreachable), rebuilds the view, and starts the public and ingest listeners.
    pub async fn build(config: DashboardConfig) -> anyhow::Result<Self> {
        // rediss:// needs a process-wide TLS provider; a second install (tests, the launcher
        // building several dashboards) is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        check_viewer_access(
            config.listen,
            config.viewer_token.as_deref(),
            config.open_viewers,
            config.no_auth,
        )
        .map_err(anyhow::Error::msg)?;
        let (listener, port) = bind(config.listen, "dashboard public")?;
        let (ingest_listener, ingest_port) = bind(config.ingest_listen, "dashboard ingest")?;
        let (ops_listener, metrics_port) = bind(config.metrics_listen, "dashboard ops")?;
        let ingest_token = required_token(
            config.ingest_token.as_deref(),
            config.no_auth,
            "INGEST_TOKEN (the ingest listener's token)",
        )
        .map_err(anyhow::Error::msg)?;
        if config.no_auth {
            tracing::warn!(
                "the ingest listener takes events without a token (--no-auth): for local demos only"
            );
        }
        for url in &config.alert_webhook_urls {
            check_webhook_url(url).map_err(anyhow::Error::msg)?;
        }
        let registry_file = match &config.cameras_file {
            Some(path) => RegistryFile::read(path)?,
            None => RegistryFile::default(),
        };

        let registry = Registry::new();
        let metrics = DashboardMetrics::register(&registry, config.metrics_max_cameras);
        let ready = web::Data::new(AtomicBool::new(false));
        let mut servers = Servers::default();
        servers.add(
            "dashboard ops",
            ops_server(ops_listener, web::Data::new(registry), ready.clone())?,
        );

        let retention = config.history_retention();
        let retention_ms = retention.as_millis() as i64;
        let rollup_ms = config.rollup_retention().as_millis() as i64;
        let store = open_store(&config, &servers).await?;
        let snapshot = store.snapshot(now_ms() - retention_ms).await?;
        let changed = store.camera_settings().await?;
        let levels = store.levels().await?;
        let store_name = match &config.store {
            StoreChoice::Embedded => format!("embedded ({})", config.data_dir.display()),
            StoreChoice::Redis(_) => format!("redis (prefix {})", config.redis_prefix),
        };
        tracing::info!(
            store = %store_name,
            photos = snapshot.photos_total,
            cameras = snapshot.latest.len(),
            registry_cameras = registry_file.cameras.len() + changed.len(),
            "history loaded"
        );
        let log_position = snapshot.log_position.clone();
        let camera_registry = Arc::new(CameraRegistry::new(registry_file.clone(), changed));
        let (state, alerts) = DashboardState::new(
            store.clone(),
            History::from_snapshot(snapshot, camera_registry),
            registry_file,
            levels,
            config.alert_rules(),
            config.alert_webhook_urls.len(),
            metrics.clone(),
        );
        let state = web::Data::new(state);

        let mut background = BackgroundTasks(Vec::new());
        let shared_state = state.clone().into_inner();
        background.0.push(tokio::spawn(record_alerts(
            Arc::downgrade(&shared_state),
            alerts,
        )));
        background.0.extend(webhooks::start(
            &shared_state,
            WebhookSettings {
                urls: config.alert_webhook_urls.clone(),
                secret: config.alert_webhook_secret.clone(),
                consumer: std::env::var("HOSTNAME")
                    .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string()),
            },
        ));
        drop(shared_state);
        if let (Some(shared), Some(position)) = (store.shared(), log_position) {
            background.0.push(tokio::spawn(follow(
                shared.clone(),
                state.clone(),
                position,
                retention,
            )));
            background
                .0
                .push(tokio::spawn(follow_alerts(shared.clone(), state.clone())));
            background.0.push(tokio::spawn(refresh_registry(
                state.clone(),
                REGISTRY_REFRESH,
            )));
        }
        background.0.push({
            let state = state.clone();
            let prune_every = Duration::from_secs(config.prune_every_secs.max(1));
            tokio::spawn(async move {
                let mut every = tokio::time::interval(prune_every);
                loop {
                    every.tick().await;
                    let now = now_ms();
                    match state.prune(now - retention_ms, now - rollup_ms).await {
                        Ok(0) => {}
                        Ok(removed) => tracing::info!(removed, "pruned old history"),
                        Err(error) => tracing::error!(%error, "pruning history failed"),
                    }
                }
            })
        });

        let viewer = web::Data::new(Guard {
            token: config.viewer_token.as_deref().map(SharedToken::new),
            also: config.admin_token.as_deref().map(SharedToken::new),
            challenge: "Basic realm=\"crowd dashboard\"",
            open_paths: &["/healthz"],
        });
        let admin = web::Data::new(AdminToken(
            config.admin_token.as_deref().map(SharedToken::new),
        ));
        let retention_data = web::Data::new(Retention {
            history_ms: retention_ms,
        });
        let public = {
            let state = state.clone();
            HttpServer::new(move || {
                App::new()
                    .wrap(from_fn(check_token))
                    .wrap(TracingLogger::default())
                    .configure(json_extractor_errors)
                    .app_data(viewer.clone())
                    .app_data(admin.clone())
                    .app_data(retention_data.clone())
                    .app_data(state.clone())
                    .route("/", web::get().to(page::index))
                    .route("/cameras/{camera}", web::get().to(page::index))
                    .route("/static/{name}", web::get().to(page::asset))
                    .route("/ws/live", web::get().to(live::live))
                    .route("/api/v1/summary", web::get().to(api::summary))
                    .route("/api/v1/histogram", web::get().to(api::histogram))
                    .route("/api/v1/alerts", web::get().to(api::alerts))
                    .route("/api/v1/export", web::get().to(export::export))
                    .route("/api/v1/cameras/{camera}", web::get().to(api::camera))
                    .route("/api/v1/cameras/{camera}/photo", web::get().to(api::photo))
                    .route(
                        "/api/v1/cameras/{camera}/photos",
                        web::get().to(api::photos),
                    )
                    .route(
                        "/api/v1/cameras/{camera}/photos/{event}",
                        web::get().to(api::photo_of_event),
                    )
                    .route(
                        "/api/v1/cameras/{camera}/series",
                        web::get().to(api::camera_series),
                    )
                    .route(
                        "/api/v1/cameras/{camera}/settings",
                        web::get().to(api::settings),
                    )
                    .route(
                        "/api/v1/cameras/{camera}/settings",
                        web::put().to(api::put_settings),
                    )
                    .route(
                        "/api/v1/groups/{group}/series",
                        web::get().to(api::group_series),
                    )
                    .route("/counters", web::get().to(api::counters))
                    .route("/healthz", web::get().to(healthz))
                    .default_service(web::to(not_found))
            })
            .shutdown_timeout(SHUTDOWN_GRACE_SECS)
            .disable_signals()
            .listen(listener)?
            .run()
        };
        servers.add("dashboard public", public);
        let ingest_guard = web::Data::new(Guard {
            token: ingest_token.as_deref().map(SharedToken::new),
            also: None,
            challenge: "Bearer realm=\"crowd ingest\"",
            open_paths: &[],
        });
        let ingest_metrics = web::Data::new(metrics);
        let ingest = {
            let state = state.clone();
            HttpServer::new(move || {
                App::new()
                    .wrap(from_fn(check_token))
                    .configure(json_extractor_errors)
                    .app_data(ingest_guard.clone())
                    .app_data(ingest_metrics.clone())
                    .app_data(state.clone())
                    .route("/ws/ingest", web::get().to(ingest::ingest))
                    .route(
                        "/internal/v1/answers/{event}",
                        web::get().to(internal::answer),
                    )
                    .route(
                        "/internal/v1/cameras/{camera}/zones",
                        web::get().to(internal::zones),
                    )
                    .default_service(web::to(not_found))
            })
            .shutdown_timeout(SHUTDOWN_GRACE_SECS)
            .disable_signals()
            .listen(ingest_listener)?
            .run()
        };
        servers.add("dashboard ingest", ingest);
        ready.store(true, Ordering::Release);
        tracing::info!(port, ingest_port, metrics_port, "dashboard listening");
        Ok(Self {
            port,
            ingest_port,
            metrics_port,
            servers,
            background,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn ingest_port(&self) -> u16 {
        self.ingest_port
    }

    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    pub fn handle(&self) -> ServersHandle {
        self.servers.handle()
    }

    /// Serves until stopped. Every acknowledged event was committed durably when it arrived, so
    /// there is nothing left to flush; the store is closed when the state is dropped.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            servers,
            background,
            state,
            ..
        } = self;
        let result = servers.run().await;
        drop(background);
        // The connections' tasks (browsers, image-predict) end with the worker threads, a moment
        // after the server itself; wait for their handles on the state, so that the store is
        // closed when this returns and a new dashboard can open its file at once.
        let state = state.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(SHUTDOWN_GRACE_SECS);
        while Arc::strong_count(&state) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        result
    }
}

fn ops_server(
    listener: TcpListener,
    registry: web::Data<Registry>,
    ready: web::Data<AtomicBool>,
) -> anyhow::Result<actix_web::dev::Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(registry.clone())
            .app_data(ready.clone())
            .route("/metrics", web::get().to(http::metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .shutdown_timeout(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

/// Opens the store. The embedded store fails at once on a real problem (it waits for a lock
/// held by a previous dashboard, see `EmbeddedStore::open`); Redis is retried with back-off for
/// as long as it takes, unless the dashboard is stopped meanwhile.
async fn open_store(config: &DashboardConfig, servers: &Servers) -> anyhow::Result<Store> {
    let stop = servers.handle();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u32;
    loop {
        match Store::open(config).await {
            Ok(store) => {
                if attempts > 0 {
                    tracing::info!(attempts, "the store is reachable now");
                }
                return Ok(store);
            }
            Err(error) if matches!(config.store, StoreChoice::Redis(_)) => {
                attempts += 1;
                if attempts == 1 || attempts.is_multiple_of(10) {
                    tracing::warn!(%error, attempts, "cannot reach Redis; retrying (not ready meanwhile)");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop_signal() => {
                        stop.stop(false).await;
                        anyhow::bail!("stopped before the store was reachable: {error}");
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(error) => return Err(error).context("opening the store"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_webhook_url;

    #[test]
    fn webhook_urls_must_be_plain_http_with_a_host() {
        assert!(check_webhook_url("http://alert-relay.monitoring:8080/hook").is_ok());
        let https = check_webhook_url("https://hooks.example.com/x").unwrap_err();
        assert!(
            https.contains("https webhooks are not supported"),
            "{https}"
        );
        assert!(check_webhook_url("ftp://x/y").is_err());
        assert!(check_webhook_url("not a url").is_err());
    }
}

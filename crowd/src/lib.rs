//! The crowd launcher's library: runs the three services in one process, wired together over
//! real HTTP and WebSocket on loopback, exactly as they talk across a cluster: the same
//! listeners, the same ingest token, the same camera keys.

pub mod bench;
pub mod eval;
pub mod keys;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use common::server::ServersHandle;
use dashboard::DashboardConfig;
use image_predict::PredictConfig;
use image_upload::UploadConfig;
use tokio::task::JoinHandle;

/// One running service: its ports, a handle to stop it, and the task serving it.
pub struct Running {
    /// The public (or API) listener.
    pub port: u16,
    /// The ops listener (`/metrics`, `/healthz`, `/readyz`).
    pub metrics_port: u16,
    /// The dashboard's ingest listener (0 for the other services).
    pub ingest_port: u16,
    handle: ServersHandle,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops the service gracefully and waits until it has finished.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.handle.stop(true).await;
        self.task.await.context("service task")?
    }

    /// Stops the service abruptly, as when its pod is killed: open connections are dropped
    /// without a goodbye and nothing in flight is finished.
    pub async fn kill(self) {
        self.handle.stop(false).await;
        self.task.abort();
        let _ = self.task.await;
    }
}

/// How the stack's services prove who they are to each other and who may upload.
#[derive(Debug, Clone)]
pub struct StackAuth {
    /// Local demos only: no camera keys, no ingest token.
    pub no_auth: bool,
    /// The camera key file image-upload and image-predict check.
    pub keys_file: Option<PathBuf>,
    /// The ingest token; `None`: a random one, made for this run (both ends are in this process).
    pub ingest_token: Option<String>,
}

/// The whole stack on one machine.
pub struct Stack {
    pub dashboard: Running,
    pub predict: Running,
    pub upload: Running,
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

impl Stack {
    /// Starts dashboard, then image-predict pointed at its ingest listener, then image-upload
    /// pointed at image-predict. The upstream URLs in the configs are replaced by the real ports,
    /// and the token and key file of `auth` are given to every service that needs them.
    pub async fn start(
        mut dashboard: DashboardConfig,
        mut predict: PredictConfig,
        mut upload: UploadConfig,
        auth: StackAuth,
    ) -> anyhow::Result<Self> {
        let token = if auth.no_auth {
            None
        } else {
            Some(
                auth.ingest_token
                    .clone()
                    .unwrap_or_else(|| common::auth::random_secret(32)),
            )
        };
        dashboard.ingest_token = token.clone();
        dashboard.no_auth = auth.no_auth;
        let dashboard = start_dashboard(dashboard).await?;
        predict.dashboard_ingest_url =
            format!("ws://127.0.0.1:{}/ws/ingest", dashboard.ingest_port);
        predict.dashboard_internal_url = format!("http://127.0.0.1:{}", dashboard.ingest_port);
        predict.ingest_token = token;
        predict.api_keys_file = auth.keys_file.clone();
        predict.no_auth = auth.no_auth;
        let predict = start_predict(predict).await?;
        upload.predict_url = format!("http://127.0.0.1:{}", predict.port);
        upload.api_keys_file = auth.keys_file;
        upload.no_auth = auth.no_auth;
        let upload = start_upload(upload).await?;
        Ok(Self {
            dashboard,
            predict,
            upload,
        })
    }

    /// Serves until any service stops (Ctrl-C or SIGTERM stops them all), then stops the rest.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Stack {
            dashboard,
            predict,
            upload,
        } = self;
        let handles = [
            upload.handle.clone(),
            predict.handle.clone(),
            dashboard.handle.clone(),
        ];
        let first = tokio::select! {
            r = upload.task => ("image-upload", r),
            r = predict.task => ("image-predict", r),
            r = dashboard.task => ("dashboard", r),
        };
        // Front to back, so that each service's last requests reach the next one.
        for handle in handles {
            handle.stop(true).await;
        }
        let (name, result) = first;
        result
            .with_context(|| format!("{name} task"))?
            .with_context(|| format!("{name} failed"))
    }
}

pub async fn start_dashboard(config: DashboardConfig) -> anyhow::Result<Running> {
    let app = dashboard::Application::build(config).await?;
    Ok(Running {
        port: app.port(),
        metrics_port: app.metrics_port(),
        ingest_port: app.ingest_port(),
        handle: app.handle(),
        task: tokio::spawn(app.run_until_stopped()),
    })
}

pub async fn start_predict(config: PredictConfig) -> anyhow::Result<Running> {
    let app = image_predict::Application::build(config).await?;
    Ok(Running {
        port: app.port(),
        metrics_port: app.metrics_port(),
        ingest_port: 0,
        handle: app.handle(),
        task: tokio::spawn(app.run_until_stopped()),
    })
}

pub async fn start_upload(config: UploadConfig) -> anyhow::Result<Running> {
    let app = image_upload::Application::build(config).await?;
    Ok(Running {
        port: app.port(),
        metrics_port: app.metrics_port(),
        ingest_port: 0,
        handle: app.handle(),
        task: tokio::spawn(app.run_until_stopped()),
    })
}

//! The crowd launcher's library: runs the three services in one process, wired together over
//! real HTTP and WebSocket on loopback, exactly as they talk across a cluster.

pub mod bench;
pub mod eval;

use std::net::{Ipv4Addr, SocketAddr};

use actix_web::dev::ServerHandle;
use anyhow::Context;
use dashboard::DashboardConfig;
use image_predict::PredictConfig;
use image_upload::UploadConfig;
use tokio::task::JoinHandle;

/// One running service: its port, a handle to stop it, and the task serving it.
pub struct Running {
    pub port: u16,
    handle: ServerHandle,
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
    /// Starts dashboard, then image-predict pointed at it, then image-upload pointed at
    /// image-predict. The upstream URLs in the configs are replaced by the real ports.
    pub async fn start(
        dashboard: DashboardConfig,
        mut predict: PredictConfig,
        mut upload: UploadConfig,
    ) -> anyhow::Result<Self> {
        let dashboard = start_dashboard(dashboard).await?;
        predict.dashboard_ingest_url = format!("ws://127.0.0.1:{}/ws/ingest", dashboard.port);
        let predict = start_predict(predict).await?;
        upload.predict_url = format!("http://127.0.0.1:{}", predict.port);
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
        handle: app.handle(),
        task: tokio::spawn(app.run_until_stopped()),
    })
}

pub async fn start_predict(config: PredictConfig) -> anyhow::Result<Running> {
    let app = image_predict::Application::build(config).await?;
    Ok(Running {
        port: app.port(),
        handle: app.handle(),
        task: tokio::spawn(app.run_until_stopped()),
    })
}

pub async fn start_upload(config: UploadConfig) -> anyhow::Result<Running> {
    let app = image_upload::Application::build(config).await?;
    Ok(Running {
        port: app.port(),
        handle: app.handle(),
        task: tokio::spawn(app.run_until_stopped()),
    })
}

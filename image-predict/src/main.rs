use clap::Parser;
use common::telemetry::{self, LogFormat};
use image_predict::{Application, PredictConfig};

/// image-predict: counts people in photos with an ONNX model and pushes counts to the dashboard.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    config: PredictConfig,
    /// Log format: text for people, json for collectors. Filter with RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Local demos only: no camera keys and no ingest token (a warning is logged).
    #[arg(long, env = "CROWD_NO_AUTH")]
    no_auth: bool,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    cli.config.no_auth = cli.no_auth;
    image_predict::allocator::keep_freed_memory();
    telemetry::init(cli.log_format);
    Application::build(cli.config)
        .await?
        .run_until_stopped()
        .await
}

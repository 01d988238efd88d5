use clap::Parser;
use common::telemetry::{self, LogFormat};
use image_upload::{Application, UploadConfig};

/// image-upload: validates photos and forwards them to image-predict for counting.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    config: UploadConfig,
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
    telemetry::init(cli.log_format);
    Application::build(cli.config)
        .await?
        .run_until_stopped()
        .await
}

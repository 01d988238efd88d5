use clap::{Args, Parser, Subcommand};
use common::telemetry::{self, LogFormat};
use crowd::Stack;
use dashboard::DashboardConfig;
use image_predict::PredictConfig;
use image_upload::UploadConfig;

/// crowd: count the people in photos and watch it live.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format: text for people, json for collectors. Filter with RUST_LOG.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole stack on this machine: upload on :8003, predict on :8002, dashboard on :4400.
    /// The services talk to each other over loopback; --predict-url and --dashboard-ingest-url
    /// are set from the ports actually bound.
    Up(Box<UpArgs>),
    /// Count every photo of DIR/truth.csv through image-predict's counting path and compare with
    /// the truth: one row per photo, then error and time per photo for sparse and dense scenes.
    Eval(crowd::eval::EvalArgs),
    /// Time a photo's stages for three photo sizes, the models alone beside onnxruntime, a
    /// 12-megapixel photo over HTTP, and photos per second through the whole HTTP path at
    /// saturation (run from the repository root).
    Bench(crowd::bench::BenchArgs),
}

#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    dashboard: DashboardConfig,
    #[command(flatten)]
    predict: PredictConfig,
    #[command(flatten)]
    upload: UploadConfig,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    image_predict::allocator::keep_freed_memory();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Up(args) => {
            let stack = Stack::start(args.dashboard, args.predict, args.upload).await?;
            tracing::info!(
                upload = format!("http://127.0.0.1:{}/", stack.upload.port),
                dashboard = format!("http://127.0.0.1:{}/", stack.dashboard.port),
                predict = format!("http://127.0.0.1:{}/", stack.predict.port),
                "crowd is up: open the upload page and the dashboard; Ctrl-C stops"
            );
            stack.run_until_stopped().await
        }
        Command::Bench(args) => crowd::bench::run(&args).await,
        Command::Eval(args) => {
            let report = crowd::eval::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                crowd::eval::print_table(&report);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Three services' settings share one command line in `crowd up`: clap's own consistency
    /// checks (no two arguments with one id or one flag) and a parse of the defaults.
    #[test]
    fn every_subcommand_parses() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["crowd", "up"]).expect("`crowd up` needs no flags");
        let Command::Up(args) = cli.command else {
            panic!("`crowd up` parsed as another subcommand");
        };
        assert_eq!(args.dashboard.listen.port(), 4400);
        assert_eq!(args.predict.listen.port(), 8002);
        assert_eq!(args.upload.listen.port(), 8003);
        assert!(Cli::try_parse_from(["crowd", "eval", "photos", "--json"]).is_ok());
    }
}

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use common::telemetry::{self, LogFormat};
use crowd::{Stack, StackAuth};
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
    /// Run the whole stack on this machine: upload on :8003, dashboard on :4400 (ingest :4401),
    /// predict on :8002, ops listeners on :9003/:9400/:9002. The services talk to each other over
    /// loopback with a token made for the run; cameras upload with a key from the key file
    /// (made, with one key printed once, on first start). Only the upload listener is reached
    /// from other machines (and the dashboard's, with VIEWER_TOKEN) unless an address is given.
    Up(Box<UpArgs>),
    /// Count every photo of DIR/truth.csv through image-predict's counting path and compare with
    /// the truth: one row per photo, then error and time per photo for each density band.
    Eval(crowd::eval::EvalArgs),
    /// Time a photo's stages for three photo sizes, the models alone beside onnxruntime, a
    /// 12-megapixel photo over HTTP, and photos per second through the whole HTTP path at
    /// saturation (run from the repository root).
    Bench(crowd::bench::BenchArgs),
    /// Camera keys.
    #[command(subcommand)]
    Keys(crowd::keys::KeysCommand),
    /// Run one service alone, as its own binary (dashboard, image-predict, image-upload) does,
    /// configured by the same flags and environment.
    #[command(subcommand)]
    Run(RunCommand),
}

#[derive(Subcommand)]
enum RunCommand {
    /// The dashboard.
    Dashboard {
        #[command(flatten)]
        config: Box<DashboardConfig>,
        /// Local demos only: no ingest token.
        #[arg(long, env = "CROWD_NO_AUTH")]
        no_auth: bool,
    },
    /// image-predict.
    Predict {
        #[command(flatten)]
        config: Box<PredictConfig>,
        /// Local demos only: no camera keys and no ingest token.
        #[arg(long, env = "CROWD_NO_AUTH")]
        no_auth: bool,
    },
    /// image-upload.
    Upload {
        #[command(flatten)]
        config: Box<UploadConfig>,
        /// Local demos only: no camera keys.
        #[arg(long, env = "CROWD_NO_AUTH")]
        no_auth: bool,
    },
}

#[derive(Args)]
struct UpArgs {
    /// The camera key file (made with one key for every camera when missing).
    #[arg(
        long = "keys-file",
        env = "API_KEYS_FILE",
        default_value = "data/api-keys"
    )]
    keys_file: PathBuf,
    /// Local demos only: no camera keys and no ingest token (a warning is logged).
    #[arg(long, env = "CROWD_NO_AUTH")]
    no_auth: bool,
    #[command(flatten)]
    dashboard: DashboardConfig,
    #[command(flatten)]
    predict: PredictConfig,
    #[command(flatten)]
    upload: UploadConfig,
}

impl UpArgs {
    /// The services' default addresses are all interfaces, as a pod needs. On one machine
    /// `crowd up` moves every listener whose address was not given (flag or environment) to
    /// loopback, except image-upload's public one (cameras on the network upload there, with a
    /// key) and the dashboard's public one when viewers must prove who they are
    /// (VIEWER_TOKEN): ops, ingest and image-predict's API are for this machine's services.
    fn keep_private_listeners_on_loopback(&mut self, given: impl Fn(&str) -> bool) {
        let viewers_checked = self.dashboard.viewer_token.is_some();
        let private = [
            (
                "dashboard_addr",
                &mut self.dashboard.listen,
                !viewers_checked,
            ),
            ("ingest_listen", &mut self.dashboard.ingest_listen, true),
            (
                "dashboard_metrics_addr",
                &mut self.dashboard.metrics_listen,
                true,
            ),
            ("predict_addr", &mut self.predict.listen, true),
            (
                "predict_metrics_addr",
                &mut self.predict.metrics_listen,
                true,
            ),
            ("upload_metrics_addr", &mut self.upload.metrics_listen, true),
        ];
        for (id, listen, move_it) in private {
            if move_it && !given(id) {
                listen.set_ip(Ipv4Addr::LOCALHOST.into());
            }
        }
    }
}

/// Whether the argument `id` of `matches` was given on the command line or in the environment.
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The command line (and environment) as `crowd` runs it: `crowd up`'s listeners whose address
/// was not given are moved to loopback here.
fn parse(matches: &ArgMatches) -> Result<Cli, clap::Error> {
    let mut cli = Cli::from_arg_matches(matches)?;
    if let (Command::Up(args), Some(up)) = (&mut cli.command, matches.subcommand_matches("up")) {
        args.keep_private_listeners_on_loopback(|id| given(up, id));
    }
    Ok(cli)
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = parse(&Cli::command().get_matches()).unwrap_or_else(|error| error.exit());
    image_predict::allocator::keep_freed_memory();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Up(args) => {
            let args = *args;
            if !args.no_auth
                && let Some(key) = crowd::keys::first_key(&args.keys_file)?
            {
                // Shown once: the key file keeps only its hash.
                println!(
                    "\nA camera key for every camera was made (its hash is in {}). It is shown once and stored nowhere:\n\n  export CROWD_KEY={}\n\nUploads send it as `Authorization: Bearer $CROWD_KEY`; the upload page has a field for it.\nMore keys: crowd keys new --cameras 'gate-*' --append {}\n",
                    args.keys_file.display(),
                    key.key,
                    args.keys_file.display()
                );
            }
            let auth = StackAuth {
                no_auth: args.no_auth,
                keys_file: Some(args.keys_file.clone()),
                ingest_token: args.dashboard.ingest_token.clone(),
            };
            let stack = Stack::start(args.dashboard, args.predict, args.upload, auth).await?;
            tracing::info!(
                upload = format!("http://127.0.0.1:{}/", stack.upload.port),
                dashboard = format!("http://127.0.0.1:{}/", stack.dashboard.port),
                predict = format!("http://127.0.0.1:{}/", stack.predict.port),
                keys = %args.keys_file.display(),
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
        Command::Keys(command) => crowd::keys::run(&command),
        Command::Run(RunCommand::Dashboard {
            mut config,
            no_auth,
        }) => {
            config.no_auth = no_auth;
            dashboard::Application::build(*config)
                .await?
                .run_until_stopped()
                .await
        }
        Command::Run(RunCommand::Predict {
            mut config,
            no_auth,
        }) => {
            config.no_auth = no_auth;
            image_predict::Application::build(*config)
                .await?
                .run_until_stopped()
                .await
        }
        Command::Run(RunCommand::Upload {
            mut config,
            no_auth,
        }) => {
            config.no_auth = no_auth;
            image_upload::Application::build(*config)
                .await?
                .run_until_stopped()
                .await
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
        assert_eq!(args.dashboard.ingest_listen.port(), 4401);
        assert_eq!(args.dashboard.metrics_listen.port(), 9400);
        assert_eq!(args.predict.listen.port(), 8002);
        assert_eq!(args.predict.metrics_listen.port(), 9002);
        assert_eq!(args.upload.listen.port(), 8003);
        assert_eq!(args.upload.metrics_listen.port(), 9003);
        assert!(!args.no_auth);
        assert!(Cli::try_parse_from(["crowd", "eval", "photos", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["crowd", "keys", "new", "--cameras", "gate-*"]).is_ok());
        assert!(Cli::try_parse_from(["crowd", "up", "--no-auth"]).is_ok());
    }

    fn up_addresses(arguments: &[&str]) -> [std::net::SocketAddr; 7] {
        let matches = Cli::command()
            .try_get_matches_from(arguments)
            .expect("the arguments parse");
        let Command::Up(args) = parse(&matches).unwrap().command else {
            panic!("`crowd up` parsed as another subcommand");
        };
        [
            args.upload.listen,
            args.dashboard.listen,
            args.dashboard.ingest_listen,
            args.dashboard.metrics_listen,
            args.predict.listen,
            args.predict.metrics_listen,
            args.upload.metrics_listen,
        ]
    }

    /// Only image-upload's public listener is reachable from other machines by default; the
    /// dashboard's too when viewers need a token; an address given is kept as given.
    #[test]
    fn up_keeps_private_listeners_on_loopback_unless_told_otherwise() {
        let [upload, dashboard, private @ ..] = up_addresses(&["crowd", "up"]);
        assert!(upload.ip().is_unspecified(), "{upload}");
        assert!(dashboard.ip().is_loopback(), "{dashboard}");
        for listen in private {
            assert!(listen.ip().is_loopback(), "{listen}");
        }
        let [_, dashboard, ..] =
            up_addresses(&["crowd", "up", "--viewer-token", "a-viewer-token-0123456789"]);
        assert!(dashboard.ip().is_unspecified(), "{dashboard}");
        let [_, _, _, _, predict, ..] =
            up_addresses(&["crowd", "up", "--predict-addr", "0.0.0.0:8102"]);
        assert_eq!(predict, "0.0.0.0:8102".parse().unwrap());
    }
}

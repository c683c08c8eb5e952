//! `cargo run -p local`: the Bellhop hub on your machine. Starts the API Gateway emulation and the HTTP API on
//! 127.0.0.1, or (`token` subcommand) mints a development JWT signed with the configured secret.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use local::{HarnessOptions, PusherChoice, StoreChoice};
use secrecy::ExposeSecret;
use shared::auth::{Claims, mint_token};
use shared::config::{Config, DEV_INTERNAL_API_KEY, DEV_JWT_SECRET};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(name = "local", about = "Bellhop's local harness: API Gateway WebSocket emulation + HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "BELLHOP_PORT", default_value_t = 3001)]
    port: u16,
    /// API Gateway stage: the WebSocket URL is ws://127.0.0.1:PORT/STAGE.
    #[arg(long, env = "BELLHOP_STAGE", default_value = "local")]
    stage: String,
    #[arg(long, env = "BELLHOP_STORE", value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// Where the SQLite database lives.
    #[arg(long, env = "BELLHOP_DATA_DIR", default_value = ".data")]
    data_dir: PathBuf,
    /// DynamoDB endpoint for `--store dynamodb`, e.g. DynamoDB Local.
    #[arg(long, env = "DYNAMODB_ENDPOINT", default_value = "http://127.0.0.1:8000")]
    dynamodb_endpoint: String,
    #[arg(long, env = "TABLE_NAME", default_value = "bellhop")]
    table: String,
    /// How handlers reach sockets: directly, or through the AWS SDK against this harness's @connections.
    #[arg(long, env = "BELLHOP_PUSHER", value_enum, default_value_t = PusherKind::InProcess)]
    pusher: PusherKind,
    /// Close connections idle (no data frames either way) for this long. AWS: 600.
    #[arg(long, env = "BELLHOP_IDLE_TIMEOUT_SECS", default_value_t = 600)]
    idle_timeout_secs: u64,
    /// Close every connection after this long. AWS: 7200.
    #[arg(long, env = "BELLHOP_MAX_LIFETIME_SECS", default_value_t = 7200)]
    max_lifetime_secs: u64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a development JWT signed with JWT_SECRET (or the public dev secret).
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// A room the token grants (repeatable), e.g. `--room booking:1`.
        #[arg(long = "room")]
        rooms: Vec<String>,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum StoreKind {
    Sqlite,
    Memory,
    Dynamodb,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum PusherKind {
    InProcess,
    Sdk,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env_with_dev_defaults().context("read configuration")?;

    if let Some(Command::Token { sub, role, name, email, rooms, ttl_secs }) = cli.command {
        let claims = Claims {
            role,
            name,
            email,
            rooms: (!rooms.is_empty()).then_some(rooms),
            ..Claims::for_subject(sub, ttl_secs, &config.jwt)
        };
        println!("{}", mint_token(&config.jwt.secret, &claims).context("sign token")?);
        return Ok(());
    }

    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| "local=debug,shared=debug,tower_http=info".into()),
        )
        .init();

    let dev_secrets = config.jwt.secret.expose_secret() == DEV_JWT_SECRET
        || config.internal_api_key.expose_secret() == DEV_INTERNAL_API_KEY;
    let (store, data_note) = match cli.store {
        StoreKind::Sqlite => {
            let path = cli.data_dir.join("bellhop.db");
            let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
            (StoreChoice::Sqlite(path), format!("SQLite at {}", shown.display()))
        }
        StoreKind::Memory => (StoreChoice::Memory, "in memory (lost on exit)".to_owned()),
        StoreKind::Dynamodb => (
            StoreChoice::Dynamo { endpoint: cli.dynamodb_endpoint.clone(), table: cli.table.clone() },
            format!("DynamoDB table {} at {}", cli.table, cli.dynamodb_endpoint),
        ),
    };
    let mut options = HarnessOptions::new(config);
    options.port = cli.port;
    options.stage = cli.stage;
    options.store = store;
    options.pusher = match cli.pusher {
        PusherKind::InProcess => PusherChoice::InProcess,
        PusherKind::Sdk => PusherChoice::Sdk,
    };
    options.idle_timeout = Duration::from_secs(cli.idle_timeout_secs.max(1));
    options.max_lifetime = Duration::from_secs(cli.max_lifetime_secs.max(1));

    let harness = local::spawn(options).await?;
    if dev_secrets {
        eprintln!();
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!! WARNING: using the PUBLIC development JWT_SECRET / INTERNAL_API_KEY.                      !!");
        eprintln!("!! Anyone can mint tokens for this hub. Set JWT_SECRET and INTERNAL_API_KEY for real use.     !!");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!();
    }
    println!("Bellhop local harness");
    println!("  WebSocket:       {}?token=<jwt>", harness.ws_url);
    println!("  HTTP API:        {}", harness.http_url);
    println!("  @connections:    {}/@connections/{{connectionId}}", harness.management_url);
    println!("  Data:            {data_note}");
    println!("  Dev token:       cargo run -p local -- token --sub u1 --role customer");
    println!("Press Ctrl-C to stop.");

    tokio::signal::ctrl_c().await.context("wait for ctrl-c")?;
    tracing::info!("shutting down: closing connections");
    harness.shutdown().await;
    Ok(())
}

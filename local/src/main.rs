//! `cargo run -p local`: the Bellhop hub on your machine. Starts the API Gateway emulation and the HTTP API on
//! 127.0.0.1, or (`token` subcommand) mints a development JWT signed with the configured secret.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use local::{HarnessOptions, PusherChoice, StoreChoice};
use shared::auth::{Claims, mint_token};
use shared::config::{Config, HarnessPusher, HarnessStore};
use tracing_subscriber::EnvFilter;

/// Every setting defaults to what the configuration (`shared::config`, read from the environment) says; a flag
/// overrides it for this run. No environment variable is read here.
#[derive(Parser, Debug)]
#[command(name = "local", about = "Bellhop's local harness: API Gateway WebSocket emulation + HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Port on 127.0.0.1 (0 picks a free one) [BELLHOP_PORT, default 3001].
    #[arg(long)]
    port: Option<u16>,
    /// API Gateway stage: the WebSocket URL is ws://127.0.0.1:PORT/STAGE [BELLHOP_STAGE, default local].
    #[arg(long)]
    stage: Option<String>,
    /// Where data lives [BELLHOP_STORE, default sqlite].
    #[arg(long, value_enum)]
    store: Option<StoreKind>,
    /// Where the SQLite database lives [BELLHOP_DATA_DIR, default .data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// DynamoDB endpoint for `--store dynamodb` [DYNAMODB_ENDPOINT, default http://127.0.0.1:8000].
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// DynamoDB table for `--store dynamodb` [TABLE_NAME, default bellhop].
    #[arg(long)]
    table: Option<String>,
    /// How handlers reach sockets: directly, or through the AWS SDK against this harness's @connections
    /// [BELLHOP_PUSHER, default in-process].
    #[arg(long, value_enum)]
    pusher: Option<PusherKind>,
    /// Close connections idle (no data frames either way) for this long [BELLHOP_IDLE_TIMEOUT_SECS, AWS: 600].
    #[arg(long)]
    idle_timeout_secs: Option<u64>,
    /// Close every connection after this long [BELLHOP_MAX_LIFETIME_SECS, AWS: 7200].
    #[arg(long)]
    max_lifetime_secs: Option<u64>,
    /// Turn off the stage's route throttling, e.g. for load tests [BELLHOP_NO_THROTTLE].
    #[arg(long)]
    no_throttle: bool,
    /// Run one connection's messages one after another instead of concurrently as AWS does; acks then come back
    /// in request order [BELLHOP_STRICT_ORDER].
    #[arg(long)]
    strict_order: bool,
    /// Delay every @connections answer by this many milliseconds [BELLHOP_MANAGEMENT_DELAY_MS, default 0].
    #[arg(long)]
    management_delay_ms: Option<u64>,
    /// Threads for sockets and handlers: 1 is a single event loop, more a work-stealing pool
    /// [BELLHOP_WORKER_THREADS, default 1].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    worker_threads: Option<u16>,
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env_with_dev_defaults().context("read configuration")?;
    // One thread by default. The harness's work is a fan-out: one message becomes a write on each member's socket,
    // each done by that connection's task. On a work-stealing pool every one of those wake-ups may unpark another
    // worker thread (a futex call and a context switch per delivery, measured with `strace -c` under
    // `bench/profile.sh`), which cost more CPU than the second thread gave back: on the benchmark's broadcast
    // (bench/RESULTS.md) a single event loop spent about 20 % less CPU per delivery at 100 and 400 msg/s, had a lower
    // p99, and sustained the same highest rate. The SQLite store runs its statements on the loop itself, each an
    // indexed lookup or a short write of microseconds; only its checkpoints, which copy and sync files, have a thread
    // of their own.
    let worker_threads = cli.worker_threads.unwrap_or(config.harness.worker_threads);
    let runtime = match worker_threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(usize::from(n)).enable_all().build(),
    }
    .context("start the async runtime")?;
    runtime.block_on(run(cli, config, worker_threads))
}

async fn run(cli: Cli, config: Config, worker_threads: u16) -> anyhow::Result<()> {
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

    let settings = &config.harness;
    let dev_secrets = settings.dev_secrets;
    let store_kind = cli.store.unwrap_or(match settings.store {
        HarnessStore::Sqlite => StoreKind::Sqlite,
        HarnessStore::Memory => StoreKind::Memory,
        HarnessStore::Dynamodb => StoreKind::Dynamodb,
    });
    let (store, data_note) = match store_kind {
        StoreKind::Sqlite => {
            let path = cli.data_dir.clone().unwrap_or_else(|| settings.data_dir.clone()).join("bellhop.db");
            let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
            (StoreChoice::Sqlite(path), format!("SQLite at {}", shown.display()))
        }
        StoreKind::Memory => (StoreChoice::Memory, "in memory (lost on exit)".to_owned()),
        StoreKind::Dynamodb => {
            let endpoint = cli
                .dynamodb_endpoint
                .clone()
                .or_else(|| config.dynamodb_endpoint.clone())
                .unwrap_or_else(|| "http://127.0.0.1:8000".to_owned());
            let table = cli.table.clone().unwrap_or_else(|| config.table_name.clone());
            let note = format!("DynamoDB table {table} at {endpoint}");
            (StoreChoice::Dynamo { endpoint, table }, note)
        }
    };
    let pusher = match cli.pusher {
        Some(PusherKind::InProcess) => PusherChoice::InProcess,
        Some(PusherKind::Sdk) => PusherChoice::Sdk,
        None => match settings.pusher {
            HarnessPusher::InProcess => PusherChoice::InProcess,
            HarnessPusher::Sdk => PusherChoice::Sdk,
        },
    };
    let port = cli.port.unwrap_or(settings.port);
    let stage = cli.stage.clone().unwrap_or_else(|| settings.stage.clone());
    let idle_timeout = Duration::from_secs(cli.idle_timeout_secs.unwrap_or(settings.idle_timeout_seconds).max(1));
    let max_lifetime = Duration::from_secs(cli.max_lifetime_secs.unwrap_or(settings.max_lifetime_seconds).max(1));

    let mut options = HarnessOptions::new(config);
    options.port = port;
    options.stage = stage;
    options.store = store;
    options.pusher = pusher;
    options.idle_timeout = idle_timeout;
    options.max_lifetime = max_lifetime;
    if cli.no_throttle {
        options.throttling = None;
    }
    options.strict_order |= cli.strict_order;
    if let Some(delay) = cli.management_delay_ms {
        options.management_delay = Duration::from_millis(delay);
    }
    let throttling_note = match options.throttling {
        Some(t) => format!("{} burst, {}/s per route (--no-throttle to turn off)", t.burst, t.rate),
        None => "off".to_owned(),
    };
    let order_note = if options.strict_order { "one at a time (--strict-order)" } else { "concurrent, as on AWS" };

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
    println!("  Throttling:      {throttling_note}");
    println!("  Messages:        {order_note}");
    println!("  Threads:         {worker_threads} (--worker-threads)");
    if dev_secrets {
        println!("  Browsers:        local origins only (public dev secrets in use)");
    }
    println!("  Dev token:       cargo run -p local -- token --sub u1 --role customer");
    println!("Press Ctrl-C to stop.");

    tokio::signal::ctrl_c().await.context("wait for ctrl-c")?;
    tracing::info!("shutting down: closing connections");
    harness.shutdown().await;
    Ok(())
}

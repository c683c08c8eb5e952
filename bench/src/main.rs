//! `bench`: Bellhop's harness and a Socket.IO 4 peer, measured side by side by one load generator over loopback.
//!
//! For each repetition and each server it starts a fresh server process, opens the connection fleet (one room per
//! `room-size` connections), and measures in turn: idle memory per connection, internal emits to a room, then room
//! broadcast at rising fixed rates: every `--fixed-rates` step, then on until p99 passes the limit or a delivery
//! goes missing. It prints one table of medians with their spread over repetitions, and Bellhop / Socket.IO
//! ratios. It exits with status 1 when any delivery was lost, duplicated or out of order, or any request failed,
//! so the quick mode works as a test.
//!
//! The `floor` subcommand is one of the servers under test, started by the run itself (`bench::floor`).
//!
//! Three subcommands measure the cloud path instead: `cloud-fanout` (`bench::cloud`), one emit fanned out through
//! the AWS SDK's Management API client against the harness's delayed `@connections`; `cloud-durations`
//! (`bench::durations`), each function's wall time per action with DynamoDB and the Management API answering at a
//! stated latency; and `init` (`bench::cloud`), each function binary's init time under the local Lambda Runtime API
//! against a hello-world `lambda_runtime` binary.
//!
//! `bench/run.sh` builds what a full run needs and calls this binary; `bench/README.md` explains each figure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use bench::cloud::{self, FanoutPlan, InitPlan};
use bench::durations::{self, DurationsPlan, HandlerSpans};
use bench::load::Fleet;
use bench::report::{self, RepResult, StepResult};
use bench::servers::{Programs, Server, ServerKind, ThreadSample, sample_pid, threads};

#[derive(Parser, Debug)]
#[command(name = "bench", about = "Bellhop vs Socket.IO over loopback: memory, broadcast cost and latency, emits")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// A small, fast run (200 connections, one repetition, two short steps) that checks every delivery: the mode
    /// `scripts/test.sh` runs. Explicit options still override it.
    #[arg(long)]
    quick: bool,
    /// Connections per server [full: 5000, quick: 200].
    #[arg(long)]
    connections: Option<usize>,
    /// Connections per room [full: 50, quick: 20].
    #[arg(long)]
    room_size: Option<usize>,
    /// Repetitions; every figure is the median over them [full: 3, quick: 1].
    #[arg(long)]
    reps: Option<usize>,
    /// Seconds of sending per rate step [full: 6, quick: 2].
    #[arg(long)]
    step_secs: Option<u64>,
    /// Message rates (message:send per second, all rooms together) to step through
    /// [full: 100,200,300,400,600,800,1000,1200,1600, quick: 50,100].
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u32>>,
    /// Internal emits per repetition [full: 40, quick: 5].
    #[arg(long)]
    emits: Option<u32>,
    /// Rates that are always measured, whatever the latency of the steps before them: the figures compared at
    /// fixed load. They are added to --rates [full: 100,400, quick: 50,100].
    #[arg(long, value_delimiter = ',')]
    fixed_rates: Option<Vec<u32>>,
    /// Past the fixed rates, the ramp stops after the first step whose p99 passes this many milliseconds.
    #[arg(long, default_value_t = 100.0)]
    p99_limit_ms: f64,
    /// Servers to compare, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "bellhop-sqlite,bellhop-memory,floor,socketio")]
    servers: Vec<ServerKind>,
    /// The harness binary.
    #[arg(long, default_value = "target/release/local")]
    bellhop: PathBuf,
    /// An extra argument for the harness (repeatable).
    #[arg(long = "bellhop-arg", allow_hyphen_values = true)]
    bellhop_args: Vec<String>,
    /// The Socket.IO peer's folder, with its node_modules installed (`npm ci`).
    #[arg(long, default_value = "bench/socketio")]
    socketio: PathBuf,
    /// The Node.js executable.
    #[arg(long, default_value = "node")]
    node: PathBuf,
    /// RUST_LOG for the harness; `warn` for measurements, `debug` to see each request.
    #[arg(long, default_value = "warn")]
    bellhop_log: String,
    /// Keep each server's scratch folder (its log and SQLite file) and print where it is.
    #[arg(long)]
    keep_scratch: bool,
    /// After each step, print the server's CPU time and context switches per message for each thread name.
    #[arg(long)]
    threads: bool,
}

/// The cloud path, measured on its own (`bench/README.md`, "The cloud path"), and the floor server.
#[derive(Subcommand, Debug)]
enum Command {
    /// One emit to a room of connections through the AWS SDK's Management API client, against the harness's
    /// `@connections` answering after a delay: wall time against its floor, and CPU time.
    CloudFanout(FanoutArgs),
    /// Each function's wall time per action (connect, join, send, emit, leave, disconnect), the harness on DynamoDB
    /// Local with every request padded to a stated latency and `@connections` answering after a delay.
    CloudDurations(DurationsArgs),
    /// Each function binary's init time under the local Lambda Runtime API, against a hello-world binary.
    Init(InitArgs),
    /// Serves the floor, the least a server on the harness's stack can do for the workload (`bench/README.md`).
    /// The run starts it itself.
    Floor {
        /// Loopback port; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

#[derive(clap::Args, Debug)]
struct FanoutArgs {
    /// Fewer connections and emits, for the quick mode [connections 100, emits 3].
    #[arg(long)]
    quick: bool,
    /// Connections in the room [full: 1000, quick: 100].
    #[arg(long)]
    connections: Option<usize>,
    /// Milliseconds the harness's `@connections` waits before each answer (its `--management-delay-ms`).
    #[arg(long, default_value_t = 25)]
    delay_ms: u64,
    /// The harness's worker threads (its `--worker-threads`). Two by default: on one, the emulator's own work per
    /// request (the SigV4 check, the WebSocket write) queues behind the other requests of a wave, a wait the real
    /// Management API does not add, and the handler's wall time would measure the emulator.
    #[arg(long, default_value_t = 2)]
    harness_threads: u16,
    /// Measured emits, after one warm-up emit [full: 10, quick: 3].
    #[arg(long)]
    emits: Option<u32>,
    /// Posts in flight at most (`FANOUT_CONCURRENCY`) [the configuration's default].
    #[arg(long)]
    concurrency: Option<usize>,
    /// The harness binary.
    #[arg(long, default_value = "target/release/local")]
    bellhop: PathBuf,
    /// RUST_LOG for the harness.
    #[arg(long, default_value = "warn")]
    bellhop_log: String,
    /// Keep the harness's scratch folder (its log and SQLite file) and print where it is.
    #[arg(long)]
    keep_scratch: bool,
}

#[derive(clap::Args, Debug)]
struct DurationsArgs {
    /// Fewer rounds, for the quick mode [rounds 3].
    #[arg(long)]
    quick: bool,
    /// DynamoDB Local's endpoint.
    #[arg(long, env = "DYNAMODB_ENDPOINT")]
    endpoint: String,
    /// The least time each DynamoDB request takes, in ms: DynamoDB Local's answer is held back until then.
    #[arg(long, default_value_t = 10)]
    dynamodb_latency_ms: u64,
    /// Milliseconds the harness's `@connections` waits before each answer.
    #[arg(long, default_value_t = 25)]
    delay_ms: u64,
    /// Connections in the conversation room, the measured one included.
    #[arg(long, default_value_t = 10)]
    room_size: usize,
    /// Measured rounds, after one warm-up round [full: 20, quick: 3].
    #[arg(long)]
    rounds: Option<u32>,
}

#[derive(clap::Args, Debug)]
struct InitArgs {
    /// Fewer starts, for the quick mode [3].
    #[arg(long)]
    quick: bool,
    /// The directory of the function binaries and the hello-world one (`<dir>/<package>`)
    /// [BELLHOP_FUNCTION_BIN_DIR, else target/release].
    #[arg(long, env = "BELLHOP_FUNCTION_BIN_DIR", default_value = "target/release")]
    bin_dir: PathBuf,
    /// Starts per binary; each figure is their median [full: 20, quick: 3].
    #[arg(long)]
    starts: Option<usize>,
    /// The hello-world baseline's package.
    #[arg(long, default_value = "hello-lambda")]
    baseline: String,
}

/// The resolved settings of one run.
#[derive(Debug)]
struct Plan {
    connections: usize,
    room_size: usize,
    reps: usize,
    step: Duration,
    rates: Vec<u32>,
    /// The highest rate that is always measured.
    fixed_up_to: u32,
    emits: u32,
    p99_limit_ms: f64,
}

impl Args {
    fn plan(&self) -> anyhow::Result<Plan> {
        let quick = self.quick;
        let mut plan = Plan {
            connections: self.connections.unwrap_or(if quick { 200 } else { 5000 }),
            room_size: self.room_size.unwrap_or(if quick { 20 } else { 50 }),
            reps: self.reps.unwrap_or(if quick { 1 } else { 3 }),
            step: Duration::from_secs(self.step_secs.unwrap_or(if quick { 2 } else { 6 })),
            rates: Vec::new(),
            fixed_up_to: 0,
            emits: self.emits.unwrap_or(if quick { 5 } else { 40 }),
            p99_limit_ms: self.p99_limit_ms,
        };
        let fixed = self.fixed_rates.clone().unwrap_or_else(|| if quick { vec![50, 100] } else { vec![100, 400] });
        let mut rates = self.rates.clone().unwrap_or_else(|| {
            if quick { vec![50, 100] } else { vec![100, 200, 300, 400, 600, 800, 1000, 1200, 1600] }
        });
        rates.extend(&fixed);
        rates.sort_unstable();
        rates.dedup();
        plan.fixed_up_to = fixed.iter().copied().max().unwrap_or(0);
        plan.rates = rates;
        anyhow::ensure!(plan.room_size >= 2, "--room-size must be at least 2 (a broadcast needs a receiver)");
        anyhow::ensure!(plan.connections >= plan.room_size, "--connections must be at least --room-size");
        anyhow::ensure!(plan.reps >= 1, "--reps must be at least 1");
        anyhow::ensure!(!plan.step.is_zero(), "--step-secs must be at least 1");
        anyhow::ensure!(!plan.rates.is_empty() && plan.rates.iter().all(|&rate| rate > 0), "--rates must be positive");
        anyhow::ensure!(!self.servers.is_empty(), "--servers must name at least one server");
        Ok(plan)
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let outcome = match args.command.take() {
        Some(Command::Floor { port }) => floor(port),
        command => generator_runtime().and_then(|runtime| match command {
            Some(Command::CloudFanout(fanout)) => runtime.block_on(cloud_fanout(fanout)),
            Some(Command::CloudDurations(args)) => runtime.block_on(cloud_durations(args)),
            Some(Command::Init(init)) => runtime.block_on(init_times(init)),
            _ => runtime.block_on(run(args)),
        }),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Two worker threads: on a small machine the generator must leave the server its share of the cores, and its own
/// CPU share is reported so a run where it became the bottleneck can be seen.
fn generator_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("start the runtime")
}

/// The `floor` subcommand, on one current-thread runtime like the harness's default. It serves until killed.
fn floor(port: u16) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the runtime")?;
    runtime.block_on(bench::floor::serve(port))?;
    Ok(true)
}

/// Runs every repetition and prints the table; `Ok(false)` when a check failed.
async fn run(args: Args) -> anyhow::Result<bool> {
    let plan = args.plan()?;
    let bellhop_servers = [ServerKind::BellhopSqlite, ServerKind::BellhopMemory];
    if args.servers.iter().any(|kind| bellhop_servers.contains(kind)) {
        anyhow::ensure!(args.bellhop.exists(), "no harness binary at {} (build it first)", args.bellhop.display());
    }
    if args.servers.contains(&ServerKind::Socketio) {
        let modules = args.socketio.join("node_modules/socket.io");
        anyhow::ensure!(modules.exists(), "no {} (run `npm ci` in {})", modules.display(), args.socketio.display());
    }
    let programs = Programs {
        bellhop: args.bellhop.clone(),
        bellhop_args: args.bellhop_args.clone(),
        socketio: args.socketio.clone(),
        node: args.node.clone(),
        floor: std::env::current_exe().context("find the bench binary, which serves the floor")?,
        bellhop_log: args.bellhop_log.clone(),
        keep_scratch: args.keep_scratch,
    };
    eprintln!(
        "bench: {} connections in rooms of {}, {} repetition(s), {} s per step, rates {:?}; load average at start: {}",
        plan.connections,
        plan.room_size,
        plan.reps,
        plan.step.as_secs(),
        plan.rates,
        load_average()
    );

    let mut results: Vec<(ServerKind, Vec<RepResult>)> = args.servers.iter().map(|&kind| (kind, Vec::new())).collect();
    for rep in 0..plan.reps {
        for (kind, reps) in &mut results {
            let run_id = format!("{}-{rep}", std::process::id());
            eprintln!("bench: repetition {} of {}: {}", rep + 1, plan.reps, kind.label());
            let result = repetition(*kind, &programs, &plan, &run_id, args.threads)
                .await
                .with_context(|| format!("{} repetition {}", kind.label(), rep + 1))?;
            reps.push(result);
        }
    }
    eprintln!("bench: load average at the end: {}", load_average());
    print!("{}", report::table(&plan.rates, plan.p99_limit_ms, &results));
    let failures = report::failures(&results);
    for failure in &failures {
        eprintln!("bench: FAILED: {failure}");
    }
    Ok(failures.is_empty())
}

/// The `cloud-fanout` subcommand: a fresh harness on SQLite with `@connections` delayed, its room filled, and the
/// emits run by the handler in this process. `Ok(false)` when a delivery went missing or arrived twice.
async fn cloud_fanout(args: FanoutArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.bellhop.exists(), "no harness binary at {} (build it first)", args.bellhop.display());
    let default_concurrency = shared::config::Config::from_lookup(|_| None, true)
        .context("the configuration's defaults")?
        .limits
        .fanout_concurrency;
    let plan = FanoutPlan {
        connections: args.connections.unwrap_or(if args.quick { 100 } else { 1000 }),
        delay: Duration::from_millis(args.delay_ms),
        emits: args.emits.unwrap_or(if args.quick { 3 } else { 10 }),
        concurrency: args.concurrency.unwrap_or(default_concurrency),
        harness_threads: args.harness_threads,
    };
    anyhow::ensure!(plan.connections >= 1 && plan.emits >= 1, "--connections and --emits must be at least 1");
    anyhow::ensure!(plan.concurrency >= 1, "--concurrency must be at least 1");
    let programs = Programs {
        bellhop: args.bellhop.clone(),
        bellhop_args: vec![
            "--management-delay-ms".to_owned(),
            args.delay_ms.to_string(),
            "--worker-threads".to_owned(),
            args.harness_threads.to_string(),
        ],
        socketio: PathBuf::new(),
        node: PathBuf::new(),
        floor: PathBuf::new(),
        bellhop_log: args.bellhop_log.clone(),
        keep_scratch: args.keep_scratch,
    };
    eprintln!(
        "bench: cloud fan-out: {} connections, @connections delay {} ms on {} harness threads, {} posts in flight, {} \
         emits; load average: {}",
        plan.connections,
        args.delay_ms,
        plan.harness_threads,
        plan.concurrency,
        plan.emits,
        load_average()
    );
    let run_id = std::process::id().to_string();
    let server = Server::start(ServerKind::BellhopSqlite, &programs, &run_id).await?;
    let scratch = server.scratch().to_path_buf();
    let outcome = cloud::fanout(&server, &scratch, &run_id, &plan).await;
    server.stop().await;
    let result = outcome?;
    eprintln!("bench: load average at the end: {}", load_average());
    print!("{}", result.table());
    for failure in &result.handler_failures {
        eprintln!("bench: FAILED: the handler did not deliver to every recipient: {failure}");
    }
    if result.missing + result.duplicated > 0 {
        eprintln!("bench: FAILED: {} deliveries missing, {} duplicated", result.missing, result.duplicated);
    }
    Ok(result.clean())
}

/// The `cloud-durations` subcommand: the handlers' spans are timed by a tracing layer installed for this run only,
/// which sees nothing but `shared::handlers`.
async fn cloud_durations(args: DurationsArgs) -> anyhow::Result<bool> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let plan = DurationsPlan {
        endpoint: args.endpoint.clone(),
        dynamodb_latency: Duration::from_millis(args.dynamodb_latency_ms),
        management_delay: Duration::from_millis(args.delay_ms),
        room_size: args.room_size,
        rounds: args.rounds.unwrap_or(if args.quick { 3 } else { 20 }).max(1),
    };
    let spans = HandlerSpans::default();
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::Targets::new().with_target("shared::handlers", tracing::Level::INFO))
        .with(spans.clone())
        .try_init()
        .context("install the span timer")?;
    eprintln!(
        "bench: cloud durations: DynamoDB at {} padded to {} ms, @connections delay {} ms, a room of {}, {} rounds; \
         load average: {}",
        plan.endpoint,
        args.dynamodb_latency_ms,
        args.delay_ms,
        plan.room_size,
        plan.rounds,
        load_average()
    );
    let result = durations::measure(&plan, &spans).await?;
    eprintln!("bench: load average at the end: {}", load_average());
    print!("{}", result.table());
    Ok(true)
}

/// The `init` subcommand: every function binary and the hello-world baseline, started under the local Runtime API.
async fn init_times(args: InitArgs) -> anyhow::Result<bool> {
    let plan = InitPlan {
        bin_dir: args.bin_dir.clone(),
        starts: args.starts.unwrap_or(if args.quick { 3 } else { 20 }).max(1),
        baseline: args.baseline.clone(),
    };
    eprintln!(
        "bench: init: {} starts of each binary in {}; load average: {}",
        plan.starts,
        plan.bin_dir.display(),
        load_average()
    );
    let results = cloud::init(&plan).await?;
    eprintln!("bench: load average at the end: {}", load_average());
    print!("{}", cloud::init_table(&results, plan.starts, &plan.bin_dir));
    Ok(true)
}

/// One server, one repetition: a fresh process, a fresh fleet, every workload.
async fn repetition(
    kind: ServerKind,
    programs: &Programs,
    plan: &Plan,
    run_id: &str,
    thread_breakdown: bool,
) -> anyhow::Result<RepResult> {
    let server = Server::start(kind, programs, run_id).await?;
    let outcome = measure(&server, plan, run_id, thread_breakdown).await;
    server.stop().await;
    outcome
}

async fn measure(server: &Server, plan: &Plan, run_id: &str, thread_breakdown: bool) -> anyhow::Result<RepResult> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.sample()?;
    let mut fleet = Fleet::build(
        server.kind.protocol(),
        &server.ws_base,
        &server.http_base,
        run_id,
        plan.connections,
        plan.room_size,
    )
    .await?;
    // Let the joins' side effects (presence, join notices, a Node GC) settle before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = server.sample()?;
    let idle_bytes_per_conn = idle.rss_bytes.saturating_sub(before.rss_bytes) as f64 / fleet.connections() as f64;

    let emit = fleet.emits(plan.emits).await?;

    let mut steps = Vec::new();
    for &rate in &plan.rates {
        let threads_before = if thread_breakdown { threads(server.pid) } else { Default::default() };
        let server_before = server.sample()?;
        let generator_before = sample_pid(std::process::id())?;
        let started = std::time::Instant::now();
        let step = fleet.broadcast_step(rate, plan.step).await;
        let wall = started.elapsed();
        let server_after = server.sample()?;
        let generator_after = sample_pid(std::process::id())?;
        if thread_breakdown {
            print_threads(&threads_before, &threads(server.pid), step.sent);
        }
        let result = StepResult::new(step, wall, &server_before, &server_after, &generator_before, &generator_after);
        // A step that loses anything ends the ramp at once; one that is only slow ends it past the fixed rates.
        let stop = !result.clean() || (rate >= plan.fixed_up_to && result.p99_ms() > plan.p99_limit_ms);
        eprintln!("bench:   {}", result.summary());
        steps.push(result);
        if stop {
            break;
        }
    }
    Ok(RepResult { idle_bytes_per_conn, emit, steps, closed: fleet.closed(), p99_limit_ms: plan.p99_limit_ms })
}

/// Prints, per thread name, the CPU time and context switches the step cost per message sent. Threads that
/// started during the step count from zero; threads that ended during it are missing.
fn print_threads(before: &BTreeMap<u32, ThreadSample>, after: &BTreeMap<u32, ThreadSample>, messages: u64) {
    let mut by_name: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    for (tid, thread) in after {
        let (cpu, switches) = match before.get(tid) {
            Some(earlier) => (
                thread.cpu_us.saturating_sub(earlier.cpu_us),
                thread.context_switches.saturating_sub(earlier.context_switches),
            ),
            None => (thread.cpu_us, thread.context_switches),
        };
        let entry = by_name.entry(thread.name.as_str()).or_default();
        entry.0 += 1;
        entry.1 += cpu;
        entry.2 += switches;
    }
    let messages = messages.max(1) as f64;
    for (name, (count, cpu, switches)) in by_name {
        eprintln!(
            "bench:     thread {name:<16} ×{count:<3} {:>8.1} CPU-µs/msg {:>6.1} ctx switches/msg",
            cpu as f64 / messages,
            switches as f64 / messages
        );
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

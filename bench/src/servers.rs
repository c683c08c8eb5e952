//! Starting and stopping the servers under test, and reading what they cost from `/proc`.
//!
//! Each repetition starts a fresh process on a free loopback port (port 0, read back from the line the server
//! prints), with fixed bench secrets and logging at `warn`, so neither server pays for formatting log lines the
//! other does not write. CPU time comes from `/proc/<pid>/stat` (user + system, every thread, exited ones
//! included); resident memory from `/proc/<pid>/status`; context switches from every live thread's `status`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::proto::Protocol;

/// The HS256 secret both servers check tokens against during a run.
pub const JWT_SECRET: &str = "bellhop-bench-jwt-secret-not-for-production";
/// The internal API key both servers accept during a run.
pub const API_KEY: &str = "bellhop-bench-internal-api-key";

/// Linux's `USER_HZ`: the unit of `utime` and `stime` in `/proc/<pid>/stat`, 100 on every architecture Linux
/// exposes to user space.
const TICKS_PER_SECOND: u64 = 100;

/// The servers a run can compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerKind {
    /// The harness on its default store, SQLite in a file.
    BellhopSqlite,
    /// The harness with `--store memory`.
    BellhopMemory,
    /// The floor (`bench floor`): the least a server on the harness's stack can do for this workload.
    Floor,
    /// The Socket.IO 4 peer in `bench/socketio`.
    Socketio,
}

impl ServerKind {
    /// The label used in tables.
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::BellhopSqlite => "bellhop-sqlite",
            ServerKind::BellhopMemory => "bellhop-memory",
            ServerKind::Floor => "floor",
            ServerKind::Socketio => "socketio",
        }
    }

    /// The protocol the load generator speaks to this server.
    pub fn protocol(self) -> Protocol {
        match self {
            ServerKind::Socketio => Protocol::SocketIo,
            ServerKind::BellhopSqlite | ServerKind::BellhopMemory | ServerKind::Floor => Protocol::Bellhop,
        }
    }
}

/// Where the servers' programs are.
#[derive(Clone, Debug)]
pub struct Programs {
    /// The harness binary (`target/release/local` for a full run).
    pub bellhop: PathBuf,
    /// Extra arguments for the harness, e.g. the switch that turns its connection-rate throttling off.
    pub bellhop_args: Vec<String>,
    /// The folder holding the Socket.IO peer's `server.js` and its installed `node_modules`.
    pub socketio: PathBuf,
    /// The Node.js executable.
    pub node: PathBuf,
    /// The program whose `floor` subcommand serves the floor: the `bench` binary itself.
    pub floor: PathBuf,
    /// `RUST_LOG` for the harness: `warn` for measurements, `debug` to see each request.
    pub bellhop_log: String,
    /// Keep each server's scratch folder (its log, its SQLite file) instead of removing it.
    pub keep_scratch: bool,
}

/// Why a server could not be started or read.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{server} exited before saying where it listens (its log: {log})")]
    NoAddress { server: &'static str, log: String },
    #[error("{server} did not say where it listens within {seconds} s (its log: {log})")]
    Timeout { server: &'static str, seconds: u64, log: String },
    #[error("read /proc for pid {pid}")]
    Proc {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected /proc/{pid}/stat format")]
    ProcFormat { pid: u32 },
    #[error("create the scratch folder {path}")]
    Scratch {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A server started for one repetition. Dropping it kills the process and removes its scratch folder.
pub struct Server {
    pub kind: ServerKind,
    pub pid: u32,
    /// `ws://127.0.0.1:PORT/STAGE` for Bellhop, `ws://127.0.0.1:PORT` for Socket.IO.
    pub ws_base: String,
    /// `http://127.0.0.1:PORT`, where `/internal/emit` is.
    pub http_base: String,
    child: Child,
    scratch: PathBuf,
    keep_scratch: bool,
}

/// CPU time and context switches of one thread, keyed by thread id in [`threads`].
#[derive(Clone, Debug, Default)]
pub struct ThreadSample {
    /// The thread's name (`comm`), e.g. `tokio-runtime-w` or `sqlite-checkpoi`.
    pub name: String,
    pub cpu_us: u64,
    pub context_switches: u64,
}

/// Every live thread of `pid` with its counters. A thread that exits between listing and reading is left out.
pub fn threads(pid: u32) -> std::collections::BTreeMap<u32, ThreadSample> {
    let mut threads = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let (Ok(stat), Ok(status)) =
            (std::fs::read_to_string(task.path().join("stat")), std::fs::read_to_string(task.path().join("status")))
        else {
            continue;
        };
        let Some((cpu_us, name)) = parse_stat(&stat) else {
            continue;
        };
        let context_switches = status_field(&status, "voluntary_ctxt_switches:").unwrap_or(0)
            + status_field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
        threads.insert(tid, ThreadSample { name, cpu_us, context_switches });
    }
    threads
}

/// User + system time in µs and the command name from a `stat` file.
fn parse_stat(stat: &str) -> Option<(u64, String)> {
    // The command name in field 2 may hold spaces and parentheses: the fields that follow start after the last ')'.
    let (head, after_name) = stat.rsplit_once(')')?;
    let name = head.split_once('(').map(|(_, name)| name.to_owned()).unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name, index 0 is field 3 (state); utime is field 14 and stime field 15.
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok());
    Some(((ticks(11)? + ticks(12)?) * (1_000_000 / TICKS_PER_SECOND), name))
}

/// A reading of a server's counters at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// User + system CPU time of the whole process, in µs (10 ms resolution).
    pub cpu_us: u64,
    /// Voluntary + involuntary context switches of the threads alive now.
    pub context_switches: u64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

impl Server {
    /// Starts `kind` on a free loopback port and waits until it says where it listens.
    pub async fn start(kind: ServerKind, programs: &Programs, run_id: &str) -> Result<Server, ServerError> {
        let scratch = std::env::temp_dir().join(format!("bellhop-bench-{run_id}-{}", kind.label()));
        std::fs::create_dir_all(&scratch)
            .map_err(|source| ServerError::Scratch { path: scratch.display().to_string(), source })?;
        let log_path = scratch.join("server.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|source| ServerError::Scratch { path: log_path.display().to_string(), source })?;

        let mut command = match kind {
            ServerKind::BellhopSqlite | ServerKind::BellhopMemory => {
                let mut command = Command::new(&programs.bellhop);
                let store = if kind == ServerKind::BellhopSqlite { "sqlite" } else { "memory" };
                // A load test: the emulated stage throttling (API Gateway's route limits) would refuse the fleet's
                // connects and sends long before the hub itself is the limit.
                command.args(["--port", "0", "--no-throttle", "--store", store, "--data-dir"]).arg(&scratch);
                command.args(&programs.bellhop_args);
                command
            }
            ServerKind::Floor => {
                // This very binary: the floor is its `floor` subcommand.
                let mut command = Command::new(&programs.floor);
                command.args(["floor", "--port", "0"]);
                command
            }
            ServerKind::Socketio => {
                let mut command = Command::new(&programs.node);
                command.arg(programs.socketio.join("server.js")).env("PORT", "0");
                command
            }
        };
        command
            .env("JWT_SECRET", JWT_SECRET)
            .env("INTERNAL_API_KEY", API_KEY)
            .env("RUST_LOG", &programs.bellhop_log)
            .env("NODE_ENV", "production")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let program = match kind {
            ServerKind::Socketio => programs.node.display().to_string(),
            ServerKind::Floor => programs.floor.display().to_string(),
            ServerKind::BellhopSqlite | ServerKind::BellhopMemory => programs.bellhop.display().to_string(),
        };
        let mut child = command.spawn().map_err(|source| ServerError::Spawn { program, source })?;
        let pid = child.id().unwrap_or_default();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| ServerError::NoAddress { server: kind.label(), log: log_path.display().to_string() })?;

        let wait = Duration::from_secs(30);
        let found =
            tokio::time::timeout(wait, read_address(kind, stdout, scratch.join("stdout.log"))).await.map_err(|_| {
                ServerError::Timeout {
                    server: kind.label(),
                    seconds: wait.as_secs(),
                    log: log_path.display().to_string(),
                }
            })?;
        let Some((ws_base, http_base)) = found else {
            return Err(ServerError::NoAddress { server: kind.label(), log: log_path.display().to_string() });
        };
        Ok(Server { kind, pid, ws_base, http_base, child, scratch, keep_scratch: programs.keep_scratch })
    }

    /// Reads the server's counters now.
    pub fn sample(&self) -> Result<Sample, ServerError> {
        sample_pid(self.pid)
    }

    /// The server's scratch folder: the harness's `--data-dir`, where its SQLite file `bellhop.db` is.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// Stops the server and removes its scratch folder (unless asked to keep it).
    pub async fn stop(mut self) {
        // SIGKILL: what the server does on a graceful stop (closing thousands of sockets) is not measured, and a
        // repetition must not wait for it.
        let _ = self.child.kill().await;
        if self.keep_scratch {
            eprintln!("bench: {} left its log and data in {}", self.kind.label(), self.scratch.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }
}

/// Reads the counters of any process, the load generator's own included.
pub fn sample_pid(pid: u32) -> Result<Sample, ServerError> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|source| ServerError::Proc { pid, source });

    let stat = read(&proc_dir.join("stat"))?;
    let (cpu_us, _) = parse_stat(&stat).ok_or(ServerError::ProcFormat { pid })?;

    let status = read(&proc_dir.join("status"))?;
    let rss_kb = status_field(&status, "VmRSS:").unwrap_or(0);

    let mut context_switches = 0;
    if let Ok(tasks) = std::fs::read_dir(proc_dir.join("task")) {
        for task in tasks.flatten() {
            // A thread can exit between listing and reading; its switches are then simply not counted.
            if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
                context_switches += status_field(&status, "voluntary_ctxt_switches:").unwrap_or(0)
                    + status_field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
            }
        }
    }
    Ok(Sample { cpu_us, context_switches, rss_bytes: rss_kb * 1024 })
}

fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// Reads the server's stdout until the line that says where it listens, then keeps copying it to `rest` in the
/// background so the server never blocks on a full pipe. The harness logs to stdout.
async fn read_address(
    kind: ServerKind,
    stdout: tokio::process::ChildStdout,
    rest: PathBuf,
) -> Option<(String, String)> {
    let mut lines = BufReader::new(stdout).lines();
    let mut found = None;
    while let Ok(Some(line)) = lines.next_line().await {
        found = match kind {
            // "  WebSocket:       ws://127.0.0.1:PORT/STAGE?token=<jwt>"
            ServerKind::BellhopSqlite | ServerKind::BellhopMemory | ServerKind::Floor => line
                .trim()
                .strip_prefix("WebSocket:")
                .map(|rest| rest.trim().trim_end_matches("?token=<jwt>").to_owned()),
            // "listening PORT"
            ServerKind::Socketio => line.trim().strip_prefix("listening ").map(|port| format!("ws://127.0.0.1:{port}")),
        };
        if found.is_some() {
            break;
        }
    }
    tokio::spawn(async move {
        let mut copy = tokio::fs::File::create(&rest).await.ok();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(file) = copy.as_mut()
                && file.write_all(format!("{line}\n").as_bytes()).await.is_err()
            {
                copy = None;
            }
        }
    });
    let ws_base = found?;
    let authority = ws_base.strip_prefix("ws://")?.split('/').next()?.to_owned();
    Some((ws_base, format!("http://{authority}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_counters_are_readable() {
        let sample = sample_pid(std::process::id()).expect("read /proc/self");
        assert!(sample.rss_bytes > 0);
        assert!(sample.context_switches > 0);
    }

    #[test]
    fn own_threads_are_listed_with_names() {
        let threads = threads(std::process::id());
        assert!(!threads.is_empty());
        assert!(threads.values().all(|thread| !thread.name.is_empty()));
    }

    #[test]
    fn stat_names_may_hold_parentheses() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 7 3 0 0";
        assert_eq!(parse_stat(stat), Some((100_000, "a (b) c".to_owned())));
    }

    #[test]
    fn status_fields_are_read_by_name() {
        let status = "Name:\tx\nVmRSS:\t  1234 kB\nvoluntary_ctxt_switches:\t7\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(1234));
        assert_eq!(status_field(status, "voluntary_ctxt_switches:"), Some(7));
        assert_eq!(status_field(status, "nonvoluntary_ctxt_switches:"), None);
    }
}

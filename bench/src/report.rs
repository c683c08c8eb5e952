//! Figures per step and per repetition, and the table that sums a run up: the median over repetitions with the
//! spread (min–max) in brackets, and each Bellhop column's ratio to Socket.IO's.

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::{EmitReport, StepReport};
use crate::servers::{Sample, ServerKind};

/// One broadcast step with what it cost the server and the generator.
#[derive(Debug)]
pub struct StepResult {
    pub step: StepReport,
    /// Server CPU time over the step, drain included.
    pub server_cpu_us: u64,
    pub server_context_switches: u64,
    pub generator_cpu_us: u64,
    pub wall: Duration,
}

/// Everything measured on one server in one repetition.
#[derive(Debug)]
pub struct RepResult {
    pub idle_bytes_per_conn: f64,
    pub emit: EmitReport,
    pub steps: Vec<StepResult>,
    /// Connections the server closed during the repetition.
    pub closed: usize,
    pub p99_limit_ms: f64,
}

impl StepResult {
    pub fn new(
        step: StepReport,
        wall: Duration,
        server_before: &Sample,
        server_after: &Sample,
        generator_before: &Sample,
        generator_after: &Sample,
    ) -> StepResult {
        StepResult {
            step,
            server_cpu_us: server_after.cpu_us.saturating_sub(server_before.cpu_us),
            server_context_switches: server_after.context_switches.saturating_sub(server_before.context_switches),
            generator_cpu_us: generator_after.cpu_us.saturating_sub(generator_before.cpu_us),
            wall,
        }
    }

    /// No delivery lost, duplicated or out of order, and every send acknowledged with `ok`.
    pub fn clean(&self) -> bool {
        let step = &self.step;
        step.lost == 0 && step.extra == 0 && step.violations == 0 && step.acks_failed == 0
    }

    pub fn p50_ms(&self) -> f64 {
        percentile(&self.step.latencies_us, 0.50) / 1000.0
    }

    pub fn p99_ms(&self) -> f64 {
        percentile(&self.step.latencies_us, 0.99) / 1000.0
    }

    pub fn cpu_us_per_delivery(&self) -> f64 {
        self.server_cpu_us as f64 / self.step.delivered.max(1) as f64
    }

    pub fn deliveries_per_cpu_second(&self) -> f64 {
        self.step.delivered as f64 / (self.server_cpu_us.max(1) as f64 / 1e6)
    }

    /// Deliveries per second of sending.
    pub fn delivery_rate(&self) -> f64 {
        self.step.delivered as f64 / self.step.send_secs.max(1e-3)
    }

    pub fn context_switches_per_message(&self) -> f64 {
        self.server_context_switches as f64 / self.step.sent.max(1) as f64
    }

    /// The generator's CPU use over the step, as a share of one core.
    pub fn generator_cores(&self) -> f64 {
        self.generator_cpu_us as f64 / 1e6 / self.wall.as_secs_f64().max(1e-3)
    }

    /// The server's CPU use over the step, as a share of one core.
    pub fn server_cores(&self) -> f64 {
        self.server_cpu_us as f64 / 1e6 / self.wall.as_secs_f64().max(1e-3)
    }

    pub fn summary(&self) -> String {
        let step = &self.step;
        format!(
            "{} msg/s: sent {} delivered {}/{} (lost {}, extra {}, out of order {}, failed acks {}), p50 {:.2} ms, \
             p99 {:.2} ms, {:.1} CPU-µs/delivery, {:.1} ctx switches/msg, server {:.2} cores, generator {:.2} cores",
            step.rate,
            step.sent,
            step.delivered,
            step.expected,
            step.lost,
            step.extra,
            step.violations,
            step.acks_failed,
            self.p50_ms(),
            self.p99_ms(),
            self.cpu_us_per_delivery(),
            self.context_switches_per_message(),
            self.server_cores(),
            self.generator_cores(),
        )
    }
}

impl RepResult {
    /// The highest delivery rate of a step that was clean and kept p99 within the limit. A lower step may have
    /// passed the limit: on a shared machine one noisy step must not hide the rate the server sustains.
    pub fn max_sustained(&self) -> f64 {
        self.steps
            .iter()
            .filter(|step| step.clean() && step.p99_ms() <= self.p99_limit_ms)
            .map(StepResult::delivery_rate)
            .fold(0.0, f64::max)
    }

    fn step(&self, rate: u32) -> Option<&StepResult> {
        self.steps.iter().find(|step| step.step.rate == rate)
    }
}

/// The value at quantile `q` of sorted samples, by nearest rank; 0 for no samples.
pub fn percentile<T: Copy + Into<f64>>(sorted: &[T], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].into()
}

/// The median of values, and their min and max.
fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 { sorted[middle] } else { (sorted[middle - 1] + sorted[middle]) / 2.0 };
    Some((median, sorted[0], sorted[sorted.len() - 1]))
}

/// Everything that makes the run fail as a test.
pub fn failures(results: &[(ServerKind, Vec<RepResult>)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (kind, reps) in results {
        for (index, rep) in reps.iter().enumerate() {
            let at = format!("{} repetition {}", kind.label(), index + 1);
            if rep.closed > 0 {
                failures.push(format!("{at}: the server closed {} connections", rep.closed));
            }
            if rep.emit.incomplete > 0 {
                failures.push(format!("{at}: {} internal emits did not reach every member", rep.emit.incomplete));
            }
            for step in &rep.steps {
                if !step.clean() {
                    let detail = step.step.first_violation.as_deref().unwrap_or("counts differ");
                    failures.push(format!("{at}: {} ({detail})", step.summary()));
                }
            }
        }
    }
    failures
}

/// The run's table, in Markdown.
pub fn table(rates: &[u32], p99_limit_ms: f64, results: &[(ServerKind, Vec<RepResult>)]) -> String {
    let socketio = results.iter().position(|(kind, _)| *kind == ServerKind::Socketio);
    let mut out = String::new();
    let _ = write!(out, "\n| metric |");
    for (kind, _) in results {
        let _ = write!(out, " {} |", kind.label());
    }
    if let Some(sio) = socketio {
        for (kind, _) in results.iter().filter(|(kind, _)| *kind != results[sio].0) {
            let _ = write!(out, " {} / socketio |", kind.label());
        }
    }
    let _ = writeln!(out);
    let columns = results.len() + socketio.map_or(0, |_| results.len() - 1);
    let _ = writeln!(out, "|---|{}", "---|".repeat(columns));

    let mut row = |name: String, decimals: usize, value: &dyn Fn(&RepResult) -> Option<f64>| {
        let mut medians = Vec::new();
        let _ = write!(out, "| {name} |");
        for (_, reps) in results {
            let values: Vec<f64> = reps.iter().filter_map(value).collect();
            match spread(&values) {
                Some((median, min, max)) if values.len() > 1 => {
                    let _ = write!(out, " {median:.decimals$} [{min:.decimals$}–{max:.decimals$}] |");
                    medians.push(Some(median));
                }
                Some((median, _, _)) => {
                    let _ = write!(out, " {median:.decimals$} |");
                    medians.push(Some(median));
                }
                None => {
                    let _ = write!(out, " – |");
                    medians.push(None);
                }
            }
        }
        if let Some(sio) = socketio {
            for (_, median) in medians.iter().enumerate().filter(|(index, _)| *index != sio) {
                match (median, medians[sio]) {
                    (Some(ours), Some(theirs)) if theirs > 0.0 => {
                        let _ = write!(out, " {:.2}× |", ours / theirs);
                    }
                    _ => {
                        let _ = write!(out, " – |");
                    }
                }
            }
        }
        let _ = writeln!(out);
    };

    row("idle memory per connection (KB, RSS delta)".into(), 1, &|rep| Some(rep.idle_bytes_per_conn / 1024.0));
    row("internal emit, POST → last member p50 (ms)".into(), 2, &|rep| {
        (!rep.emit.to_last_us.is_empty()).then(|| percentile(&rep.emit.to_last_us, 0.50) / 1000.0)
    });
    row("internal emit, POST → last member p99 (ms)".into(), 2, &|rep| {
        (!rep.emit.to_last_us.is_empty()).then(|| percentile(&rep.emit.to_last_us, 0.99) / 1000.0)
    });
    // Rates no server reached would be rows of dashes.
    let reached = |rate: u32| results.iter().any(|(_, reps)| reps.iter().any(|rep| rep.step(rate).is_some()));
    for &rate in rates.iter().filter(|&&rate| reached(rate)) {
        row(format!("{rate} msg/s: server CPU-µs per delivery"), 1, &|rep| {
            rep.step(rate).map(StepResult::cpu_us_per_delivery)
        });
        row(format!("{rate} msg/s: deliveries per server CPU-second"), 0, &|rep| {
            rep.step(rate).map(StepResult::deliveries_per_cpu_second)
        });
        row(format!("{rate} msg/s: latency p50 (ms)"), 2, &|rep| rep.step(rate).map(StepResult::p50_ms));
        row(format!("{rate} msg/s: latency p99 (ms)"), 2, &|rep| rep.step(rate).map(StepResult::p99_ms));
        row(format!("{rate} msg/s: server context switches per message"), 1, &|rep| {
            rep.step(rate).map(StepResult::context_switches_per_message)
        });
        row(format!("{rate} msg/s: server CPU (cores)"), 2, &|rep| rep.step(rate).map(StepResult::server_cores));
        row(format!("{rate} msg/s: load generator CPU (cores)"), 2, &|rep| {
            rep.step(rate).map(StepResult::generator_cores)
        });
    }
    row(format!("highest sustained deliveries/s (p99 ≤ {p99_limit_ms} ms, none lost)"), 0, &|rep| {
        Some(rep.max_sustained())
    });
    row("deliveries lost + duplicated + out of order (all steps)".into(), 0, &|rep| {
        Some(rep.steps.iter().map(|step| (step.step.lost + step.step.extra + step.step.violations) as f64).sum())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.50), 50.0);
        assert_eq!(percentile(&samples, 0.99), 99.0);
        assert_eq!(percentile(&[7], 0.99), 7.0);
        assert_eq!(percentile::<u32>(&[], 0.5), 0.0);
    }

    #[test]
    fn spread_is_median_min_and_max() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(spread(&[4.0, 1.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(spread(&[]), None);
    }
}

//! The results, the targets they are held to, and their Markdown and JSON forms.

use std::fmt;

use serde::Serialize;

use crate::load::Load;

/// Proxied throughput must be at least this fraction of plain Deno's.
const MIN_THROUGHPUT_RATIO: f64 = 0.5;
/// Homebase may add at most this much to the median latency at one connection.
const MAX_ADDED_P50_MS: f64 = 0.1;
/// `homebase dev` must be listening this soon after it starts.
const MAX_LISTENING_MS: f64 = 50.0;
/// A cold function's first answer may come at most this much later than plain Deno's.
const MAX_COLD_PENALTY_MS: f64 = 15.0;

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub load: Vec<Comparison>,
    pub startup: Startup,
    pub targets: Vec<Check>,
}

/// What the numbers depend on besides Homebase.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub deno: String,
    pub tool: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub duration_s: u64,
    pub warmup_s: u64,
    pub startup_runs: u64,
}

/// Plain Deno and Homebase under the same load.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub connections: u32,
    pub deno: Load,
    pub homebase: Load,
    /// Homebase's requests per second over plain Deno's.
    pub throughput_ratio: f64,
    pub added_p50_ms: f64,
    pub added_p99_ms: f64,
}

impl Comparison {
    pub fn new(connections: u32, deno: Load, homebase: Load) -> Comparison {
        Comparison {
            connections,
            deno,
            homebase,
            throughput_ratio: homebase.requests_per_sec / deno.requests_per_sec,
            added_p50_ms: homebase.p50_ms - deno.p50_ms,
            added_p99_ms: homebase.p99_ms - deno.p99_ms,
        }
    }
}

/// Medians over the startup runs, in milliseconds from the spawn of the process.
#[derive(Debug, Serialize)]
pub struct Startup {
    /// `homebase dev` printed its `listening` line.
    pub homebase_listening_line_ms: f64,
    /// A TCP connect to `homebase dev` succeeded.
    pub homebase_first_connect_ms: f64,
    /// `homebase dev` answered 200 from the function, whose worker it started for that request.
    pub homebase_cold_function_ms: f64,
    /// Plain Deno answered 200.
    pub deno_first_answer_ms: f64,
    /// How much later the cold function answered than plain Deno.
    pub cold_function_penalty_ms: f64,
}

/// The startup times of every run, in milliseconds.
#[derive(Debug, Default)]
pub struct StartupSamples {
    pub homebase_listening_line: Vec<f64>,
    pub homebase_first_connect: Vec<f64>,
    pub homebase_cold_function: Vec<f64>,
    pub deno_first_answer: Vec<f64>,
}

impl Startup {
    pub fn from_samples(samples: &StartupSamples) -> Startup {
        let homebase_cold_function_ms = median(&samples.homebase_cold_function);
        let deno_first_answer_ms = median(&samples.deno_first_answer);
        Startup {
            homebase_listening_line_ms: median(&samples.homebase_listening_line),
            homebase_first_connect_ms: median(&samples.homebase_first_connect),
            homebase_cold_function_ms,
            deno_first_answer_ms,
            cold_function_penalty_ms: homebase_cold_function_ms - deno_first_answer_ms,
        }
    }
}

/// One target: a measured value against its limit.
#[derive(Debug, Serialize)]
pub struct Check {
    pub target: String,
    pub measured: f64,
    pub limit: f64,
    pub unit: Unit,
    /// The limit is a minimum (else a maximum).
    pub at_least: bool,
    pub pass: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Homebase's value over plain Deno's.
    Ratio,
    Ms,
}

impl Unit {
    fn suffix(self) -> &'static str {
        match self {
            Unit::Ratio => "×",
            Unit::Ms => " ms",
        }
    }
}

impl Check {
    fn at_least(target: String, measured: f64, limit: f64, unit: Unit) -> Check {
        Check { target, measured, limit, unit, at_least: true, pass: measured >= limit }
    }

    fn at_most(target: String, measured: f64, limit: f64, unit: Unit) -> Check {
        Check { target, measured, limit, unit, at_least: false, pass: measured <= limit }
    }
}

impl Report {
    pub fn new(machine: Machine, settings: Settings, load: Vec<Comparison>, startup: Startup) -> Report {
        // Throughput is a target under load. At one connection it is only the inverse of
        // latency, which the added-p50 target covers; its ratio is reported, not judged.
        let mut targets: Vec<Check> = load
            .iter()
            .filter(|c| c.connections > 1)
            .map(|c| {
                let target = format!("throughput at {}, homebase / deno", connections(c.connections));
                Check::at_least(target, c.throughput_ratio, MIN_THROUGHPUT_RATIO, Unit::Ratio)
            })
            .collect();
        targets.extend(
            load.iter().filter(|c| c.connections == 1).map(|c| {
                Check::at_most("added p50 at 1 connection".into(), c.added_p50_ms, MAX_ADDED_P50_MS, Unit::Ms)
            }),
        );
        targets.push(Check::at_most(
            "homebase dev: start → listening".into(),
            startup.homebase_listening_line_ms,
            MAX_LISTENING_MS,
            Unit::Ms,
        ));
        targets.push(Check::at_most(
            "cold function: first answer after plain Deno's".into(),
            startup.cold_function_penalty_ms,
            MAX_COLD_PENALTY_MS,
            Unit::Ms,
        ));
        Report { machine, settings, load, startup, targets }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Report { machine, settings, load, startup, targets } = self;
        writeln!(f, "# Homebase benchmark\n")?;
        writeln!(
            f,
            "{} CPUs · Deno {} · {} · load runs of {} s after {} s of warm-up · startup: median of {} runs\n",
            machine.cpus, machine.deno, machine.tool, settings.duration_s, settings.warmup_s, settings.startup_runs
        )?;

        writeln!(f, "## Load: GET {}\n", crate::server::PATH)?;
        writeln!(f, "| connections | server | req/s | p50 | p99 |")?;
        writeln!(f, "|---:|---|---:|---:|---:|")?;
        for c in load {
            for (server, run) in [("deno", &c.deno), ("homebase", &c.homebase)] {
                writeln!(
                    f,
                    "| {} | {server} | {:.0} | {:.3} ms | {:.3} ms |",
                    c.connections, run.requests_per_sec, run.p50_ms, run.p99_ms
                )?;
            }
            writeln!(
                f,
                "| {} | **homebase vs deno** | **{:.2}×** | **{:+.3} ms** | {:+.3} ms |",
                c.connections, c.throughput_ratio, c.added_p50_ms, c.added_p99_ms
            )?;
        }
        for c in load {
            for (server, run) in [("deno", &c.deno), ("homebase", &c.homebase)] {
                if run.errors > 0 {
                    writeln!(f, "\n{} errors for {server} at {}.", run.errors, connections(c.connections))?;
                }
            }
        }

        writeln!(f, "\n## Startup: from process start to …\n")?;
        writeln!(f, "| measurement | median |")?;
        writeln!(f, "|---|---:|")?;
        let rows = [
            ("homebase: `listening` line", startup.homebase_listening_line_ms),
            ("homebase: first TCP connect", startup.homebase_first_connect_ms),
            ("homebase: first 200 from the cold function", startup.homebase_cold_function_ms),
            ("deno: first 200", startup.deno_first_answer_ms),
            ("**cold-function penalty (homebase − deno)**", startup.cold_function_penalty_ms),
        ];
        for (what, ms) in rows {
            writeln!(f, "| {what} | {ms:.1} ms |")?;
        }

        writeln!(f, "\n## Targets\n")?;
        writeln!(f, "| target | measured | limit | result |")?;
        writeln!(f, "|---|---:|---:|---|")?;
        for check in targets {
            let precision = match check.unit {
                Unit::Ratio => 2,
                Unit::Ms => 3,
            };
            let measured = format!("{:.*}{}", precision, check.measured, check.unit.suffix());
            let limit = format!("{}{}", check.limit, check.unit.suffix());
            let bound = if check.at_least { "≥" } else { "≤" };
            let result = if check.pass { "PASS" } else { "FAIL" };
            writeln!(f, "| {} | {measured} | {bound} {limit} | {result} |", check.target)?;
        }
        Ok(())
    }
}

fn connections(n: u32) -> String {
    if n == 1 { "1 connection".into() } else { format!("{n} connections") }
}

/// The median of `values`; the mean of the middle two for an even count.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn targets_pass_and_fail_on_their_limits() {
        let load = |rps, p50| Load { requests_per_sec: rps, p50_ms: p50, p99_ms: 1.0, errors: 0 };
        let report = Report::new(
            Machine { cpus: 2, deno: "2.0.0".into(), tool: "wrk" },
            Settings { duration_s: 5, warmup_s: 1, startup_runs: 3 },
            vec![
                Comparison::new(50, load(1000.0, 1.0), load(500.0, 2.0)),
                Comparison::new(1, load(1000.0, 0.1), load(400.0, 0.25)),
            ],
            Startup::from_samples(&StartupSamples {
                homebase_listening_line: vec![10.0],
                homebase_first_connect: vec![10.0],
                homebase_cold_function: vec![80.0],
                deno_first_answer: vec![60.0],
            }),
        );
        let results: Vec<_> = report.targets.iter().map(|c| (c.target.as_str(), c.pass)).collect();
        assert_eq!(
            results,
            [
                ("throughput at 50 connections, homebase / deno", true),
                ("added p50 at 1 connection", false),
                ("homebase dev: start → listening", true),
                ("cold function: first answer after plain Deno's", false),
            ]
        );
        let markdown = report.to_string();
        assert!(
            markdown.contains("| 50 | **homebase vs deno** | **0.50×** | **+1.000 ms** | +0.000 ms |"),
            "{markdown}"
        );
        assert!(markdown.contains("| cold function: first answer after plain Deno's | 20.000 ms | ≤ 15 ms | FAIL |"));
    }
}

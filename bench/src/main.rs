//! `corral-bench`: measures Corral's terminal path against a raw PTY and tmux,
//! side by side in one run, and prints one table (plus a JSON file) of figures,
//! ratios and the targets of issue 7. See BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release -p corral-bench -- all            # every scenario (a few minutes)
//! cargo run --release -p corral-bench -- echo           # one scenario
//! cargo run -p corral-bench -- all --smoke              # seconds; never fails on timing
//! ```
// No `unwrap`/`expect` outside tests: whatever a client or the OS can make fail is
// mapped to an error (tests may unwrap; `cfg(test)` builds allow it).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod api;
mod baseline;
mod echo;
mod lifecycle;
mod machine;
mod reattach;
mod report;
mod scale;
mod server;
mod stats;
mod throughput;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};

use crate::api::{Api, WorkerDef};
use crate::baseline::{Fixture, Tmux};
use crate::report::{Report, Row, join, ratio, show_ratio};
use crate::server::{Corrald, Db, ServerSettings};
use crate::stats::{median, percentile, widest_gap};

/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// Corral's terminal path against a raw PTY and tmux, in one run.
#[derive(Parser, Debug)]
#[command(name = "corral-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,

    /// Tiny sizes and counts: the whole run takes seconds (for CI). Figures are
    /// printed but mean little; only functional failures (bytes lost, an RPC
    /// failing) make the exit status non-zero.
    #[arg(long, global = true)]
    smoke: bool,

    /// Where to write the JSON results. Default: `<target>/bench/results.json`
    /// (`results-smoke.json` with `--smoke`).
    #[arg(long, global = true, value_name = "PATH")]
    json: Option<PathBuf>,

    /// PostgreSQL to run the lifecycle scenario on as well, e.g.
    /// `postgres://postgres@127.0.0.1:5432/postgres`: a fresh database is created
    /// on that server for the run and dropped after it.
    #[arg(
        long,
        global = true,
        env = "CORRAL_BENCH_DATABASE_URL",
        value_name = "URL"
    )]
    database_url: Option<String>,

    /// The corrald binary to measure. Default: built with the bench's profile
    /// (under `cargo run`) and taken from next to the bench executable.
    #[arg(long, global = true, value_name = "PATH")]
    corrald: Option<PathBuf>,

    /// Repetitions of each throughput scenario (the median is reported).
    /// Default: 3 (1 with `--smoke`).
    #[arg(long, global = true, value_name = "N")]
    repetitions: Option<usize>,

    /// Skip the tmux baseline even when tmux is installed.
    #[arg(long, global = true)]
    no_tmux: bool,
}

/// Which scenarios to run.
#[derive(Subcommand, Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// Every scenario below.
    All,
    /// One client reads a worker's `cat` of the data file.
    Throughput,
    /// Ten clients read the same worker at once.
    FanOut,
    /// A client reading 1 KiB/s beside one reading at full speed.
    SlowClient,
    /// Keystroke round trips, one byte at a time.
    Echo,
    /// 1000 idle `/bin/sh` workers: spawn time, memory, idle CPU, attachable.
    Scale,
    /// create → start → stop → delete cycles from 8 clients in parallel.
    Lifecycle,
    /// Attach to a worker with a full scrollback ring until the last replayed byte.
    Reattach,
    /// Several workers flooding at once, one client each (no target).
    Floods,
}

impl Scenario {
    fn includes(self, other: Scenario) -> bool {
        self == Scenario::All || self == other
    }
}

/// Sizes and counts of a run.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Size of the data file, in bytes.
    pub file_bytes: u64,
    /// Repetitions of the throughput scenarios.
    pub repetitions: usize,
    /// Clients of the fan-out scenario.
    pub fanout_clients: usize,
    /// Workers of the floods scenario; each writes an equal part of the data
    /// file.
    pub flood_workers: usize,
    /// Echo round trips measured.
    pub echo_samples: usize,
    /// Echo round trips made first and not measured.
    pub echo_warmup: usize,
    /// Sessions of the scale scenario.
    pub scale_sessions: usize,
    /// Workers per session of the scale scenario.
    pub scale_per_session: usize,
    /// Pause after spawning before memory is read.
    pub settle: Duration,
    /// Window over which idle CPU is measured.
    pub idle_window: Duration,
    /// Parallel clients of the lifecycle scenario.
    pub lifecycle_clients: usize,
    /// Cycles per client per repetition.
    pub lifecycle_cycles: usize,
    /// Repetitions of the reattach scenario.
    pub reattach_reps: usize,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            file_bytes: 200 << 20,
            repetitions: 3,
            fanout_clients: 10,
            flood_workers: 8,
            echo_samples: 10_000,
            echo_warmup: 200,
            scale_sessions: 10,
            scale_per_session: 100,
            settle: Duration::from_secs(2),
            idle_window: Duration::from_secs(10),
            lifecycle_clients: 8,
            lifecycle_cycles: 40,
            reattach_reps: 20,
        }
    }

    fn smoke() -> Sizes {
        Sizes {
            file_bytes: 4 << 20,
            repetitions: 1,
            fanout_clients: 10,
            flood_workers: 8,
            echo_samples: 200,
            echo_warmup: 20,
            scale_sessions: 2,
            scale_per_session: 10,
            settle: Duration::from_millis(200),
            idle_window: Duration::from_secs(1),
            lifecycle_clients: 8,
            lifecycle_cycles: 2,
            reattach_reps: 3,
        }
    }
}

/// Everything the scenarios share.
pub struct Bench {
    /// The server under test (SQLite).
    pub server: Corrald,
    /// A connection to it for setup calls.
    pub api: Api,
    /// An ACTIVE session the scenarios add their workers to.
    pub session: String,
    /// The data file, FIFOs, the baselines' home.
    pub fixture: Fixture,
    /// The tmux baseline, when available.
    pub tmux: Option<Tmux>,
    /// Sizes and counts.
    pub sizes: Sizes,
    ids: AtomicU64,
}

impl Bench {
    /// A number unique within the run, for names.
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("corral-bench: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(report) if report.errors.is_empty() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("corral-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<Report> {
    let mut sizes = if cli.smoke {
        Sizes::smoke()
    } else {
        Sizes::full()
    };
    if let Some(n) = cli.repetitions {
        sizes.repetitions = n.max(1);
    }
    let corrald = server::find_corrald(cli.corrald.as_deref())?;
    let json = match &cli.json {
        Some(path) => path.clone(),
        None => default_json_path(cli.smoke)?,
    };
    let settings = ServerSettings {
        scrollback_bytes: 1 << 20,
        max_workers_per_session: 1000.max(sizes.scale_per_session),
    };
    eprintln!(
        "corral-bench: writing a {} MiB data file",
        sizes.file_bytes >> 20
    );
    let fixture = Fixture::new(sizes.file_bytes)?;
    let (tmux, tmux_note) = if cli.no_tmux {
        (None, "skipped (--no-tmux)".to_owned())
    } else {
        match Tmux::new(&fixture) {
            Ok(tmux) => (Some(tmux), Tmux::version().unwrap_or_default()),
            Err(err) => {
                eprintln!("corral-bench: no tmux baseline: {err:#}");
                (None, format!("not measured: {err:#}"))
            }
        }
    };
    let server = Corrald::start(&corrald, &Db::Sqlite, settings.clone()).await?;
    let api = Api::new(server.connect().await?);
    let session = "bench".to_owned();
    let work_dir = server.work_dir()?.display().to_string();
    api.create_session(&session, &work_dir, &[WorkerDef::new("idle", &["/bin/sh"])])
        .await?;
    api.start_session(&session).await?;
    let bench = Bench {
        server,
        api,
        session,
        fixture,
        tmux,
        sizes,
        ids: AtomicU64::new(0),
    };
    let mut report = Report {
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: machine::describe(),
        smoke: cli.smoke,
        corrald: corrald.display().to_string(),
        tmux: tmux_note,
        rows: Vec::new(),
        errors: Vec::new(),
    };
    let started = Instant::now();
    let scenarios: [(Scenario, &str); 8] = [
        (Scenario::Throughput, "throughput"),
        (Scenario::FanOut, "fan-out"),
        (Scenario::SlowClient, "slow client"),
        (Scenario::Echo, "keystroke echo"),
        (Scenario::Scale, "scale"),
        (Scenario::Lifecycle, "lifecycle"),
        (Scenario::Reattach, "reattach"),
        // Last: the memory its eight rings and connections leave in corrald's
        // allocator would count in the scale scenario's idle RSS.
        (Scenario::Floods, "floods"),
    ];
    for (scenario, name) in scenarios {
        if !cli.scenario.includes(scenario) {
            continue;
        }
        eprintln!("corral-bench: {name}…");
        let at = Instant::now();
        let result = match scenario {
            Scenario::Throughput => run_throughput(&bench).await,
            Scenario::FanOut => run_fanout(&bench).await,
            Scenario::SlowClient => run_slow_client(&bench).await,
            Scenario::Floods => run_floods(&bench).await,
            Scenario::Echo => run_echo(&bench).await,
            Scenario::Scale => run_scale(&bench).await,
            Scenario::Lifecycle => {
                run_lifecycle(&bench, &corrald, cli.database_url.as_deref()).await
            }
            Scenario::Reattach => run_reattach(&bench).await,
            Scenario::All => Ok(Vec::new()),
        };
        match result {
            Ok(rows) => report.rows.extend(rows),
            Err(err) => {
                let message = format!("{name}: {err:#}");
                eprintln!(
                    "corral-bench: {message}\ncorrald's last log lines:\n{}",
                    bench.server.log_tail()
                );
                report.errors.push(message);
            }
        }
        eprintln!(
            "corral-bench: {name} took {:.1} s",
            at.elapsed().as_secs_f64()
        );
    }
    let Bench { server, .. } = bench;
    server.stop().await?;
    println!(
        "Corral benchmark, {} ({}){}",
        report.date,
        report.machine,
        if cli.smoke { ", SMOKE run" } else { "" }
    );
    println!("{}", report.table());
    if cli.smoke {
        println!(
            "SMOKE run: sizes are too small for the figures to mean anything; \
             only functional failures count"
        );
    }
    let met = report.rows.iter().filter(|r| r.pass == Some(true)).count();
    let judged = report.rows.iter().filter(|r| r.pass.is_some()).count();
    println!(
        "{met} of {judged} targets met; {:.0} s; results in {}",
        started.elapsed().as_secs_f64(),
        json.display()
    );
    report.write_json(&json)?;
    Ok(report)
}

/// `<target>/bench/results.json`, from the bench executable's location
/// (`<target>/<profile>/corral-bench`).
fn default_json_path(smoke: bool) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let target = exe
        .parent()
        .and_then(|profile| profile.parent())
        .ok_or_else(|| anyhow!("{} has no target directory", exe.display()))?;
    Ok(target.join("bench").join(if smoke {
        "results-smoke.json"
    } else {
        "results.json"
    }))
}

/// Runs blocking baseline code on this worker thread (the runtime moves other
/// tasks away meanwhile).
fn blocking<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    tokio::task::block_in_place(f)
}

fn mib_per_s(rates: &[f64]) -> Option<f64> {
    median(rates).map(|r| r / MIB)
}

async fn run_throughput(bench: &Bench) -> Result<Vec<Row>> {
    let (mut raw, mut corral, mut tmux) = (Vec::new(), Vec::new(), Vec::new());
    let mut skipped = 0u64;
    let mut frames = Vec::new();
    for _ in 0..bench.sizes.repetitions {
        raw.push(blocking(|| throughput::raw(bench))?);
        let run = throughput::corral(bench, 1, false).await?;
        corral.extend(run.rates);
        frames.push(run.mean_frame);
        skipped += run.skipped.iter().sum::<u64>();
        if bench.tmux.is_some() {
            tmux.push(blocking(|| throughput::tmux(bench, 1))?);
        }
    }
    let mut row = Row::new(
        "throughput",
        &format!("1 client reads {} MiB", bench.sizes.file_bytes >> 20),
        "MiB/s",
        "≥ 0.7× raw, ≥ 1.5× tmux",
    );
    row.corral = mib_per_s(&corral);
    row.raw = mib_per_s(&raw);
    row.tmux = mib_per_s(&tmux);
    row.samples("corral", &corral, MIB);
    row.samples("raw", &raw, MIB);
    row.samples("tmux", &tmux, MIB);
    let vs_raw = ratio(row.corral, row.raw);
    let vs_tmux = ratio(row.corral, row.tmux);
    row.ratio = join([show_ratio(vs_raw, "raw"), show_ratio(vs_tmux, "tmux")]);
    row.pass = vs_raw.map(|r| r >= 0.7 && vs_tmux.is_none_or(|t| t >= 1.5));
    row.note(format!(
        "mean output frame {:.1} KiB",
        median(&frames).unwrap_or(0.0) / 1024.0
    ));
    if skipped > 0 {
        row.note(format!(
            "the client fell behind the ring and skipped {:.1} MiB (the rate counts delivered bytes)",
            skipped as f64 / MIB
        ));
    }
    if bench.tmux.is_some() {
        row.note("tmux: file size / time until cat is done, with a client attached (tmux re-renders, it does not forward the bytes)");
    }
    Ok(vec![row])
}

async fn run_fanout(bench: &Bench) -> Result<Vec<Row>> {
    let n = bench.sizes.fanout_clients;
    let (mut single, mut slowest, mut fastest, mut tmux) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut skipped = 0u64;
    for _ in 0..bench.sizes.repetitions {
        single.extend(throughput::corral(bench, 1, false).await?.rates);
        let run = throughput::corral(bench, n, false).await?;
        slowest.push(run.rates.iter().copied().fold(f64::INFINITY, f64::min));
        fastest.push(run.rates.iter().copied().fold(0.0, f64::max));
        skipped += run.skipped.iter().sum::<u64>();
        if bench.tmux.is_some() {
            tmux.push(blocking(|| throughput::tmux(bench, n))?);
        }
    }
    let mut row = Row::new(
        "fan-out",
        &format!("slowest of {n} clients"),
        "MiB/s",
        "each ≥ 0.8× single client",
    );
    row.corral = mib_per_s(&slowest);
    row.tmux = mib_per_s(&tmux);
    row.samples("corral", &slowest, MIB);
    row.samples("fastest", &fastest, MIB);
    row.samples("single", &single, MIB);
    row.samples("tmux", &tmux, MIB);
    let single = mib_per_s(&single);
    let vs_single = ratio(row.corral, single);
    row.ratio = join([show_ratio(vs_single, "single")]);
    row.pass = vs_single.map(|r| r >= 0.8);
    // How far apart one repetition's clients finished: a laggard, or the
    // aggregate rate of the pipeline.
    let spread = widest_gap(&slowest, &fastest);
    row.note(format!(
        "single client in the same run: {:.1} MiB/s; in every repetition the fastest of the {n} read at most {:.2} % faster than the slowest",
        single.unwrap_or(0.0),
        spread * 100.0
    ));
    if skipped > 0 {
        row.note(format!(
            "clients skipped {:.1} MiB in all (fell behind the ring)",
            skipped as f64 / MIB
        ));
    }
    Ok(vec![row])
}

async fn run_slow_client(bench: &Bench) -> Result<Vec<Row>> {
    let (mut single, mut fast, mut growth) = (Vec::new(), Vec::new(), Vec::new());
    let mut skipped = 0u64;
    let mut slow_bytes = 0u64;
    for _ in 0..bench.sizes.repetitions {
        single.extend(throughput::corral(bench, 1, false).await?.rates);
        let run = throughput::corral(bench, 1, true).await?;
        fast.extend(run.rates);
        skipped += run.skipped.iter().sum::<u64>();
        growth.push(run.rss_growth as f64);
        slow_bytes = slow_bytes.max(run.slow_bytes.unwrap_or(0));
    }
    let mut rate = Row::new(
        "slow client",
        "full-speed client beside a 1 KiB/s one",
        "MiB/s",
        "≥ 0.9× single client",
    );
    rate.corral = mib_per_s(&fast);
    rate.samples("corral", &fast, MIB);
    rate.samples("single", &single, MIB);
    let single = mib_per_s(&single);
    let vs_single = ratio(rate.corral, single);
    rate.ratio = join([show_ratio(vs_single, "single")]);
    rate.pass = vs_single.map(|r| r >= 0.9);
    rate.note(format!(
        "single client in the same run: {:.1} MiB/s; the slow client received {} KiB",
        single.unwrap_or(0.0),
        slow_bytes / 1024
    ));
    if skipped > 0 {
        rate.note(format!(
            "the fast client skipped {:.1} MiB",
            skipped as f64 / MIB
        ));
    }
    let ring = bench.server.settings().scrollback_bytes as f64 / MIB;
    let limit = ring + 10.0;
    let mut rss = Row::new(
        "slow client",
        "server RSS growth",
        "MiB",
        &format!("≤ ring + 10 MiB = {limit:.0} MiB"),
    );
    rss.corral = median(&growth).map(|g| g / MIB);
    rss.samples("corral", &growth, MIB);
    rss.pass = rss.corral.map(|g| g <= limit);
    rss.note("peak VmRSS of corrald during the run (sampled every 10 ms) minus VmRSS before");
    Ok(vec![rate, rss])
}

/// Many agents printing at once: the aggregate rate of `flood_workers` floods
/// against as many raw PTYs flooding at once. Issue 7 sets no target for it; it
/// shows what flooding workers cost each other on a shared server.
async fn run_floods(bench: &Bench) -> Result<Vec<Row>> {
    let workers = bench.sizes.flood_workers;
    let bytes = bench.sizes.file_bytes / workers as u64;
    let (mut raw, mut corral) = (Vec::new(), Vec::new());
    let mut skipped = 0u64;
    for _ in 0..bench.sizes.repetitions {
        raw.push(blocking(|| throughput::raw_floods(bench, workers, bytes))?);
        let run = throughput::corral_floods(bench, workers, bytes).await?;
        corral.push(run.rate);
        skipped += run.skipped;
    }
    let mut row = Row::new(
        "floods",
        &format!(
            "{workers} workers write {} MiB each, 1 client each",
            bytes as f64 / MIB
        ),
        "MiB/s",
        "— (none set)",
    );
    row.corral = mib_per_s(&corral);
    row.raw = mib_per_s(&raw);
    row.samples("corral", &corral, MIB);
    row.samples("raw", &raw, MIB);
    row.ratio = join([show_ratio(ratio(row.corral, row.raw), "raw")]);
    row.note("aggregate: all bytes over the time from the first program's start to the last byte read; each program writes the first part of the data file (head -c), the raw baseline reads as many PTYs at once, a thread each");
    if skipped > 0 {
        row.note(format!(
            "clients skipped {:.1} MiB in all (fell behind the ring)",
            skipped as f64 / MIB
        ));
    }
    Ok(vec![row])
}

fn micros(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e6)
}

async fn run_echo(bench: &Bench) -> Result<Vec<Row>> {
    let raw = blocking(|| echo::raw(bench))?;
    let corral = echo::corral(bench).await?;
    let tmux = match &bench.tmux {
        Some(_) => blocking(|| echo::tmux(bench))?,
        None => Vec::new(),
    };
    let samples = corral.len();
    let mut rows = Vec::new();
    for (p, target) in [(50.0, 150.0), (99.0, 1000.0)] {
        let mut row = Row::new(
            "keystroke echo",
            &format!("p{p:.0} of {samples} round trips"),
            "µs",
            &format!("≤ {target:.0} µs"),
        );
        row.corral = micros(percentile(&corral, p));
        row.raw = micros(percentile(&raw, p));
        row.tmux = micros(percentile(&tmux, p));
        row.ratio = join([
            show_ratio(ratio(row.corral, row.raw), "raw"),
            show_ratio(ratio(row.corral, row.tmux), "tmux"),
        ]);
        row.pass = row.corral.map(|v| v <= target);
        rows.push(row);
    }
    Ok(rows)
}

async fn run_scale(bench: &Bench) -> Result<Vec<Row>> {
    let total = bench.sizes.scale_sessions * bench.sizes.scale_per_session;
    let raw = blocking(|| scale::raw(bench))?;
    eprintln!("corral-bench: scale: raw PTY {raw:?}");
    let corral = scale::corral(bench).await?;
    eprintln!("corral-bench: scale: Corral {corral:?}");
    let tmux = match &bench.tmux {
        Some(_) => Some(scale::tmux(bench).await?),
        None => None,
    };
    eprintln!("corral-bench: scale: tmux {tmux:?}");
    let scenario = format!("scale ({total} sh)");
    let mut spawn = Row::new(&scenario, "spawn all", "s", "≤ 2 s");
    spawn.corral = Some(corral.spawn_seconds);
    spawn.raw = Some(raw.spawn_seconds);
    spawn.tmux = tmux.as_ref().map(|t| t.spawn_seconds);
    spawn.ratio = join([
        show_ratio(ratio(spawn.corral, spawn.raw), "raw"),
        show_ratio(ratio(spawn.corral, spawn.tmux), "tmux"),
    ]);
    spawn.pass = Some(corral.spawn_seconds <= 2.0);
    spawn.note(format!(
        "Corral: {} sessions of {} workers started in parallel; raw: the bench spawns them one by one with Corral's posix_spawn, no server; tmux: one command making the windows",
        bench.sizes.scale_sessions, bench.sizes.scale_per_session
    ));
    let mut rss = Row::new(&scenario, "server RSS, idle", "MiB", "≤ 150 MiB");
    rss.corral = corral.rss.map(|r| r as f64 / MIB);
    rss.tmux = tmux.as_ref().and_then(|t| t.rss).map(|r| r as f64 / MIB);
    rss.ratio = join([show_ratio(ratio(rss.corral, rss.tmux), "tmux")]);
    rss.pass = rss.corral.map(|r| r <= 150.0);
    let mut cpu = Row::new(
        &scenario,
        &format!("server CPU, idle {} s", bench.sizes.idle_window.as_secs()),
        "%",
        "< 1 %",
    );
    cpu.corral = corral.idle_cpu_percent;
    cpu.tmux = tmux.as_ref().and_then(|t| t.idle_cpu_percent);
    cpu.pass = cpu.corral.map(|c| c < 1.0);
    cpu.note("percent of one CPU: utime + stime from /proc/<pid>/stat over the window");
    let mut attach = Row::new(&scenario, "attachable", "workers", &format!("all {total}"));
    attach.corral = corral.attachable.map(|a| a as f64);
    attach.pass = corral.attachable.map(|a| a == total);
    Ok(vec![spawn, rss, cpu, attach])
}

async fn run_lifecycle(
    bench: &Bench,
    corrald: &std::path::Path,
    database_url: Option<&str>,
) -> Result<Vec<Row>> {
    let clients = bench.sizes.lifecycle_clients;
    let mut rows = Vec::new();
    let mut sqlite = Vec::new();
    let mut steps = Vec::new();
    for _ in 0..bench.sizes.repetitions {
        let run = lifecycle::corral(bench, &bench.server).await?;
        sqlite.push(run.rate);
        steps.push(run.steps);
    }
    let mut row = Row::new(
        "lifecycle (SQLite)",
        &format!("create→start→stop→delete, {clients} clients"),
        "cycles/s",
        "≥ 200/s",
    );
    row.corral = median(&sqlite);
    row.samples("corral", &sqlite, 1.0);
    row.pass = row.corral.map(|r| r >= 200.0);
    row.note(step_note(&steps));
    rows.push(row);
    if let Some(url) = database_url {
        let server = Corrald::start(
            corrald,
            &Db::Postgres {
                admin_url: url.to_owned(),
            },
            bench.server.settings().clone(),
        )
        .await?;
        let mut pg = Vec::new();
        let mut steps = Vec::new();
        let mut result = Ok(());
        for _ in 0..bench.sizes.repetitions {
            match lifecycle::corral(bench, &server).await {
                Ok(run) => {
                    pg.push(run.rate);
                    steps.push(run.steps);
                }
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        server.stop().await?;
        result?;
        let mut row = Row::new(
            "lifecycle (PostgreSQL)",
            &format!("create→start→stop→delete, {clients} clients"),
            "cycles/s",
            "≥ 100/s",
        );
        row.corral = median(&pg);
        row.samples("corral", &pg, 1.0);
        row.pass = row.corral.map(|r| r >= 100.0);
        row.note(step_note(&steps));
        rows.push(row);
    }
    Ok(rows)
}

/// The time of each call of a lifecycle cycle: the medians over the repetitions
/// of each repetition's median, mean and longest call.
fn step_note(steps: &[[lifecycle::StepTimes; 4]]) -> String {
    let names = ["create", "start", "stop", "delete"];
    let ms = |values: Vec<f64>| median(&values).unwrap_or(0.0) * 1e3;
    let parts: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                "{name} {:.1} ms (mean {:.1}, max {:.0})",
                ms(steps.iter().map(|s| s[i].median).collect()),
                ms(steps.iter().map(|s| s[i].mean).collect()),
                ms(steps.iter().map(|s| s[i].max).collect()),
            )
        })
        .collect();
    format!("median call times: {}", parts.join(", "))
}

async fn run_reattach(bench: &Bench) -> Result<Vec<Row>> {
    let times = reattach::corral(bench).await?;
    let ring = bench.server.settings().scrollback_bytes >> 20;
    let mut row = Row::new(
        "reattach",
        &format!("attach → last byte of {ring} MiB replay"),
        "ms",
        "≤ 20 ms",
    );
    let ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
    row.corral = median(&ms);
    row.pass = row.corral.map(|m| m <= 20.0);
    row.note(format!(
        "median of {} attaches on an open connection; slowest {:.2} ms",
        times.len(),
        ms.iter().copied().fold(0.0, f64::max)
    ));
    Ok(vec![row])
}

//! Scale: many idle `/bin/sh` terminal workers.
//!
//! Corral: the workers are defined in a few sessions (not timed), then every
//! session is started at once; the spawn time is until every StartSession
//! returned (each returns once all its workers run). Then, after a short
//! settling pause, the server's RSS, its CPU time over the idle window, and
//! whether every worker accepts an Attach (opened, `attached` received, detached).
//! Raw PTY: the bench itself opens the PTYs and spawns the shells one after the
//! other with Corral's own spawn function (no server), the floor for Corral.
//! tmux: one tmux command makes a session and the other windows; then the
//! tmux server's RSS and idle CPU over the same window.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use corral::pb;
use futures::StreamExt;

use crate::Bench;
use crate::api::{Api, WorkerDef};
use crate::server::{cpu_seconds, rss_bytes};

/// Attach streams opened at once when checking that every worker is attachable.
const ATTACH_CONCURRENCY: usize = 32;

/// Windows made by one tmux command.
const TMUX_BATCH: usize = 50;

/// The program of every worker.
const SHELL: &str = "/bin/sh";

/// What one system measured.
#[derive(Debug, Default)]
pub struct ScaleRun {
    /// Time to spawn every worker, in seconds.
    pub spawn_seconds: f64,
    /// Resident memory once they idle, in bytes (`None`: not measured).
    pub rss: Option<u64>,
    /// CPU used while idle, in percent of one CPU.
    pub idle_cpu_percent: Option<f64>,
    /// Workers that accepted an Attach.
    pub attachable: Option<usize>,
}

/// CPU percent of process `pid` over `window`.
async fn idle_cpu(pid: i32, window: Duration) -> Result<f64> {
    let before = cpu_seconds(pid)?;
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let used = cpu_seconds(pid)? - before;
    Ok(100.0 * used / start.elapsed().as_secs_f64())
}

/// Corral with `sessions × per_session` workers.
pub async fn corral(bench: &Bench) -> Result<ScaleRun> {
    let sizes = &bench.sizes;
    let work_dir = bench.server.work_dir()?.display().to_string();
    let run = bench.next_id();
    let names: Vec<String> = (0..sizes.scale_sessions)
        .map(|s| format!("scale-{run}-{s}"))
        .collect();
    for name in &names {
        let workers: Vec<WorkerDef> = (0..sizes.scale_per_session)
            .map(|w| WorkerDef::new(format!("w{w}"), &[SHELL]))
            .collect();
        bench.api.create_session(name, &work_dir, &workers).await?;
    }
    let start = Instant::now();
    let starts = names.iter().map(|name| {
        let api = bench.api.clone();
        let name = name.clone();
        async move { api.start_session(&name).await }
    });
    for result in futures::future::join_all(starts).await {
        result?;
    }
    let spawn_seconds = start.elapsed().as_secs_f64();
    tokio::time::sleep(sizes.settle).await;
    let rss = bench.server.rss_bytes()?;
    let cpu = idle_cpu(bench.server.pid(), sizes.idle_window).await?;

    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let api = Api::new(bench.server.connect().await?);
    let workers: Vec<String> = names
        .iter()
        .flat_map(|s| {
            (0..sizes.scale_per_session).map(move |w| format!("sessions/{s}/workers/w{w}"))
        })
        .collect();
    futures::stream::iter(workers)
        .for_each_concurrent(ATTACH_CONCURRENCY, |worker| {
            let api = api.clone();
            let ok = ok.clone();
            let failures = failures.clone();
            async move {
                let result = async {
                    let attach = api.attach(&worker, pb::replay::Mode::None(true)).await?;
                    attach.detach().await
                }
                .await;
                match result {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        if let Ok(mut failures) = failures.lock() {
                            failures.push(format!("{worker}: {err:#}"));
                        }
                    }
                }
            }
        })
        .await;
    if let Ok(failures) = failures.lock()
        && let Some(first) = failures.first()
    {
        eprintln!(
            "corral-bench: scale: {} workers not attachable, e.g. {first}",
            failures.len()
        );
    }
    for name in &names {
        bench.api.stop_session(name, Duration::from_secs(1)).await?;
        bench.api.delete_session(name).await?;
    }
    Ok(ScaleRun {
        spawn_seconds,
        rss: Some(rss),
        idle_cpu_percent: Some(cpu),
        attachable: Some(ok.load(Ordering::Relaxed)),
    })
}

/// The same number of shells, each in a PTY opened by the bench, one after the
/// other, with the spawn Corral uses (`posix_openpt` + `posix_spawn`) but no
/// server around it: the floor for Corral's spawn time.
pub fn raw(bench: &Bench) -> Result<ScaleRun> {
    use corral_server::supervisor::pty::{self, Program, SpawnSpec, WindowSize};
    let count = bench.sizes.scale_sessions * bench.sizes.scale_per_session;
    let spec = SpawnSpec {
        program: Program::Argv(vec![SHELL.to_owned()]),
        cwd: bench.fixture.scratch("scale")?,
        env: bench.fixture.env(),
        size: WindowSize::default(),
    };
    let start = Instant::now();
    let mut ptys = Vec::with_capacity(count);
    for _ in 0..count {
        ptys.push(pty::spawn(&spec).map_err(|e| anyhow!("raw spawn: {e}"))?);
    }
    let spawn_seconds = start.elapsed().as_secs_f64();
    for spawned in &ptys {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(spawned.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for spawned in &ptys {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(spawned.pid), None);
    }
    drop(ptys);
    Ok(ScaleRun {
        spawn_seconds,
        ..Default::default()
    })
}

/// The same number of shells as windows of one tmux session.
pub async fn tmux(bench: &Bench) -> Result<ScaleRun> {
    let tmux = bench
        .tmux
        .as_ref()
        .ok_or_else(|| anyhow!("tmux is not available"))?;
    let count = bench.sizes.scale_sessions * bench.sizes.scale_per_session;
    let session = format!("scale{}", bench.next_id());
    let owned = |words: &[&str]| words.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let start = Instant::now();
    tmux.run(&owned(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "80",
        "-y",
        "24",
        SHELL,
        ";",
        "set",
        "-g",
        "status",
        "off",
    ]))?;
    // tmux limits the length of one command line: the windows in batches.
    let mut made = 1;
    while made < count {
        let batch = (count - made).min(TMUX_BATCH);
        let mut args = Vec::new();
        for i in 0..batch {
            if i > 0 {
                args.push(";".to_owned());
            }
            args.extend(owned(&["new-window", "-d", "-t", &session, SHELL]));
        }
        tmux.run(&args)?;
        made += batch;
    }
    let spawn_seconds = start.elapsed().as_secs_f64();
    let windows = tmux
        .run(&["list-windows".into(), "-t".into(), session.clone()])?
        .lines()
        .count();
    if windows != count {
        bail!("tmux made {windows} windows of {count}");
    }
    tokio::time::sleep(bench.sizes.settle).await;
    let pid = tmux.server_pid()?;
    let rss = rss_bytes(pid).context("tmux server RSS")?;
    let cpu = idle_cpu(pid, bench.sizes.idle_window).await?;
    tmux.kill_session(&session);
    Ok(ScaleRun {
        spawn_seconds,
        rss: Some(rss),
        idle_cpu_percent: Some(cpu),
        attachable: None,
    })
}

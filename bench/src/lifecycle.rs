//! Lifecycle: create → start → stop → delete cycles of a session with one
//! `/bin/sh` terminal worker, from several clients in parallel (each on its own
//! connection). The rate is cycles completed per second of wall time.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::Bench;
use crate::api::{Api, WorkerDef};
use crate::server::Corrald;
use crate::stats::median;

/// Grace between SIGTERM and SIGKILL at each stop (the shell ends at SIGHUP).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// What one repetition measured.
pub struct LifecycleRun {
    /// Cycles per second of wall time.
    pub rate: f64,
    /// Median, mean and longest time of each call (create, start, stop,
    /// delete), in seconds: a mean far above the median means a tail of slow calls.
    pub steps: [StepTimes; 4],
}

/// The times of one kind of call, in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepTimes {
    pub median: f64,
    pub mean: f64,
    pub max: f64,
}

impl StepTimes {
    fn of(times: &[f64]) -> Self {
        StepTimes {
            median: median(times).unwrap_or(0.0),
            mean: times.iter().sum::<f64>() / times.len().max(1) as f64,
            max: times.iter().copied().fold(0.0, f64::max),
        }
    }
}

/// One repetition against `server` (the bench's own server, or one on
/// PostgreSQL).
pub async fn corral(bench: &Bench, server: &Corrald) -> Result<LifecycleRun> {
    let sizes = &bench.sizes;
    let work_dir = server.work_dir()?.display().to_string();
    let run = bench.next_id();
    let mut apis = Vec::new();
    for _ in 0..sizes.lifecycle_clients {
        apis.push(Api::new(server.connect().await?));
    }
    let start = Instant::now();
    let clients = apis.into_iter().enumerate().map(|(client, api)| {
        let work_dir = work_dir.clone();
        let cycles = sizes.lifecycle_cycles;
        async move {
            let workers = [WorkerDef::new("shell", &["/bin/sh"])];
            let mut steps: [Vec<f64>; 4] = Default::default();
            for cycle in 0..cycles {
                let name = format!("lc-{run}-{client}-{cycle}");
                let mut at = Instant::now();
                let mut lap = |step: usize| {
                    steps[step].push(at.elapsed().as_secs_f64());
                    at = Instant::now();
                };
                api.create_session(&name, &work_dir, &workers).await?;
                lap(0);
                api.start_session(&name).await?;
                lap(1);
                api.stop_session(&name, STOP_GRACE).await?;
                lap(2);
                api.delete_session(&name).await?;
                lap(3);
            }
            anyhow::Ok(steps)
        }
    });
    let mut steps: [Vec<f64>; 4] = Default::default();
    let mut total = 0;
    for result in futures::future::join_all(clients).await {
        for (all, client) in steps.iter_mut().zip(result?) {
            total += client.len();
            all.extend(client);
        }
    }
    let rate = (total / 4) as f64 / start.elapsed().as_secs_f64();
    Ok(LifecycleRun {
        rate,
        steps: steps.map(|s| StepTimes::of(&s)),
    })
}

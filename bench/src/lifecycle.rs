//! Lifecycle: create → start → stop → delete cycles of a session with one
//! `/bin/sh` terminal worker, from several clients in parallel (each on its own
//! connection). The rate is cycles completed per second of wall time.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::Bench;
use crate::api::{Api, WorkerDef};
use crate::server::Corrald;

/// Grace between SIGTERM and SIGKILL at each stop (the shell ends at SIGHUP).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Cycles per second against `server` (the bench's own server, or one on
/// PostgreSQL).
pub async fn corral(bench: &Bench, server: &Corrald) -> Result<f64> {
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
            for cycle in 0..cycles {
                let name = format!("lc-{run}-{client}-{cycle}");
                api.create_session(&name, &work_dir, &workers).await?;
                api.start_session(&name).await?;
                api.stop_session(&name, STOP_GRACE).await?;
                api.delete_session(&name).await?;
            }
            anyhow::Ok(cycles)
        }
    });
    let mut total = 0;
    for result in futures::future::join_all(clients).await {
        total += result?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

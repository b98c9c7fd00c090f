//! Reattach: a worker that printed a full scrollback ring (1 MiB by default) and
//! idles; a client on an open connection sends `open` (replay everything) and
//! the clock stops at the last replayed byte.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use corral::pb;
use corral::pb::attach_response::Frame as Out;

use crate::Bench;
use crate::api::{Api, WorkerDef};

/// How long the worker may take to print its output.
const FILL_TIMEOUT: Duration = Duration::from_secs(30);

/// Attach-to-last-replayed-byte times, one per repetition.
pub async fn corral(bench: &Bench) -> Result<Vec<Duration>> {
    let ring = bench.server.settings().scrollback_bytes as u64;
    let script = r#"stty raw -echo; head -c "$1" "$2"; exec sleep 100000"#;
    let def = WorkerDef {
        name: format!("reattach-{}", bench.next_id()),
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            script.into(),
            "sh".into(),
            ring.to_string(),
            bench.fixture.file.display().to_string(),
        ],
    };
    let worker = bench.api.create_worker(&bench.session, &def).await?;
    let deadline = Instant::now() + FILL_TIMEOUT;
    loop {
        let current = bench.api.get_worker(&worker.name).await?;
        if current.output_offset as u64 >= ring {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the reattach worker printed {} of {ring} bytes in {FILL_TIMEOUT:?}",
                current.output_offset
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let api = Api::new(bench.server.connect().await?);
    let mut times = Vec::new();
    for _ in 0..bench.sizes.reattach_reps {
        let start = Instant::now();
        let mut attach = api
            .attach(&worker.name, pb::replay::Mode::FromOffset(0))
            .await?;
        let (first, end) = (
            attach.attached.replay_start_offset,
            attach.attached.replay_end_offset,
        );
        let mut replayed = 0i64;
        while first + replayed < end {
            match attach.next().await? {
                Some(Out::Output(output)) => replayed += output.data.len() as i64,
                Some(Out::Skipped(_)) => bail!("the replay skipped bytes"),
                Some(_) => {}
                None => bail!("the Attach stream ended during the replay"),
            }
        }
        times.push(start.elapsed());
        if (replayed as u64) < ring {
            bail!("replayed {replayed} bytes of a {ring}-byte scrollback");
        }
        attach.detach().await?;
    }
    bench.api.delete_worker(&worker.name).await?;
    Ok(times)
}

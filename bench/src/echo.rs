//! Keystroke echo: one byte typed, the same byte back, one at a time.
//!
//! The program is `stty raw -echo; printf R; exec cat`: the byte goes through the
//! PTY to `cat` and back. Corral: typed as an Attach `input` frame, seen in an
//! `output` frame on the same stream (loopback TCP). Raw PTY: written to the
//! master, read from it. tmux: written to an attached client's PTY, read from it
//! (escape sequences of tmux's rendering are skipped).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use corral::pb;
use corral::pb::attach_response::Frame as Out;

use crate::Bench;
use crate::api::{Api, WorkerDef};
use crate::baseline::{EscapeFilter, RawPty, echo_argv, echo_key};

/// How long one sample may take before the run is called broken.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Round trips through a raw PTY.
pub fn raw(bench: &Bench) -> Result<Vec<Duration>> {
    let mut pty = RawPty::spawn(&echo_argv(), &bench.fixture.env())?;
    let reader = pty.take_reader()?;
    let samples = echo_loop(
        reader,
        pty.writer(),
        bench.sizes.echo_warmup,
        bench.sizes.echo_samples,
    )?;
    Ok(samples)
}

/// Round trips through an attached tmux client.
pub fn tmux(bench: &Bench) -> Result<Vec<Duration>> {
    let tmux = bench
        .tmux
        .as_ref()
        .ok_or_else(|| anyhow!("tmux is not available"))?;
    let session = format!("echo{}", bench.next_id());
    tmux.new_session(&session, &echo_argv())?;
    let mut client = tmux.attach(&session)?;
    let reader = client.take_reader()?;
    let samples = echo_loop(
        reader,
        client.writer(),
        bench.sizes.echo_warmup,
        bench.sizes.echo_samples,
    );
    tmux.kill_session(&session);
    samples
}

/// Waits for the ready mark, then types `warmup + samples` keys one at a time;
/// returns the round trips of the last `samples`.
fn echo_loop(
    mut reader: Box<dyn Read + Send>,
    writer: &mut (dyn Write + Send),
    warmup: usize,
    samples: usize,
) -> Result<Vec<Duration>> {
    let mut filter = EscapeFilter::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut wait_for = |byte: u8, reader: &mut Box<dyn Read + Send>| -> Result<()> {
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                bail!("the echo program ended");
            }
            if filter.contains(&buf[..n], byte) {
                return Ok(());
            }
        }
    };
    wait_for(b'R', &mut reader)?;
    let mut out = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let key = echo_key(i);
        let start = Instant::now();
        writer.write_all(&[key])?;
        writer.flush()?;
        wait_for(key, &mut reader)?;
        if i >= warmup {
            out.push(start.elapsed());
        }
    }
    Ok(out)
}

/// Round trips through Corral's Attach stream.
///
/// The client runs on a runtime of its own with one thread, like the other two
/// baselines' single reading thread: what is measured is the server's path, not
/// hand-offs between the client's threads.
pub async fn corral(bench: &Bench) -> Result<Vec<Duration>> {
    let def = WorkerDef {
        name: format!("echo-{}", bench.next_id()),
        command: echo_argv(),
    };
    let worker = bench.api.create_worker(&bench.session, &def).await?;
    let addr = bench.server.addr();
    let name = worker.name.clone();
    let (warmup, samples) = (bench.sizes.echo_warmup, bench.sizes.echo_samples);
    let measured = tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the echo client's runtime")?
            .block_on(corral_client(addr, &name, warmup, samples))
    })
    .await
    .map_err(|err| anyhow!("the echo client failed: {err}"))
    .and_then(|result| result);
    bench.api.delete_worker(&worker.name).await?;
    measured
}

/// The echo loop of one client on its own connection to `addr`.
async fn corral_client(
    addr: std::net::SocketAddr,
    worker: &str,
    warmup: usize,
    samples: usize,
) -> Result<Vec<Duration>> {
    let api = Api::new(crate::server::connect(addr).await?);
    let mut attach = api.attach(worker, pb::replay::Mode::FromOffset(0)).await?;
    let wait_for = async |byte: u8, attach: &mut crate::api::Attach| -> Result<()> {
        loop {
            match attach.next().await? {
                Some(Out::Output(output)) if output.data.contains(&byte) => return Ok(()),
                Some(Out::Exit(_)) | None => bail!("the echo worker ended"),
                Some(Out::Error(error)) => bail!("Attach error: {}", error.message),
                Some(_) => {}
            }
        }
    };
    tokio::time::timeout(SAMPLE_TIMEOUT, wait_for(b'R', &mut attach))
        .await
        .map_err(|_| anyhow!("the echo worker did not get ready"))??;
    let mut out = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let key = echo_key(i);
        let start = Instant::now();
        attach.input(Bytes::copy_from_slice(&[key])).await?;
        tokio::time::timeout(SAMPLE_TIMEOUT, wait_for(key, &mut attach))
            .await
            .map_err(|_| anyhow!("no echo of sample {i} within {SAMPLE_TIMEOUT:?}"))??;
        if i >= warmup {
            out.push(start.elapsed());
        }
    }
    attach.detach().await?;
    Ok(out)
}

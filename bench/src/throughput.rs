//! Throughput, fan-out, slow client and concurrent floods: a worker `cat`s the
//! data file in raw mode (or, for floods, several workers each write a part of
//! it), attached clients read it all.
//!
//! Every run starts the same way: the program waits on a FIFO, every client
//! attaches (or, for the baselines, opens the PTY / attaches tmux), then the FIFO
//! is written and the clock starts. A client's rate is the bytes it received
//! divided by the time from that write to its last byte. tmux re-renders the
//! screen for its clients instead of passing the bytes on, so its figure is the
//! file size divided by the time until `cat` is done while one (or ten) attached
//! clients read everything tmux sends them.

use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use corral::pb;
use corral::pb::attach_response::Frame as Out;

use crate::Bench;
use crate::api::{Api, Attach, WorkerDef};
use crate::baseline::{RawPty, cat_argv, drain, head_argv, trigger};

/// How long a client may wait for the rest of the output.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// How often the server's RSS is sampled during a run.
const RSS_SAMPLE: Duration = Duration::from_millis(10);

/// The slow client's reading rate, in bytes per second.
pub const SLOW_RATE: f64 = 1024.0;

/// Bytes per second of one client straight from the PTY master.
pub fn raw(bench: &Bench) -> Result<f64> {
    let fixture = &bench.fixture;
    let fifo = fixture.fifo()?;
    let mut pty = RawPty::spawn(&cat_argv(&fifo, &fixture.file), &fixture.env())?;
    let size = fixture.size;
    let reader = pty.take_reader()?;
    let reading = std::thread::spawn(move || read_master(reader, size));
    let start = trigger(&fifo)?;
    let (total, done) = reading
        .join()
        .map_err(|_| anyhow!("the raw PTY reader panicked"))?;
    pty.wait()?;
    if total != size {
        bail!("raw PTY: read {total} of {size} bytes");
    }
    Ok(size as f64 / (done - start).as_secs_f64())
}

/// Reads a PTY master until `size` bytes came, EOF or an error; returns the
/// bytes read and when the last arrived.
fn read_master(mut reader: Box<dyn std::io::Read + Send>, size: u64) -> (u64, Instant) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while total < size {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (total, Instant::now())
}

/// Aggregate bytes per second of `workers` programs flooding at once, each
/// writing the first `bytes` bytes of the data file into its own PTY, each
/// master read by a thread of its own: all bytes over the time from the first
/// program's start to the last byte read.
pub fn raw_floods(bench: &Bench, workers: usize, bytes: u64) -> Result<f64> {
    let fixture = &bench.fixture;
    let mut ptys = Vec::new();
    let mut fifos = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..workers {
        let fifo = fixture.fifo()?;
        let mut pty = RawPty::spawn(&head_argv(&fifo, &fixture.file, bytes), &fixture.env())?;
        let reader = pty.take_reader()?;
        readers.push(std::thread::spawn(move || read_master(reader, bytes)));
        ptys.push(pty);
        fifos.push(fifo);
    }
    let start = trigger_all(&fifos)?;
    let mut end = start;
    for reader in readers {
        let (total, done) = reader
            .join()
            .map_err(|_| anyhow!("a raw PTY reader panicked"))?;
        if total != bytes {
            bail!("raw PTY floods: a reader read {total} of {bytes} bytes");
        }
        end = end.max(done);
    }
    for pty in &mut ptys {
        pty.wait()?;
    }
    Ok((workers as u64 * bytes) as f64 / (end - start).as_secs_f64())
}

/// Starts the programs waiting on `fifos`, one after the other; returns when
/// the first was started.
fn trigger_all(fifos: &[std::path::PathBuf]) -> Result<Instant> {
    let mut first = None;
    for fifo in fifos {
        let at = trigger(fifo)?;
        first.get_or_insert(at);
    }
    first.ok_or_else(|| anyhow!("no program to start"))
}

/// Bytes per second through tmux with `clients` attached clients.
pub fn tmux(bench: &Bench, clients: usize) -> Result<f64> {
    let tmux = bench
        .tmux
        .as_ref()
        .ok_or_else(|| anyhow!("tmux is not available"))?;
    let fixture = &bench.fixture;
    let n = bench.next_id();
    let fifo = fixture.fifo()?;
    let channel = format!("done-{n}");
    let session = format!("tp{n}");
    let script = r#"stty raw -echo; read _ < "$1"; cat "$2"; tmux wait-for -S "$3""#;
    let argv = vec![
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
        "sh".into(),
        fifo.display().to_string(),
        fixture.file.display().to_string(),
        channel.clone(),
    ];
    tmux.new_session(&session, &argv)?;
    let mut clients_pty = Vec::new();
    let mut counters = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..clients {
        let mut client = tmux.attach(&session)?;
        let count = Arc::new(AtomicU64::new(0));
        let reader = client.take_reader()?;
        let thread_count = count.clone();
        threads.push(std::thread::spawn(move || drain(reader, thread_count)));
        counters.push(count);
        clients_pty.push(client);
    }
    // Every client has drawn its first screen.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counters.iter().any(|c| c.load(Ordering::Relaxed) == 0) {
        if Instant::now() > deadline {
            bail!("tmux clients did not draw within 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut waiter = tmux.wait_for(&channel)?;
    let start = trigger(&fifo)?;
    let status = waiter.wait().context("tmux wait-for")?;
    let done = Instant::now();
    if !status.success() {
        bail!("tmux wait-for {channel} failed ({status})");
    }
    tmux.kill_session(&session);
    drop(clients_pty);
    for thread in threads {
        let _ = thread.join();
    }
    Ok(fixture.size as f64 / (done - start).as_secs_f64())
}

/// What one Corral run measured.
pub struct CorralRun {
    /// Read rate of each full-speed client, bytes per second.
    pub rates: Vec<f64>,
    /// Bytes each full-speed client was told it skipped (fell behind the ring).
    pub skipped: Vec<u64>,
    /// Growth of the server's RSS during the run over its RSS before, in bytes.
    pub rss_growth: u64,
    /// Bytes the slow client received, if there was one.
    pub slow_bytes: Option<u64>,
    /// Mean size of the `output` frames the full-speed clients received, in bytes.
    pub mean_frame: f64,
}

/// One Corral run: `fast` clients at full speed (each on its own connection),
/// plus one reading [`SLOW_RATE`] bytes per second when `slow`.
pub async fn corral(bench: &Bench, fast: usize, slow: bool) -> Result<CorralRun> {
    let fixture = &bench.fixture;
    let size = fixture.size;
    let fifo = fixture.fifo()?;
    let def = WorkerDef {
        name: format!("tp-{}", bench.next_id()),
        command: cat_argv(&fifo, &fixture.file),
    };
    let worker = bench.api.create_worker(&bench.session, &def).await?;
    let mut attaches = Vec::new();
    for _ in 0..fast + usize::from(slow) {
        let api = Api::new(bench.server.connect().await?);
        attaches.push(
            api.attach(&worker.name, pb::replay::Mode::FromOffset(0))
                .await?,
        );
    }
    let slow_attach = if slow { attaches.pop() } else { None };
    let rss_before = bench.server.rss_bytes()?;
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let pid = bench.server.pid();
        tokio::spawn(async move {
            let mut peak = 0u64;
            while sampling.load(Ordering::Relaxed) {
                if let Ok(rss) = crate::server::rss_bytes(pid) {
                    peak = peak.max(rss);
                }
                tokio::time::sleep(RSS_SAMPLE).await;
            }
            peak
        })
    };
    let readers: Vec<_> = attaches
        .into_iter()
        .map(|attach| tokio::spawn(read_all(attach, size)))
        .collect();
    let slow_received = Arc::new(AtomicU64::new(0));
    let slow_reader =
        slow_attach.map(|attach| tokio::spawn(read_slowly(attach, slow_received.clone())));
    let fifo_path = fifo.clone();
    let start = tokio::task::spawn_blocking(move || trigger(&fifo_path)).await??;
    let mut rates = Vec::new();
    let mut skipped = Vec::new();
    let (mut bytes, mut frames) = (0u64, 0u64);
    for reader in readers {
        let read = tokio::time::timeout(RUN_TIMEOUT, reader)
            .await
            .context("a client did not receive all the output in time")???;
        rates.push(read.delivered as f64 / (read.done - start).as_secs_f64());
        skipped.push(read.skipped);
        bytes += read.delivered;
        frames += read.frames;
    }
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.await?;
    let slow_bytes = match slow_reader {
        Some(reader) => {
            reader.abort();
            match reader.await {
                Ok(result) => result?,
                Err(err) if err.is_cancelled() => {}
                Err(err) => return Err(err.into()),
            }
            Some(slow_received.load(Ordering::Relaxed))
        }
        None => None,
    };
    bench.api.delete_worker(&worker.name).await?;
    Ok(CorralRun {
        rates,
        skipped,
        rss_growth: peak.saturating_sub(rss_before),
        slow_bytes,
        mean_frame: bytes as f64 / frames.max(1) as f64,
    })
}

/// What one run of concurrent floods through Corral measured.
pub struct FloodsRun {
    /// Aggregate rate: bytes delivered to all clients over the time from the
    /// first program's start to the last byte received, in bytes per second.
    pub rate: f64,
    /// Bytes the clients were told they skipped, in all.
    pub skipped: u64,
}

/// `workers` workers flooding at once, each writing the first `bytes` bytes of
/// the data file, each read by one client on its own connection.
pub async fn corral_floods(bench: &Bench, workers: usize, bytes: u64) -> Result<FloodsRun> {
    let fixture = &bench.fixture;
    let mut names = Vec::new();
    let mut fifos = Vec::new();
    let mut attaches = Vec::new();
    for _ in 0..workers {
        let fifo = fixture.fifo()?;
        let def = WorkerDef {
            name: format!("fl-{}", bench.next_id()),
            command: head_argv(&fifo, &fixture.file, bytes),
        };
        let worker = bench.api.create_worker(&bench.session, &def).await?;
        let api = Api::new(bench.server.connect().await?);
        attaches.push(
            api.attach(&worker.name, pb::replay::Mode::FromOffset(0))
                .await?,
        );
        names.push(worker.name);
        fifos.push(fifo);
    }
    let readers: Vec<_> = attaches
        .into_iter()
        .map(|attach| tokio::spawn(read_all(attach, bytes)))
        .collect();
    let start = tokio::task::spawn_blocking(move || trigger_all(&fifos)).await??;
    let (mut delivered, mut skipped, mut end) = (0u64, 0u64, start);
    for reader in readers {
        let read = tokio::time::timeout(RUN_TIMEOUT, reader)
            .await
            .context("a client did not receive all the output in time")???;
        delivered += read.delivered;
        skipped += read.skipped;
        end = end.max(read.done);
    }
    for name in &names {
        bench.api.delete_worker(name).await?;
    }
    Ok(FloodsRun {
        rate: delivered as f64 / (end - start).as_secs_f64(),
        skipped,
    })
}

/// What one full-speed client read.
struct ClientRead {
    /// Bytes received.
    delivered: u64,
    /// Bytes the server said this client skipped.
    skipped: u64,
    /// `output` frames received.
    frames: u64,
    /// When the last byte arrived.
    done: Instant,
}

/// Reads until the exit frame. Fails when bytes are unaccounted for.
async fn read_all(mut attach: Attach, size: u64) -> Result<ClientRead> {
    let mut delivered = 0u64;
    let mut skipped = 0u64;
    let mut frames = 0u64;
    let mut done = None;
    let mut next_offset = 0u64;
    while let Some(frame) = attach.next().await? {
        match frame {
            Out::Output(output) => {
                if output.offset as u64 != next_offset {
                    bail!(
                        "output at offset {} where {next_offset} was expected",
                        output.offset
                    );
                }
                delivered += output.data.len() as u64;
                frames += 1;
                next_offset += output.data.len() as u64;
            }
            Out::Skipped(skip) => {
                skipped += (skip.to_offset - skip.from_offset) as u64;
                next_offset = skip.to_offset as u64;
            }
            Out::Exit(_) => break,
            _ => {}
        }
        if done.is_none() && delivered + skipped >= size {
            done = Some(Instant::now());
        }
    }
    if delivered + skipped != size {
        bail!("a client got {delivered} bytes and {skipped} skipped of {size}: bytes were lost");
    }
    let done = done.ok_or_else(|| anyhow!("no output"))?;
    Ok(ClientRead {
        delivered,
        skipped,
        frames,
        done,
    })
}

/// Reads [`SLOW_RATE`] bytes per second until aborted or the stream ends,
/// counting the bytes received in `received`.
async fn read_slowly(mut attach: Attach, received: Arc<AtomicU64>) -> Result<()> {
    while let Some(frame) = attach.next().await? {
        match frame {
            Out::Output(output) => {
                received.fetch_add(output.data.len() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs_f64(
                    output.data.len() as f64 / SLOW_RATE,
                ))
                .await;
            }
            Out::Exit(_) => break,
            _ => {}
        }
    }
    Ok(())
}

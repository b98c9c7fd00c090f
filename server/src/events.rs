//! The live side of the event log: one feed per server that learns which event
//! sequences are committed, and the WatchEvents readers that follow it.
//!
//! ```text
//!  writers (this process) ── commit ──► Store::announce(N) ─┐
//!  PostgreSQL NOTIFY corral_events 'N' ──► feed task ───────┼─► watch<i64> "committed up to N"
//!  SQLite / safety net: poll counters ──► feed task ────────┘          │
//!                                                                      ▼
//!                       each WatchEvents stream: read the DB after its own cursor
//! ```
//!
//! The feed carries only a number ("events up to N are committed"); every reader
//! reads the events themselves from the database after its own cursor. That gives
//! the seam between replay and live delivery for free: a reader subscribes to the
//! feed first, then reads everything after `after_sequence`, then, each time the
//! feed moves past its cursor, reads again from its cursor. Sequences are
//! gap-free and become visible in order (see `store::events`), so reading
//! `sequence > cursor` in order can neither skip nor repeat an event.
//!
//! Bounds: the feed is a `watch` (one value, however slow a reader is); a reader
//! holds at most one page of rows and a small channel of events for its client, and
//! waits on that channel, so a slow client only slows its own reads.
//!
//! One feed per server, not one database listener per client: on PostgreSQL it is
//! one dedicated LISTEN connection (reconnected after a failure, and followed by a
//! re-read of the `counters` row so nothing announced meanwhile is missed); the
//! `counters` row is also polled — often on SQLite, where it is the only way to
//! hear of writers in other processes, rarely on PostgreSQL as a safety net.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, Micros, micros_of};
use crate::error::{Error, Result};
use crate::store::entities::event;
use crate::store::events::NOTIFY_CHANNEL;
use crate::store::{EventFilter, Store};

/// Rows read from the database per query by a reader.
const PAGE_ROWS: u64 = 256;
/// Events queued per WatchEvents client before its reader waits.
const CLIENT_QUEUE: usize = 64;
/// On PostgreSQL, how often (at least this long apart) the `counters` row is read
/// anyway, in case a notification was lost with the listener's connection.
const PG_SAFETY_POLL: Duration = Duration::from_secs(5);
/// First delay before reconnecting a failed listener; doubled up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Starts the feed of server `store`: until `shutdown`, keeps
/// [`Store::committed_events`] up to date with what any process commits.
/// `poll` is the polling period on SQLite; on PostgreSQL the safety poll runs
/// every `poll` but at most every 5 s.
pub fn spawn_feed(
    store: Store,
    poll: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    if store.backend_name() == "postgres" {
        tokio::spawn(postgres_feed(store, poll.max(PG_SAFETY_POLL), shutdown))
    } else {
        tokio::spawn(polling_feed(store, poll, shutdown))
    }
}

/// Reads the committed head and announces it.
async fn refresh(store: &Store) {
    match store.event_head().await {
        Ok(head) => store.announce(head),
        Err(err) => tracing::warn!(%err, "reading the event sequence"),
    }
}

async fn polling_feed(store: Store, poll: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => refresh(&store).await,
        }
    }
}

async fn postgres_feed(store: Store, safety_poll: Duration, shutdown: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let listener = async {
            let mut listener = PgListener::connect(store.url()).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            () = shutdown.cancelled() => return,
            result = listener => match result {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(%err, backoff_ms = backoff.as_millis() as u64, "event listener cannot connect; polling meanwhile");
                    refresh(&store).await;
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        backoff = FIRST_BACKOFF;
        // Anything committed before LISTEN took effect was not notified to us.
        refresh(&store).await;
        let mut safety = tokio::time::interval(safety_poll);
        safety.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = safety.tick() => refresh(&store).await,
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => match notification.payload().parse::<i64>() {
                        Ok(sequence) => store.announce(sequence),
                        Err(_) => refresh(&store).await,
                    },
                    // The connection was lost (and re-established): notifications
                    // sent meanwhile are gone, so read the head.
                    Ok(None) => refresh(&store).await,
                    Err(err) => {
                        tracing::warn!(%err, "event listener failed; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

/// Fails with OUT_OF_RANGE when events after `after` were already purged (the
/// reader would silently miss them). `after = 0` means "from the oldest kept" and
/// never fails.
pub async fn check_kept(store: &Store, after: i64) -> Result<()> {
    if after <= 0 {
        return Ok(());
    }
    let oldest = store.oldest_event().await?;
    let purged = match oldest {
        Some(oldest) => oldest > after.saturating_add(1),
        None => store.event_head().await? > after,
    };
    if purged {
        let oldest = oldest.map_or_else(|| "none".to_owned(), |o| o.to_string());
        return Err(Error::OutOfRange {
            reason: "EVENTS_PURGED",
            message: format!(
                "events after sequence {after} were purged (they are kept for the configured \
                 event retention); the oldest event kept is {oldest}: read from after_sequence 0 \
                 to start at the oldest kept event"
            ),
        });
    }
    Ok(())
}

/// The absolute limit of a WatchEvents stream (`--stream-max-duration`), read on
/// the server's clock.
///
/// Only the absolute limit applies: a quiet event log is not an idle client, and a
/// server-streaming client has no way to show it is alive.
#[derive(Clone, Debug)]
pub struct Lifetime {
    /// The clock the limit is read on.
    pub clock: Arc<dyn Clock>,
    /// How long a stream may stay open; zero: forever.
    pub limit: Duration,
}

impl Lifetime {
    /// The moment (µs on `clock`) a stream opened now must end, if any.
    fn deadline(&self) -> Option<Micros> {
        (!self.limit.is_zero()).then(|| self.clock.now().saturating_add(micros_of(self.limit)))
    }

    /// How often to look at the clock: a quarter of the limit, within 10 ms..1 s.
    fn check_every(&self) -> Duration {
        (self.limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// Starts a WatchEvents reader: every stored event after `after` matching
/// `filter`, then each new one as it is committed, in sequence order, without a
/// gap or a duplicate. The receiver yields events until the client goes away (the
/// receiver is dropped), `shutdown` is cancelled (then one UNAVAILABLE error), the
/// stream's `lifetime` is over (then one DEADLINE_EXCEEDED error: reconnect with
/// the last sequence seen), or the database fails (one error).
pub fn watch(
    store: Store,
    after: i64,
    filter: EventFilter,
    lifetime: Lifetime,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Result<event::Model>> {
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    // Subscribe before the first read, so nothing committed after that read can
    // go unnoticed.
    let committed = store.committed_events();
    tokio::spawn(async move {
        // The reader owns `tx`; this clone reports the end of the lifetime.
        let expired = tx.clone();
        let reader = Reader {
            store,
            filter,
            cursor: after.max(0),
            tx,
        };
        tokio::select! {
            () = reader.run(committed, shutdown) => {}
            () = expiry(&lifetime) => {
                let _ = expired.try_send(Err(Error::DeadlineExceeded {
                    limit: "stream_max_duration",
                    value: humantime::format_duration(lifetime.limit).to_string(),
                    message: "the WatchEvents stream was open for as long as the server allows; \
                              watch again with after_sequence set to the last sequence seen"
                        .into(),
                }));
            }
        }
    });
    rx
}

/// Resolves when `lifetime` is over; never when it has no limit.
async fn expiry(lifetime: &Lifetime) {
    let Some(deadline) = lifetime.deadline() else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(lifetime.check_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if lifetime.clock.now() >= deadline {
            return;
        }
    }
}

struct Reader {
    store: Store,
    filter: EventFilter,
    /// Every event with a sequence up to here was delivered or did not match.
    cursor: i64,
    tx: mpsc::Sender<Result<event::Model>>,
}

impl Reader {
    async fn run(
        mut self,
        mut committed: tokio::sync::watch::Receiver<i64>,
        shutdown: CancellationToken,
    ) {
        let ended = loop {
            // Events up to `head` are committed; a query that starts after this
            // read sees all of them.
            let head = *committed.borrow_and_update();
            let step = tokio::select! {
                () = shutdown.cancelled() => Step::ShuttingDown,
                step = self.catch_up(head) => step,
            };
            match step {
                Step::CaughtUp => {}
                other => break other,
            }
            // Wait for the feed to move past what this reader has covered.
            let step = loop {
                if *committed.borrow() > self.cursor {
                    break Step::CaughtUp;
                }
                tokio::select! {
                    () = shutdown.cancelled() => break Step::ShuttingDown,
                    () = self.tx.closed() => break Step::ClientGone,
                    changed = committed.changed() => if changed.is_err() {
                        break Step::ShuttingDown;
                    },
                }
            };
            if !matches!(step, Step::CaughtUp) {
                break step;
            }
        };
        match ended {
            Step::ShuttingDown => {
                let _ = self.tx.try_send(Err(Error::Unavailable(
                    "the server is shutting down; reconnect with the last sequence seen".into(),
                )));
            }
            Step::Failed(err) => {
                let _ = self.tx.send(Err(err)).await;
            }
            Step::CaughtUp | Step::ClientGone => {}
        }
    }

    /// Reads and delivers pages until a short page: everything up to `head` is
    /// then covered.
    async fn catch_up(&mut self, head: i64) -> Step {
        loop {
            let rows = match self
                .store
                .list_events(self.cursor, &self.filter, PAGE_ROWS)
                .await
            {
                Ok(rows) => rows,
                Err(err) => return Step::Failed(err),
            };
            let full = rows.len() as u64 == PAGE_ROWS;
            for row in rows {
                let sequence = row.sequence;
                if self.tx.send(Ok(row)).await.is_err() {
                    return Step::ClientGone;
                }
                self.cursor = sequence;
            }
            if !full {
                // Non-matching events up to `head` need no second look.
                self.cursor = self.cursor.max(head);
                return Step::CaughtUp;
            }
        }
    }
}

/// Where a reader stands after a step.
#[derive(Debug)]
enum Step {
    CaughtUp,
    ClientGone,
    ShuttingDown,
    Failed(Error),
}

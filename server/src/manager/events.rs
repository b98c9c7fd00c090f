//! The event log as the API sees it: WatchEvents, ListEvents, and purging events
//! past their retention (called by the reaper).

use tokio::sync::mpsc;

use super::Manager;
use super::sessions::page_size;
use crate::clock::micros_of;
use crate::domain::names::Ref;
use crate::error::{Error, Result};
use crate::store::entities::event;
use crate::store::{EventFilter, EventKind};

/// Default and largest ListEvents pages.
const DEFAULT_EVENTS_PAGE: u64 = 100;

impl Manager {
    /// Builds the filter of an event request: `session` resolved to its id (a
    /// display name must name a live session; an id is taken as is, so events of
    /// a purged session can still be read), and, for a principal limited to its
    /// own sessions, only the events of sessions it created.
    ///
    /// Errors: INVALID_ARGUMENT for a negative `after`; NOT_FOUND for an unknown
    /// display name; OUT_OF_RANGE when events after `after` were purged.
    async fn event_filter(
        &self,
        after: i64,
        session: Option<&Ref>,
        kinds: Vec<EventKind>,
    ) -> Result<EventFilter> {
        if after < 0 {
            return Err(Error::invalid(
                "after_sequence",
                format!("must not be negative (got {after}); 0 starts at the oldest kept event"),
            ));
        }
        let session_id = match session {
            None => None,
            Some(Ref::Id(id)) => Some(id.to_string()),
            Some(name @ Ref::Name(_)) => Some(self.load(name).await?.model.id),
        };
        crate::events::check_kept(&self.store, after).await?;
        // Read here, in the call's task: the WatchEvents reader runs in a task of
        // its own, without the caller.
        let creator = crate::auth::visible_creator();
        Ok(EventFilter {
            session_id,
            kinds,
            creator,
        })
    }

    /// WatchEvents: stored events after `after`, then live ones (see
    /// `crate::events`). The receiver ends with UNAVAILABLE when the server shuts
    /// down, and with DEADLINE_EXCEEDED after `max_duration` (zero: never) on the
    /// manager's clock.
    ///
    /// Errors: as [`list_events`](Self::list_events).
    pub async fn watch_events(
        &self,
        after: i64,
        session: Option<&Ref>,
        kinds: Vec<EventKind>,
        max_duration: std::time::Duration,
    ) -> Result<mpsc::Receiver<Result<event::Model>>> {
        let filter = self.event_filter(after, session, kinds).await?;
        let lifetime = crate::events::Lifetime {
            clock: self.clock().clone(),
            limit: max_duration,
        };
        Ok(crate::events::watch(
            self.store.clone(),
            after,
            filter,
            lifetime,
            self.shutdown.clone(),
        ))
    }

    /// ListEvents: up to `page_size` stored events after `after` (0 → 100, at
    /// most 1000), oldest first, and the sequence to continue after (the last
    /// returned, or `after` when none was).
    ///
    /// Errors: INVALID_ARGUMENT (negative `after` or `page_size`), NOT_FOUND
    /// (unknown session name), OUT_OF_RANGE (events after `after` were purged).
    pub async fn list_events(
        &self,
        after: i64,
        session: Option<&Ref>,
        page: i32,
    ) -> Result<(Vec<event::Model>, i64)> {
        let limit = page_size(page, DEFAULT_EVENTS_PAGE)?;
        let filter = self.event_filter(after, session, Vec::new()).await?;
        let rows = self.store.list_events(after, &filter, limit).await?;
        let last = rows.last().map_or(after, |row| row.sequence);
        Ok((rows, last))
    }

    /// Deletes events older than the event retention (`--event-retention`, 7 days
    /// by default) on the manager's clock. Idempotent and safe with several
    /// servers on one database. Returns how many events were deleted.
    pub async fn purge_expired_events(&self, now: crate::clock::Micros) -> Result<u64> {
        let cutoff = now.saturating_sub(micros_of(self.settings.event_retention));
        let deleted = self.store.purge_events(cutoff).await?;
        if deleted > 0 {
            tracing::info!(
                deleted,
                retention = %humantime::format_duration(self.settings.event_retention),
                "purged expired events"
            );
        }
        Ok(deleted)
    }
}

//! `corral.v1.EventService`: decode, call the manager, encode. The reading
//! itself (replay, then live, without a gap at the seam) is in `crate::events`.

use corral::pb;
use corral::pb::event_service_server::EventService;
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::event_to_pb;
use super::{Api, session_ref};
use crate::domain::names::Ref;
use crate::error::Error;
use crate::store::EventKind;

/// The EventService handlers.
#[derive(Clone, Debug)]
pub struct EventApi(pub Api);

/// The optional `session` field of an event request.
fn session_of(session: &str) -> Result<Option<Ref>, Status> {
    if session.is_empty() {
        Ok(None)
    } else {
        session_ref("session", session).map(Some)
    }
}

/// The `types` field: known, specified types only.
fn kinds_of(types: &[i32]) -> Result<Vec<EventKind>, Status> {
    types
        .iter()
        .map(|&value| {
            pb::event::Type::try_from(value)
                .ok()
                .filter(|t| *t != pb::event::Type::Unspecified)
                .and_then(|t| EventKind::parse(t.as_str_name()))
                .ok_or_else(|| {
                    Error::invalid(
                        "types",
                        format!("{value} is not an event type (e.g. SESSION_STATE_CHANGED)"),
                    )
                    .into()
                })
        })
        .collect()
}

#[tonic::async_trait]
impl EventService for EventApi {
    type WatchEventsStream = futures::stream::BoxStream<'static, Result<pb::Event, Status>>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let request = request.into_inner();
        let session = session_of(&request.session)?;
        let kinds = kinds_of(&request.types)?;
        let events = self
            .0
            .manager
            .watch_events(
                request.after_sequence,
                session.as_ref(),
                kinds,
                self.0.settings.stream_max_duration,
            )
            .await?;
        let stream = ReceiverStream::new(events).map(|item| match item {
            Ok(row) => Ok(event_to_pb(&row)),
            Err(err) => Err(Status::from(err)),
        });
        Ok(Response::new(stream.boxed()))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let request = request.into_inner();
        let session = session_of(&request.session)?;
        let (rows, last_sequence) = self
            .0
            .manager
            .list_events(request.after_sequence, session.as_ref(), request.page_size)
            .await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: rows.iter().map(event_to_pb).collect(),
            last_sequence,
        }))
    }
}

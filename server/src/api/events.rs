//! `corral.v1.EventService`.

use corral::pb;
use corral::pb::event_service_server::EventService;
use tonic::{Request, Response, Status};

use super::{Api, unimplemented};

/// The EventService handlers.
#[derive(Clone, Debug)]
pub struct EventApi(pub Api);

#[tonic::async_trait]
impl EventService for EventApi {
    type WatchEventsStream = futures::stream::BoxStream<'static, Result<pb::Event, Status>>;

    async fn watch_events(
        &self,
        _request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Err(unimplemented("EventService.WatchEvents"))
    }

    async fn list_events(
        &self,
        _request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        Err(unimplemented("EventService.ListEvents"))
    }
}

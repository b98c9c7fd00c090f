//! `corral.v1.SessionService`.

use std::collections::BTreeMap;
use std::time::Duration;

use corral::pb;
use corral::pb::session_service_server::SessionService;
use tonic::{Request, Response, Status};

use super::convert::{message_to_pb, session_to_pb};
use super::{Api, session_ref, worker_ref};
use crate::error::Error;
use crate::manager::{ListSessions, NewSession, NewWorker, SessionPatch, SourceSpec, WorkerSpec};

/// The SessionService handlers.
#[derive(Clone, Debug)]
pub struct SessionApi(pub Api);

/// Decodes a worker to create (CreateSession.workers, CreateWorker.worker).
pub(super) fn new_worker(worker: pb::Worker) -> NewWorker {
    let spec = match worker.spec {
        Some(pb::worker::Spec::Terminal(terminal)) => WorkerSpec::Terminal {
            command: terminal.command,
            env: terminal.env.into_iter().collect::<BTreeMap<_, _>>(),
        },
        Some(pb::worker::Spec::Agent(agent)) => WorkerSpec::Agent {
            profile: agent.profile,
            model: agent.model,
            extra_args: agent.extra_args,
        },
        None => WorkerSpec::Terminal {
            command: Vec::new(),
            env: BTreeMap::new(),
        },
    };
    NewWorker {
        display_name: worker.display_name,
        spec,
    }
}

impl SessionApi {
    async fn transition(
        &self,
        name: &str,
        etag: &str,
        action: crate::domain::state::Action,
    ) -> Result<Response<pb::Session>, Status> {
        let session = session_ref("name", name)?;
        let view = self
            .0
            .manager
            .session_action(&session, action, etag)
            .await?;
        Ok(Response::new(session_to_pb(&view)))
    }
}

#[tonic::async_trait]
impl SessionService for SessionApi {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let creator = request
            .extensions()
            .get::<crate::auth::Principal>()
            .map(|principal| principal.name.clone())
            .unwrap_or_default();
        let request = request.into_inner();
        let session = request
            .session
            .ok_or_else(|| Status::from(Error::invalid("session", "is required")))?;
        let source = match session.source {
            Some(pb::session::Source::Quick(quick)) => Some(SourceSpec::Quick {
                work_dir: quick.work_dir,
            }),
            Some(pb::session::Source::Worktree(tree)) => Some(SourceSpec::Worktree {
                repository: tree.repository,
                branch: tree.branch,
                base_ref: tree.base_ref,
            }),
            None => None,
        };
        let workers = request.workers.into_iter().map(new_worker).collect();
        let view = self
            .0
            .manager
            .create_session(NewSession {
                display_name: session.display_name,
                description: session.description,
                labels: session.labels.into_iter().collect(),
                source,
                workers,
                validate_only: request.validate_only,
                creator,
            })
            .await?;
        Ok(Response::new(session_to_pb(&view)))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let session = session_ref("name", &request.into_inner().name)?;
        let view = self.0.manager.get_session(&session).await?;
        Ok(Response::new(session_to_pb(&view)))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let request = request.into_inner();
        let (views, next, total) = self
            .0
            .manager
            .list_sessions(ListSessions {
                filter: request.filter,
                order_by: request.order_by,
                page_size: request.page_size,
                page_token: request.page_token,
                show_deleted: request.show_deleted,
            })
            .await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: views.iter().map(session_to_pb).collect(),
            next_page_token: next,
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        }))
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        let session = request
            .session
            .ok_or_else(|| Status::from(Error::invalid("session", "is required")))?;
        let target = session_ref("session.name", &session.name)?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let mut patch = SessionPatch {
            etag: session.etag.clone(),
            ..Default::default()
        };
        let all = paths.is_empty();
        if all || paths.iter().any(|p| p == "display_name") {
            patch.display_name = Some(session.display_name.clone());
        }
        if all || paths.iter().any(|p| p == "description") {
            patch.description = Some(session.description.clone());
        }
        if all || paths.iter().any(|p| p == "labels") {
            patch.labels = Some(session.labels.clone().into_iter().collect());
        }
        for path in &paths {
            match path.as_str() {
                "display_name" | "description" | "labels" => {}
                other => match other.strip_prefix("labels.") {
                    Some(key) => {
                        crate::domain::names::validate_label_key(key).map_err(Error::Invalid)?;
                        patch
                            .label_changes
                            .insert(key.to_owned(), session.labels.get(key).cloned());
                    }
                    None => {
                        return Err(Error::invalid(
                            "update_mask",
                            format!(
                                "{other:?} cannot be updated; updatable fields are display_name, description, labels and labels.<key>"
                            ),
                        )
                        .into());
                    }
                },
            }
        }
        let view = self.0.manager.update_session(&target, patch).await?;
        Ok(Response::new(session_to_pb(&view)))
    }

    async fn delete_session(
        &self,
        request: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        let session = session_ref("name", &request.name)?;
        let view = self
            .0
            .manager
            .delete_session(&session, &request.etag, request.delete_branch)
            .await?;
        Ok(Response::new(session_to_pb(&view)))
    }

    async fn start_session(
        &self,
        request: Request<pb::StartSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        self.transition(
            &request.name,
            &request.etag,
            crate::domain::state::Action::Start,
        )
        .await
    }

    async fn pause_session(
        &self,
        request: Request<pb::PauseSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        self.transition(
            &request.name,
            &request.etag,
            crate::domain::state::Action::Pause,
        )
        .await
    }

    async fn resume_session(
        &self,
        request: Request<pb::ResumeSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        self.transition(
            &request.name,
            &request.etag,
            crate::domain::state::Action::Resume,
        )
        .await
    }

    async fn stop_session(
        &self,
        request: Request<pb::StopSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        let session = session_ref("name", &request.name)?;
        let grace =
            (request.grace_ms > 0).then(|| Duration::from_millis(u64::from(request.grace_ms)));
        let view = self
            .0
            .manager
            .stop_session(&session, &request.etag, grace)
            .await?;
        Ok(Response::new(session_to_pb(&view)))
    }

    async fn restart_session(
        &self,
        request: Request<pb::RestartSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        self.transition(
            &request.name,
            &request.etag,
            crate::domain::state::Action::Restart,
        )
        .await
    }

    async fn archive_session(
        &self,
        request: Request<pb::ArchiveSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        self.transition(
            &request.name,
            &request.etag,
            crate::domain::state::Action::Archive,
        )
        .await
    }

    async fn reopen_session(
        &self,
        request: Request<pb::ReopenSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        self.transition(
            &request.name,
            &request.etag,
            crate::domain::state::Action::Reopen,
        )
        .await
    }

    async fn retry_session(
        &self,
        request: Request<pb::RetrySessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        self.transition(
            &request.name,
            &request.etag,
            crate::domain::state::Action::Retry,
        )
        .await
    }

    async fn discard_session(
        &self,
        request: Request<pb::DiscardSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        self.transition(
            &request.name,
            &request.etag,
            crate::domain::state::Action::Discard,
        )
        .await
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let request = request.into_inner();
        let session = session_ref("parent", &request.parent)?;
        let (messages, next, total) = self
            .0
            .manager
            .list_messages(&session, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages: messages.iter().map(message_to_pb).collect(),
            next_page_token: next,
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        }))
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let request = request.into_inner();
        let session = session_ref("name", &request.name)?;
        let worker = if request.worker.is_empty() {
            None
        } else if request.worker.contains('/') {
            let (worker_session, worker) = worker_ref("worker", &request.worker)?;
            if worker_session != session {
                return Err(Error::invalid(
                    "worker",
                    format!("{:?} is not a worker of {:?}", request.worker, request.name),
                )
                .into());
            }
            Some(worker)
        } else {
            Some(
                crate::domain::names::parse_worker_name(
                    "worker",
                    &format!("{}/workers/{}", request.name, request.worker),
                )
                .map_err(Error::Invalid)?
                .1,
            )
        };
        let message = self
            .0
            .manager
            .send_message(&session, worker.as_ref(), request.text)
            .await?;
        Ok(Response::new(pb::SendMessageResponse {
            message: Some(message_to_pb(&message)),
        }))
    }

    type ExportSessionStream =
        futures::stream::BoxStream<'static, Result<pb::ExportSessionResponse, Status>>;

    async fn export_session(
        &self,
        request: Request<pb::ExportSessionRequest>,
    ) -> Result<Response<Self::ExportSessionStream>, Status> {
        use crate::agent::export::Format;
        use futures::StreamExt;
        let request = request.into_inner();
        let session = session_ref("name", &request.name)?;
        let format = match pb::export_session_request::Format::try_from(request.format) {
            Ok(pb::export_session_request::Format::Json) => Format::Json,
            Ok(pb::export_session_request::Format::Csv) => Format::Csv,
            Ok(pb::export_session_request::Format::Markdown) => Format::Markdown,
            _ => {
                return Err(Error::invalid("format", "is required: JSON, CSV or MARKDOWN").into());
            }
        };
        let export = self.0.manager.export_session(&session, format).await?;
        let mut first = Some((
            export.format.content_type().to_owned(),
            export.filename.clone(),
        ));
        let stream =
            tokio_stream::wrappers::ReceiverStream::new(export.chunks).map(
                move |chunk| match chunk {
                    Ok(data) => {
                        let (content_type, filename) = first.take().unwrap_or_default();
                        Ok(pb::ExportSessionResponse {
                            data,
                            content_type,
                            filename,
                        })
                    }
                    Err(err) => Err(Status::from(err)),
                },
            );
        Ok(Response::new(stream.boxed()))
    }

    async fn search_messages(
        &self,
        request: Request<pb::SearchMessagesRequest>,
    ) -> Result<Response<pb::SearchMessagesResponse>, Status> {
        let request = request.into_inner();
        let (hits, next) = self
            .0
            .manager
            .search_messages(
                &request.query,
                &request.filter,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(pb::SearchMessagesResponse {
            results: hits
                .iter()
                .map(|hit| pb::search_messages_response::Result {
                    session: format!("sessions/{}", hit.session_id),
                    message: Some(message_to_pb(&hit.message())),
                    snippet: hit.snippet.clone(),
                    score: hit.score,
                })
                .collect(),
            next_page_token: next,
        }))
    }
}

//! `-o json`: response messages as proto3 JSON, through `prost-reflect`.
//!
//! A message is encoded with prost, decoded again as a [`DynamicMessage`] of the
//! descriptor pool built from [`corral::FILE_DESCRIPTOR_SET`], and serialized with
//! the proto3 JSON mapping:
//!
//! * field names as in the `.proto` files (`display_name`, not `displayName`);
//! * every field present, defaults included, so the shape does not depend on values
//!   (messages and oneofs that are unset are left out, as the mapping says);
//! * enums by name (`"ACTIVE"`), timestamps as RFC 3339 strings, bytes as base64;
//! * 64-bit integers as JSON numbers rather than strings (every int64 in this API
//!   is a count, an offset or a sequence far below 2^53, and numbers are what `jq`
//!   comparisons expect; proto3 JSON parsers accept both forms).
//!
//! Keys are written in field-number order for messages and sorted for maps
//! (`labels`, `env`), so the same message always prints the same text.

use std::sync::OnceLock;

use corral::pb;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use crate::error::CliError;

/// A generated message type and its full protobuf name (prost's generated code here
/// does not implement `prost::Name`, so the CLI names the types it prints).
pub trait ProtoMessage: prost::Message {
    /// The message's full name, e.g. `corral.v1.Session`.
    const FULL_NAME: &'static str;
}

macro_rules! proto_names {
    ($($ty:ty => $name:literal),* $(,)?) => {
        $(impl ProtoMessage for $ty {
            const FULL_NAME: &'static str = $name;
        })*
    };
}

proto_names! {
    pb::Session => "corral.v1.Session",
    pb::ListSessionsResponse => "corral.v1.ListSessionsResponse",
    pb::ListMessagesResponse => "corral.v1.ListMessagesResponse",
    pb::SendMessageResponse => "corral.v1.SendMessageResponse",
    pb::SearchMessagesResponse => "corral.v1.SearchMessagesResponse",
    pb::Worker => "corral.v1.Worker",
    pb::ListWorkersResponse => "corral.v1.ListWorkersResponse",
    pb::DeleteWorkerResponse => "corral.v1.DeleteWorkerResponse",
    pb::ListAgentProfilesResponse => "corral.v1.ListAgentProfilesResponse",
    pb::Checkpoint => "corral.v1.Checkpoint",
    pb::ListCheckpointsResponse => "corral.v1.ListCheckpointsResponse",
    pb::DeleteCheckpointResponse => "corral.v1.DeleteCheckpointResponse",
    pb::ResumeFromCheckpointResponse => "corral.v1.ResumeFromCheckpointResponse",
    pb::Event => "corral.v1.Event",
}

/// The descriptor pool of `corral.v1`, decoded once.
fn pool() -> Result<&'static DescriptorPool, CliError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(corral::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| CliError::Other(format!("cannot load the API descriptors: {e}")))
}

/// `message` as proto3 JSON, pretty-printed or on one line.
pub fn to_json<M: ProtoMessage>(message: &M, pretty: bool) -> Result<String, CliError> {
    let descriptor = pool()?.get_message_by_name(M::FULL_NAME).ok_or_else(|| {
        CliError::Other(format!(
            "message type {} is not in the descriptors",
            M::FULL_NAME
        ))
    })?;
    let dynamic = DynamicMessage::decode(descriptor.clone(), message.encode_to_vec().as_slice())
        .map_err(|e| CliError::Other(format!("cannot re-decode {}: {e}", M::FULL_NAME)))?;
    let options = prost_reflect::SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .stringify_64_bit_integers(false);
    let value = dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| CliError::Other(format!("cannot serialize {}: {e}", M::FULL_NAME)))?;
    let ordered = Ordered {
        value: &value,
        shape: Shape::Message(descriptor),
    };
    let text = if pretty {
        serde_json::to_string_pretty(&ordered)
    } else {
        serde_json::to_string(&ordered)
    };
    text.map_err(|e| CliError::Other(format!("cannot serialize {}: {e}", M::FULL_NAME)))
}

/// What a JSON value stands for, to know how to order the keys of an object.
#[derive(Clone)]
enum Shape {
    /// A message: keys in field-number order.
    Message(MessageDescriptor),
    /// A map field: keys sorted; values of this message type, if any.
    Map(Option<MessageDescriptor>),
    /// Anything else: objects get sorted keys.
    Plain,
}

impl Shape {
    /// The shape of the value of `field` (or of each element, for a list).
    fn of_field(field: &FieldDescriptor) -> Self {
        match field.kind() {
            Kind::Message(entry) if field.is_map() => match entry.map_entry_value_field().kind() {
                Kind::Message(value) => Self::Map(Some(value)),
                _ => Self::Map(None),
            },
            Kind::Message(message) => Self::Message(message),
            _ => Self::Plain,
        }
    }
}

/// A `serde_json::Value` serialized with its object keys in a stable, readable
/// order (see [`Shape`]).
struct Ordered<'a> {
    value: &'a Value,
    shape: Shape,
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Ordered {
                        value: item,
                        shape: self.shape.clone(),
                    })?;
                }
                seq.end()
            }
            Value::Object(object) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                match &self.shape {
                    Shape::Message(descriptor) => {
                        for field in descriptor.fields() {
                            if let Some(value) = object.get(field.name()) {
                                map.serialize_entry(
                                    field.name(),
                                    &Ordered {
                                        value,
                                        shape: Shape::of_field(&field),
                                    },
                                )?;
                            }
                        }
                        // Keys that are not fields (e.g. of well-known types with a
                        // special mapping) follow, sorted.
                        for (key, value) in object {
                            if descriptor.get_field_by_name(key).is_none() {
                                map.serialize_entry(
                                    key,
                                    &Ordered {
                                        value,
                                        shape: Shape::Plain,
                                    },
                                )?;
                            }
                        }
                    }
                    Shape::Map(values) => {
                        let shape = values.clone().map_or(Shape::Plain, Shape::Message);
                        for (key, value) in object {
                            map.serialize_entry(
                                key,
                                &Ordered {
                                    value,
                                    shape: shape.clone(),
                                },
                            )?;
                        }
                    }
                    Shape::Plain => {
                        for (key, value) in object {
                            map.serialize_entry(
                                key,
                                &Ordered {
                                    value,
                                    shape: Shape::Plain,
                                },
                            )?;
                        }
                    }
                }
                map.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> pb::Session {
        pb::Session {
            name: "sessions/0190".into(),
            id: "0190".into(),
            display_name: "demo".into(),
            labels: [("zeta", "1"), ("alpha", "2"), ("mid", "3")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            state: pb::session::State::Active as i32,
            available_actions: vec![
                pb::session::Action::Pause as i32,
                pb::session::Action::Stop as i32,
            ],
            create_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            message_count: 12,
            source: Some(pb::session::Source::Quick(pb::QuickSource {
                work_dir: "/tmp/x".into(),
            })),
            workers: vec![pb::Worker {
                display_name: "shell".into(),
                state: pb::worker::State::Running as i32,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn canonical_names_enums_and_timestamps() {
        let text = to_json(&session(), true).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["display_name"], "demo");
        assert_eq!(json["state"], "ACTIVE");
        assert_eq!(json["available_actions"][1], "STOP");
        assert_eq!(json["create_time"], "2023-11-14T22:13:20Z");
        assert_eq!(json["message_count"], 12);
        assert_eq!(json["quick"]["work_dir"], "/tmp/x");
        assert_eq!(json["workers"][0]["state"], "RUNNING");
        // Defaults are present; unset messages are not.
        assert_eq!(json["description"], "");
        assert_eq!(json["pause_count"], 0);
        assert!(json.get("stop_time").is_none());
    }

    #[test]
    fn keys_follow_field_numbers_and_maps_are_sorted() {
        let text = to_json(&session(), false).unwrap();
        let pos = |needle: &str| text.find(needle).unwrap();
        assert!(pos("\"name\"") < pos("\"id\""));
        assert!(pos("\"id\"") < pos("\"display_name\""));
        assert!(pos("\"display_name\"") < pos("\"labels\""));
        assert!(pos("\"alpha\"") < pos("\"mid\"") && pos("\"mid\"") < pos("\"zeta\""));
        assert!(pos("\"state\"") < pos("\"workers\""));
        assert_eq!(text, to_json(&session(), false).unwrap());
        assert!(!text.contains('\n'));
    }

    #[test]
    fn bytes_are_base64_and_empty_messages_are_objects() {
        let checkpoint = pb::Checkpoint {
            scrollback_tail: bytes::Bytes::from_static(b"hi"),
            ..Default::default()
        };
        let json: Value = serde_json::from_str(&to_json(&checkpoint, true).unwrap()).unwrap();
        assert_eq!(json["scrollback_tail"], "aGk=");
        assert_eq!(to_json(&pb::DeleteWorkerResponse {}, false).unwrap(), "{}");
    }

    #[test]
    fn every_named_type_is_in_the_pool() {
        fn check<M: ProtoMessage + Default>() {
            to_json(&M::default(), false).unwrap();
        }
        check::<pb::Session>();
        check::<pb::ListSessionsResponse>();
        check::<pb::ListMessagesResponse>();
        check::<pb::SendMessageResponse>();
        check::<pb::SearchMessagesResponse>();
        check::<pb::Worker>();
        check::<pb::ListWorkersResponse>();
        check::<pb::DeleteWorkerResponse>();
        check::<pb::ListAgentProfilesResponse>();
        check::<pb::Checkpoint>();
        check::<pb::ListCheckpointsResponse>();
        check::<pb::DeleteCheckpointResponse>();
        check::<pb::ResumeFromCheckpointResponse>();
        check::<pb::Event>();
    }
}

//! Every RPC of the server, read from the descriptor sets (so that a new RPC is
//! covered by the tests that iterate over them without anyone remembering to add
//! it), and a client that calls any of them with raw request bytes — including
//! bytes no generated client would produce (invalid UTF-8, truncated fields).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use tokio_stream::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Request, Status};

/// One RPC.
#[derive(Clone, Debug)]
pub struct Method {
    /// `corral.v1.SessionService/GetSession`.
    pub full_name: String,
    /// `/corral.v1.SessionService/GetSession`.
    pub path: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
    pub input: MessageDescriptor,
}

fn methods_of(encoded_set: &[u8], package: &str) -> Vec<Method> {
    let pool = DescriptorPool::decode(encoded_set).expect("a valid descriptor set");
    let mut methods = Vec::new();
    for service in pool.services().filter(|s| s.package_name() == package) {
        for method in service.methods() {
            methods.push(Method {
                full_name: format!("{}/{}", service.full_name(), method.name()),
                path: format!("/{}/{}", service.full_name(), method.name()),
                client_streaming: method.is_client_streaming(),
                server_streaming: method.is_server_streaming(),
                input: method.input(),
            });
        }
    }
    methods
}

/// Every RPC of the `corral.v1` services.
pub fn corral_methods() -> Vec<Method> {
    let methods = methods_of(corral::FILE_DESCRIPTOR_SET, "corral.v1");
    assert!(
        methods.len() > 30,
        "the descriptor set lists the corral.v1 RPCs"
    );
    methods
}

/// The RPCs of gRPC server reflection (v1 and v1alpha).
pub fn reflection_methods() -> Vec<Method> {
    let mut methods = methods_of(
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        "grpc.reflection.v1",
    );
    methods.extend(methods_of(
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        "grpc.reflection.v1alpha",
    ));
    assert_eq!(methods.len(), 2);
    methods
}

/// A codec of raw message bytes, both ways.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// What a call came to.
#[derive(Debug)]
pub struct Outcome {
    /// The final status: `Ok` when the call (or the part of the stream read) ended
    /// well.
    pub status: Result<(), Status>,
    /// Response messages received.
    pub messages: Vec<Bytes>,
    /// True when a response stream was still open after `patience` (and dropped).
    pub still_open: bool,
}

/// Calls `method` with the messages `requests` (one for unary and
/// server-streaming calls; client streams are half-closed after the last) and an
/// optional `authorization` header; reads response streams for at most
/// `patience`.
pub async fn call_raw(
    channel: &Channel,
    method: &Method,
    requests: Vec<Bytes>,
    authorization: Option<&str>,
    patience: Duration,
) -> Outcome {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let path: tonic::codegen::http::uri::PathAndQuery = method.path.parse().expect("a path");
    if let Err(err) = grpc.ready().await {
        return Outcome {
            status: Err(Status::unavailable(format!("not ready: {err}"))),
            messages: Vec::new(),
            still_open: false,
        };
    }
    fn authorized<T>(message: T, authorization: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("ASCII"));
        }
        request
    }
    let with_auth = |message| authorized(message, authorization);
    if !method.client_streaming && !method.server_streaming {
        let first = requests.into_iter().next().unwrap_or_default();
        let answer = grpc
            .unary::<Bytes, Bytes, _>(with_auth(first), path, RawCodec)
            .await;
        return match answer {
            Ok(response) => Outcome {
                status: Ok(()),
                messages: vec![response.into_inner()],
                still_open: false,
            },
            Err(status) => Outcome {
                status: Err(status),
                messages: Vec::new(),
                still_open: false,
            },
        };
    }
    let response = if method.client_streaming {
        let stream = tokio_stream::iter(requests);
        grpc.streaming(authorized(stream, authorization), path, RawCodec)
            .await
    } else {
        let first = requests.into_iter().next().unwrap_or_default();
        grpc.server_streaming(with_auth(first), path, RawCodec)
            .await
    };
    let mut stream = match response {
        Ok(response) => response.into_inner(),
        Err(status) => {
            return Outcome {
                status: Err(status),
                messages: Vec::new(),
                still_open: false,
            };
        }
    };
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(message))) => messages.push(message),
            Ok(Some(Err(status))) => {
                return Outcome {
                    status: Err(status),
                    messages,
                    still_open: false,
                };
            }
            Ok(None) => {
                return Outcome {
                    status: Ok(()),
                    messages,
                    still_open: false,
                };
            }
            Err(_) => {
                return Outcome {
                    status: Ok(()),
                    messages,
                    still_open: true,
                };
            }
        }
    }
}

/// Whether a message of this type can hold a string (itself or nested, up to
/// `depth` levels).
pub fn reaches_string(message: &MessageDescriptor, depth: usize) -> bool {
    message.fields().any(|field| match field.kind() {
        Kind::String => true,
        Kind::Message(inner) => depth > 0 && reaches_string(&inner, depth - 1),
        _ => false,
    })
}

/// A message of type `message` in which every field `value_of` has a value for
/// is set to it, and every message field that leads (within `depth` levels) to
/// such a field is filled the same way. Repeated fields get one element, maps one
/// entry; of a oneof, the last member filled wins.
pub fn fill(
    message: &MessageDescriptor,
    depth: usize,
    value_of: &dyn Fn(&FieldDescriptor) -> Option<Value>,
) -> DynamicMessage {
    let mut dynamic = DynamicMessage::new(message.clone());
    for field in message.fields() {
        let value = match field.kind() {
            Kind::Message(inner) if field.is_map() => {
                let key_field = inner.map_entry_key_field();
                let value_field = inner.map_entry_value_field();
                let (Some(key), Some(value)) = (value_of(&key_field), value_of(&value_field))
                else {
                    continue;
                };
                let Some(key) = map_key(key) else { continue };
                let mut map = std::collections::HashMap::new();
                map.insert(key, value);
                Some(Value::Map(map))
            }
            Kind::Message(inner) if depth > 0 => {
                let nested = fill(&inner, depth - 1, value_of);
                let filled = nested.fields().next().is_some();
                filled.then_some(Value::Message(nested))
            }
            Kind::Message(_) => None,
            _ => value_of(&field),
        };
        if let Some(value) = value {
            let value = if field.is_list() {
                Value::List(vec![value])
            } else {
                value
            };
            dynamic.set_field(&field, value);
        }
    }
    dynamic
}

fn map_key(value: Value) -> Option<prost_reflect::MapKey> {
    use prost_reflect::MapKey;
    Some(match value {
        Value::String(s) => MapKey::String(s),
        Value::I32(n) => MapKey::I32(n),
        Value::I64(n) => MapKey::I64(n),
        Value::U32(n) => MapKey::U32(n),
        Value::U64(n) => MapKey::U64(n),
        Value::Bool(b) => MapKey::Bool(b),
        _ => return None,
    })
}

/// The encoded bytes of a dynamic message.
pub fn encode(message: &DynamicMessage) -> Bytes {
    Bytes::from(message.encode_to_vec())
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_len_delimited(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// The wire bytes of a message of type `message` whose every string field (and
/// every string inside message fields, up to `depth` levels) holds `bytes` —
/// which need not be UTF-8: this is how to send what generated clients cannot.
pub fn strings_as_raw_bytes(message: &MessageDescriptor, depth: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in message.fields() {
        match field.kind() {
            Kind::String => put_len_delimited(&mut out, field.number(), bytes),
            Kind::Message(inner) if depth > 0 && reaches_string(&inner, depth - 1) => {
                let nested = strings_as_raw_bytes(&inner, depth - 1, bytes);
                put_len_delimited(&mut out, field.number(), &nested);
            }
            _ => {}
        }
    }
    out
}

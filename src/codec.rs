//! The codec of every generated Corral service and client: protobuf through prost
//! ([`tonic_prost::ProstCodec`]'s encoder and decoder), with a larger yield
//! threshold for streamed responses.
//!
//! tonic encodes the messages of a response stream into one buffer and hands it to
//! HTTP/2 once it holds `yield_threshold` bytes or the stream has nothing more
//! ready (`tonic::codec::BufferSettings`; the pattern of tonic's `codec_buffers`
//! example). Its default, 32 KiB, makes every 32 KiB `output` frame of
//! `WorkerService.Attach` its own HTTP/2 DATA frame and its own `writev` on the
//! socket, even when a client that fell behind has several frames queued. With
//! [`STREAM_YIELD_BYTES`] the frames already queued leave in one DATA frame; each
//! is still its own gRPC message of at most 32 KiB, and a frame that is alone is
//! sent at once (the threshold never waits for more).

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Most bytes of encoded messages a response stream gathers into one HTTP/2 DATA
/// frame (256 KiB: the eight 32 KiB output frames an Attach stream queues).
pub const STREAM_YIELD_BYTES: usize = 256 * 1024;

/// Initial size of an encode buffer, in bytes (tonic's default, 8 KiB; it grows to
/// what the messages need).
const ENCODE_BUFFER_BYTES: usize = 8 * 1024;

/// Protobuf codec of the generated code (`tonic_prost_build`'s `codec_path`):
/// encodes `T`, decodes `U`.
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        ProtoCodec {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(ENCODE_BUFFER_BYTES, STREAM_YIELD_BYTES))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::default())
    }
}

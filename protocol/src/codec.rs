//! CBOR encoding and decoding of frames, with the frame size limit applied.

use serde::Deserialize;

use crate::limits::{MAX_FRAME_BYTES, PROTOCOL_VERSION};
use crate::{ClientFrame, ProtocolError, ServerFrame};

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The frame's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The envelope names a version this side does not speak.
    #[error("unsupported envelope version {0}")]
    Version(u16),
    /// Not CBOR of the expected shape. `id` is the request id when at least
    /// the envelope could be read, so the answer can be attributed.
    #[error("malformed frame: {reason}")]
    Malformed {
        /// The request id, if it could be read.
        id: Option<u64>,
        /// What failed, without content.
        reason: String,
    },
}

impl DecodeError {
    /// The request id the error can be attributed to, if any.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            DecodeError::Malformed { id, .. } => *id,
            _ => None,
        }
    }

    /// The protocol error to send back for this decoding failure.
    pub fn to_protocol_error(&self) -> ProtocolError {
        match self {
            DecodeError::TooLarge { limit, .. } => ProtocolError::TooLarge {
                limit: *limit as u64,
            },
            DecodeError::Version(_) => ProtocolError::UnsupportedVersion {
                supported: PROTOCOL_VERSION,
            },
            DecodeError::Malformed { .. } => ProtocolError::Malformed {
                reason: "frame is not a valid CBOR request".into(),
            },
        }
    }
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("serialising to a Vec cannot fail");
    out
}

/// Encodes a client frame.
pub fn encode_client_frame(frame: &ClientFrame) -> Vec<u8> {
    encode(frame)
}

/// Encodes a server frame.
pub fn encode_server_frame(frame: &ServerFrame) -> Vec<u8> {
    encode(frame)
}

/// Just the envelope, to attribute an error when the body does not decode.
#[derive(Deserialize)]
struct EnvelopeHead {
    v: u16,
    id: u64,
}

/// Decodes a client frame, enforcing the size limit and the envelope version.
pub fn decode_client_frame(bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: MAX_FRAME_BYTES,
        });
    }
    match ciborium::from_reader::<ClientFrame, _>(bytes) {
        Ok(frame) if frame.v == PROTOCOL_VERSION => Ok(frame),
        Ok(frame) => Err(DecodeError::Version(frame.v)),
        Err(e) => {
            let head = ciborium::from_reader::<EnvelopeHead, _>(bytes).ok();
            match head {
                Some(h) if h.v != PROTOCOL_VERSION => Err(DecodeError::Version(h.v)),
                _ => Err(DecodeError::Malformed {
                    id: head.map(|h| h.id),
                    reason: cbor_reason(&e),
                }),
            }
        }
    }
}

/// Decodes a server frame (clients use this).
pub fn decode_server_frame(bytes: &[u8]) -> Result<ServerFrame, DecodeError> {
    ciborium::from_reader::<ServerFrame, _>(bytes).map_err(|e| DecodeError::Malformed {
        id: None,
        reason: cbor_reason(&e),
    })
}

fn cbor_reason<E: std::fmt::Debug>(e: &ciborium::de::Error<E>) -> String {
    match e {
        ciborium::de::Error::Io(_) => "truncated frame".into(),
        ciborium::de::Error::Syntax(off) => format!("CBOR syntax error at byte {off}"),
        ciborium::de::Error::Semantic(_, msg) => format!("unexpected shape: {msg}"),
        ciborium::de::Error::RecursionLimitExceeded => "nesting too deep".into(),
    }
}

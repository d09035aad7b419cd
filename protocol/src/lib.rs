//! The Cascade wire protocol.
//!
//! This crate is the contract between the relay (`cascade-server`) and every
//! client (`cascade-core`). It defines identifiers, limits, the CBOR frames that
//! travel over the device WebSocket, the JSON bodies of the plain-HTTP API,
//! the typed errors a client can act on, and a reader for the public MLS
//! framing header. It performs no IO and depends on no runtime.
//!
//! `docs/protocol.md` is the prose specification; the golden tests in
//! `tests/golden.rs` pin the encoding of every frame.

pub mod auth;
pub mod codec;
pub mod enrolment_code;
pub mod error;
pub mod frames;
pub mod http;
pub mod ids;
pub mod limits;
pub mod mls_header;
pub mod org_auth;
pub mod room;

pub use codec::{
    decode_client_frame, decode_server_frame, encode_client_frame, encode_server_frame, DecodeError,
};
pub use error::{ProtocolError, RateScope};
pub use frames::*;
pub use ids::{DeviceId, GroupId, IdError, OrgId, UserId};

//! The application content format carried inside MLS application messages.
//!
//! Two formats, told apart by their first octet ([`mapping::is_mimi`]):
//!
//! - the IETF MIMI content format ([`mimi`]), in which texts and the
//!   message features (replies, edits, deletes, reactions) are sent in a
//!   conversation whose members all read it ([`mapping`]);
//! - the `v1` envelope, a versioned CBOR map `{ "v": 1, "id": bytes(16),
//!   "ts": u64 ms, "kind": text, "body": kind-specific }`, in which the
//!   conversation's name and delivery receipts are still sent, and texts in
//!   conversations created before the change.
//!
//! Unknown kinds and parts decode to [`Body::Unsupported`] and are kept
//! and shown, never a crash.

pub mod mapping;
pub mod markdown;
pub mod mimi;
pub mod status;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// Version of the content envelope.
pub const CONTENT_VERSION: u8 = 1;

/// Longest text message, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The kind of a history line the device adds itself (never sent): e.g.
/// that it rejoined a conversation after falling out of step.
pub const SYSTEM_KIND: &str = "system";

/// A message id, unique per message. A message in the MIMI content format
/// has the 32-octet id the format derives from it ([`mimi::MimiId`]; its
/// first octet names the hash, `0x01`). A message in the `v1` envelope has
/// the 16 random octets its sender chose, held here after 16 zero octets: a
/// first octet `0x00`, which no MIMI id has, so the two never collide.
/// Stored and sent as its own octets (16 or 32); shown as 32 or 64 hex
/// digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId([u8; 32]);

impl MessageId {
    /// A fresh random `v1` id.
    pub fn random() -> Self {
        Self::v1(rand::random())
    }

    /// The id of a `v1` message.
    pub fn v1(id: [u8; 16]) -> Self {
        let mut all = [0u8; 32];
        all[16..].copy_from_slice(&id);
        Self(all)
    }

    /// The id of a MIMI message (`None` if its first octet is `0x00`,
    /// which no hash algorithm has).
    pub fn mimi(id: mimi::MimiId) -> Option<Self> {
        (id.0[0] != 0).then_some(Self(id.0))
    }

    /// The 16 octets of a `v1` id.
    pub fn as_v1(&self) -> Option<[u8; 16]> {
        (self.0[0] == 0).then(|| self.0[16..].try_into().expect("16 octets"))
    }

    /// Its own octets: 16 for a `v1` id, 32 for a MIMI one.
    pub fn as_bytes(&self) -> &[u8] {
        if self.0[0] == 0 {
            &self.0[16..]
        } else {
            &self.0
        }
    }

    /// Always 32 octets: a MIMI id as it is, a `v1` id after 16 zero
    /// octets (how a status report names it).
    pub fn as_32(&self) -> [u8; 32] {
        self.0
    }

    /// From [`MessageId::as_32`].
    pub fn from_32(b: [u8; 32]) -> Self {
        match b[0] {
            0 => Self::v1(b[16..].try_into().expect("16 octets")),
            _ => Self(b),
        }
    }

    /// From its own octets ([`MessageId::as_bytes`]); `None` for any other
    /// length, or 32 octets starting `0x00`.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        match b.len() {
            16 => Some(Self::v1(b.try_into().expect("16 octets"))),
            32 if b[0] != 0 => Some(Self(b.try_into().expect("32 octets"))),
            _ => None,
        }
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let b = serde_bytes::ByteBuf::deserialize(d)?;
        MessageId::from_bytes(&b)
            .ok_or_else(|| serde::de::Error::custom("a message id is 16 or 32 octets"))
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.as_bytes()))
    }
}

impl std::str::FromStr for MessageId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        hex::decode(s)
            .ok()
            .and_then(|b| MessageId::from_bytes(&b))
            .ok_or(CoreError::Invalid(crate::error::InvalidInput::MessageId))
    }
}

/// A person a text mentions: the octets `start..end` of the text show
/// them (as `@` and their name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mention {
    /// Who.
    pub user_id: cascade_protocol::UserId,
    /// Where the mention starts in the text, in octets of UTF-8.
    pub start: u32,
    /// Where it ends.
    pub end: u32,
}

impl Mention {
    /// Its octets of the text.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A file sent with a message: where its sealed form is and what opens it
/// ([`crate::attachments`], protocol §14.10). Stored with the message; the
/// key never leaves the store but to open the file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Where the sealed file is (the relay's blob endpoint).
    pub url: String,
    /// SHA-256 of the sealed file: its name at the relay.
    #[serde(with = "hex_32")]
    pub digest: [u8; 32],
    /// The file's own key (AES-256).
    #[serde(with = "hex_32")]
    pub key: [u8; 32],
    /// Octets of the sealed file.
    pub size: u64,
    /// Its media type, as the sender's device named it.
    pub media_type: String,
    /// Its file name, as the sender's device named it.
    pub name: String,
    /// What the sender wrote with it; may be empty.
    pub caption: String,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("digest", &hex::encode(self.digest))
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Attachment {
    /// Octets of the file itself.
    pub fn plain_size(&self) -> u64 {
        crate::attachments::plain_size(self.size)
    }

    /// What front ends show of it (never the key).
    pub fn info(&self) -> AttachmentInfo {
        AttachmentInfo {
            name: self.name.clone(),
            media_type: self.media_type.clone(),
            size: self.plain_size(),
        }
    }
}

/// What front ends show of an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// Its file name, as the sender's device named it.
    pub name: String,
    /// Its media type, as the sender's device named it.
    pub media_type: String,
    /// Octets of the file.
    pub size: u64,
}

/// 32 octets as 64 hex digits, in JSON (the store's column).
mod hex_32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or_else(|| serde::de::Error::custom("32 octets in hex"))
    }
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Plain text.
    Text {
        /// The text.
        text: String,
        /// The message it answers (MIMI only).
        in_reply_to: Option<MessageId>,
        /// The people it mentions (MIMI only).
        mentions: Vec<Mention>,
    },
    /// A new version of the sender's own text (MIMI only).
    Edit {
        /// The message changed.
        target: MessageId,
        /// Its new text.
        text: String,
        /// The people the new text mentions.
        mentions: Vec<Mention>,
    },
    /// Deletes a message for everyone (by its sender or a conversation
    /// admin), or takes back the sender's reaction (MIMI only).
    Delete {
        /// The message or reaction deleted.
        target: MessageId,
    },
    /// A file, sealed and kept at the relay (MIMI only: an external part).
    Attachment(Box<Attachment>),
    /// A reaction to a message (MIMI only).
    Reaction {
        /// The message reacted to.
        target: MessageId,
        /// The emoji.
        emoji: String,
    },
    /// Group metadata, sent by a member after creating the group or adding
    /// members, so that everyone (including new members) knows the name.
    GroupMeta {
        /// The conversation's name.
        name: String,
    },
    /// Delivery receipt: these messages reached one of the sender's
    /// devices. Sent automatically, never shown in history.
    Receipt {
        /// The messages received.
        delivered: Vec<MessageId>,
    },
    /// What became of messages, for their senders and the reporting
    /// user's other devices (MIMI only; [`status`]). Never shown in
    /// history.
    Status {
        /// Each message with its status.
        entries: Vec<(MessageId, status::Status)>,
    },
    /// A kind this client does not know; kept so it can be shown.
    Unsupported {
        /// The kind string.
        kind: String,
    },
}

/// One application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The sender-chosen id; receivers drop duplicates by it.
    pub id: MessageId,
    /// Sender's clock when sent, milliseconds since the Unix epoch.
    pub sent_at: u64,
    /// What it says.
    pub body: Body,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    id: MessageId,
    ts: u64,
    kind: String,
    body: ciborium::Value,
}

#[derive(Serialize, Deserialize)]
struct TextBody {
    text: String,
}

#[derive(Serialize, Deserialize)]
struct ReceiptBody {
    delivered: Vec<MessageId>,
}

#[derive(Serialize, Deserialize)]
struct MetaBody {
    name: String,
}

fn to_value<T: Serialize>(t: &T) -> ciborium::Value {
    ciborium::Value::serialized(t).expect("plain structs serialise")
}

impl Content {
    /// Encodes to the CBOR wire format.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, body) = match &self.body {
            // v1 cannot carry a reply: the engine writes one only as MIMI.
            Body::Text { text, .. } => ("text", to_value(&TextBody { text: text.clone() })),
            Body::GroupMeta { name } => ("group_meta", to_value(&MetaBody { name: name.clone() })),
            Body::Receipt { delivered } => (
                "receipt",
                to_value(&ReceiptBody {
                    delivered: delivered.clone(),
                }),
            ),
            Body::Unsupported { kind } => (kind.as_str(), ciborium::Value::Null),
            // Nor the message features (never written so: a receiver would
            // show them as unsupported).
            Body::Edit { .. } => ("edit", ciborium::Value::Null),
            Body::Delete { .. } => ("delete", ciborium::Value::Null),
            Body::Reaction { .. } => ("reaction", ciborium::Value::Null),
            Body::Status { .. } => ("status", ciborium::Value::Null),
            Body::Attachment(_) => ("attachment", ciborium::Value::Null),
        };
        let wire = Wire {
            v: CONTENT_VERSION,
            id: self.id,
            ts: self.sent_at,
            kind: kind.to_owned(),
            body,
        };
        let mut out = Vec::new();
        ciborium::into_writer(&wire, &mut out).expect("serialising to a Vec cannot fail");
        out
    }

    /// Decodes the CBOR wire format. An unknown kind (or a known kind with a
    /// body this version cannot read) yields [`Body::Unsupported`]; only a
    /// missing envelope is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let wire: Wire =
            ciborium::from_reader(bytes).map_err(|_| CoreError::Decode("a message's content"))?;
        let unsupported = || Body::Unsupported {
            kind: wire.kind.clone(),
        };
        let body = match wire.kind.as_str() {
            "text" => wire
                .body
                .deserialized::<TextBody>()
                .map(|b| Body::Text {
                    text: b.text,
                    in_reply_to: None,
                    mentions: Vec::new(),
                })
                .unwrap_or_else(|_| unsupported()),
            "group_meta" => wire
                .body
                .deserialized::<MetaBody>()
                .map(|b| Body::GroupMeta { name: b.name })
                .unwrap_or_else(|_| unsupported()),
            "receipt" => wire
                .body
                .deserialized::<ReceiptBody>()
                .map(|b| Body::Receipt {
                    delivered: b.delivered,
                })
                .unwrap_or_else(|_| unsupported()),
            _ => unsupported(),
        };
        Ok(Content {
            id: wire.id,
            sent_at: wire.ts,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_is_pinned() {
        let c = Content {
            id: MessageId::v1([7; 16]),
            sent_at: 1_700_000_000_000,
            body: Body::Text {
                text: "hello".into(),
                in_reply_to: None,
                mentions: Vec::new(),
            },
        };
        let bytes = c.encode();
        assert_eq!(
            hex::encode(&bytes),
            "a561760162696450070707070707070707070707070707076274731b0000018bcfe56800646b696e6464746578746462\
6f6479a164746578746568656c6c6f"
        );
        assert_eq!(Content::decode(&bytes).expect("decodes"), c);
    }

    #[test]
    fn receipt_round_trips_and_is_pinned() {
        let c = Content {
            id: MessageId::v1([9; 16]),
            sent_at: 1_700_000_000_000,
            body: Body::Receipt {
                delivered: vec![MessageId::v1([1; 16]), MessageId::v1([2; 16])],
            },
        };
        let bytes = c.encode();
        assert_eq!(hex::encode(&bytes), RECEIPT_GOLDEN);
        assert_eq!(Content::decode(&bytes).expect("decodes"), c);
    }

    /// `{v: 1, id, ts, kind: "receipt", body: {delivered: [id, id]}}`.
    const RECEIPT_GOLDEN: &str =
        "a561760162696450090909090909090909090909090909096274731b0000018bcfe5680064\
6b696e64677265636569707464626f6479a16964656c6976657265648250010101010101010101010101010101015002\
020202020202020202020202020202";

    /// A `v1` id and a MIMI id: their own octets (16 and 32), shown as
    /// 32 and 64 hex digits, read back from either; 32 octets starting
    /// `0x00` (a `v1` id's disguise) and other lengths are no id.
    #[test]
    fn v1_and_mimi_ids_keep_their_own_octets() {
        let v1 = MessageId::v1([7; 16]);
        assert_eq!(v1.as_bytes(), [7; 16]);
        assert_eq!(v1.as_v1(), Some([7; 16]));
        assert_eq!(v1.to_string(), "07".repeat(16));
        let mut octets = [9u8; 32];
        octets[0] = 0x01;
        let mimi = MessageId::mimi(mimi::MimiId(octets)).expect("a MIMI id");
        assert_eq!(mimi.as_bytes(), octets);
        assert_eq!(mimi.as_v1(), None);
        assert_eq!(mimi.to_string().len(), 64);
        for id in [v1, mimi] {
            assert_eq!(id.to_string().parse::<MessageId>().expect("parses"), id);
            assert_eq!(MessageId::from_bytes(id.as_bytes()), Some(id));
            let mut cbor = Vec::new();
            ciborium::into_writer(&id, &mut cbor).expect("writes");
            assert_eq!(
                ciborium::from_reader::<MessageId, _>(cbor.as_slice()).expect("reads"),
                id
            );
        }
        assert_eq!(MessageId::mimi(mimi::MimiId([0; 32])), None);
        assert_eq!(MessageId::from_bytes(&[0; 32]), None);
        assert_eq!(MessageId::from_bytes(&[1; 31]), None);
        assert!("00".repeat(32).parse::<MessageId>().is_err());
        assert!("07".repeat(17).parse::<MessageId>().is_err());
    }

    #[test]
    fn unknown_kinds_are_kept_as_unsupported() {
        let c = Content {
            id: MessageId::v1([1; 16]),
            sent_at: 5,
            body: Body::Unsupported {
                kind: "hologram".into(),
            },
        };
        let back = Content::decode(&c.encode()).expect("decodes");
        assert_eq!(
            back.body,
            Body::Unsupported {
                kind: "hologram".into()
            }
        );
        assert!(Content::decode(b"\xff").is_err());
    }
}

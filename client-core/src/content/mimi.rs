//! The IETF MIMI content format (draft-ietf-mimi-content-08), from the
//! draft: a CBOR array of seven fields (salt, `replaces`, `topicId`,
//! `expires`, `inReplyTo`, extensions, and a body of nested parts), and the
//! 32-octet message id derived from it.
//!
//! [`MimiContent::encode`] writes the draft's deterministic encoding
//! (RFC 8949 §4.2.1: shortest heads, definite lengths, the extensions map
//! sorted by its encoded keys). [`MimiContent::decode`] reads any
//! well-formed encoding and refuses what the draft's security
//! considerations call nonsensical (an unknown hash algorithm in a message
//! id, a `topicId` over 4096 octets, parts nested more than 4 deep or more
//! than 1024 of them, an unknown part semantics, extension keys or values
//! outside the data model): a typed [`MimiError`] says which. An unknown
//! disposition, content type or extension is kept, never an error.
//!
//! A message id is computed over the bytes as received
//! ([`message_id`]), never over a re-encoding, so that every member derives
//! the same id from the same message. The draft's own examples are the
//! golden tests (`client-core/tests/mimi.rs`).

use ciborium::Value;
use sha2::{Digest as _, Sha256};

/// The hash algorithm octet of a message id: SHA-256 in the IANA Named
/// Information Hash Algorithm registry. The only one the draft defines.
pub const HASH_SHA256: u8 = 0x01;

/// The most octets a `topicId` has.
pub const MAX_TOPIC_ID: usize = 4096;

/// The deepest nesting of body parts: the body itself is level 1.
pub const MAX_PART_DEPTH: usize = 4;

/// The most body parts in one message, at every level together.
pub const MAX_PARTS: usize = 1024;

/// The deepest nesting of tags, maps and arrays in the extensions: the
/// extensions map itself is level 1.
pub const MAX_EXTENSION_DEPTH: usize = 4;

/// The largest integer map key (and its negation the smallest): what a
/// double holds exactly, 2^53 - 1.
pub const MAX_SAFE_INTEGER: i128 = (1 << 53) - 1;

/// Extension key of the sender's URI.
pub const EXT_SENDER_URI: i64 = 1;

/// Extension key of the room's URI.
pub const EXT_ROOM_URI: i64 = 2;

/// A message id: the hash algorithm's octet, then the first 31 octets of
/// the hash ([`message_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MimiId(pub [u8; 32]);

impl MimiId {
    /// The hash algorithm octet (`0x01`, SHA-256).
    pub fn hash_alg(&self) -> u8 {
        self.0[0]
    }
}

impl std::fmt::Display for MimiId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// When a message should be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    /// This many seconds after the receiver reads it.
    AfterReading(u32),
    /// At this time, seconds since the Unix epoch.
    At(u32),
}

/// An extension's map key: an integer (positive ones are registered by
/// IANA, negative ones private) or a text of 1 to 255 octets (private).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExtensionKey {
    /// An integer key, within ±(2^53 - 1).
    Int(i64),
    /// A text key.
    Text(String),
}

impl ExtensionKey {
    fn to_value(&self) -> Value {
        match self {
            ExtensionKey::Int(i) => Value::Integer((*i).into()),
            ExtensionKey::Text(t) => Value::Text(t.clone()),
        }
    }
}

/// How a part is meant to be shown. Values the draft does not define are
/// kept (and shown as [`Disposition::Render`] would be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disposition(pub u8);

impl Disposition {
    /// No particular intent.
    pub const UNSPECIFIED: Disposition = Disposition(0);
    /// Render by local policy: an ordinary message.
    pub const RENDER: Disposition = Disposition(1);
    /// A reaction to another message (an emoji, usually).
    pub const REACTION: Disposition = Disposition(2);
    /// A profile.
    pub const PROFILE: Disposition = Disposition(3);
    /// Shown inline in the conversation.
    pub const INLINE: Disposition = Disposition(4);
    /// An icon.
    pub const ICON: Disposition = Disposition(5);
    /// Downloaded rather than shown at once.
    pub const ATTACHMENT: Disposition = Disposition(6);
    /// A multimedia session, or a link to join one.
    pub const SESSION: Disposition = Disposition(7);
    /// A sender-made preview (of a link, say).
    pub const PREVIEW: Disposition = Disposition(8);
}

/// How the parts of a multipart relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartSemantics {
    /// Alternatives: the receiver picks one (like `multipart/alternative`).
    ChooseOne,
    /// One entity: all or none (like `multipart/related`).
    SingleUnit,
    /// Each on its own, as many as the receiver can (like
    /// `multipart/mixed`).
    ProcessAll,
}

impl PartSemantics {
    fn code(self) -> u8 {
        match self {
            PartSemantics::ChooseOne => 0,
            PartSemantics::SingleUnit => 1,
            PartSemantics::ProcessAll => 2,
        }
    }
}

/// Content kept elsewhere: where, and what is needed to decrypt and check
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPart {
    /// Its media type.
    pub content_type: String,
    /// Where it can be fetched.
    pub url: String,
    /// After this (seconds since the Unix epoch) it is gone; 0: never.
    pub expires: u32,
    /// Its size in octets; 0: not given.
    pub size: u64,
    /// The IANA AEAD algorithm it is encrypted with; 0: not encrypted.
    pub enc_alg: u16,
    /// The AEAD key.
    pub key: Vec<u8>,
    /// The AEAD nonce.
    pub nonce: Vec<u8>,
    /// The AEAD additional data.
    pub aad: Vec<u8>,
    /// The IANA Named Information hash algorithm of `content_hash`.
    pub hash_alg: u8,
    /// The hash of what is at `url`.
    pub content_hash: Vec<u8>,
    /// A description; may be empty.
    pub description: String,
    /// A suggested file name; may be empty.
    pub filename: String,
}

/// What a part holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Nothing: a delete, or an unlike.
    Null,
    /// Content of one media type, inline.
    Single {
        /// The media type, with its parameters.
        content_type: String,
        /// The content.
        content: Vec<u8>,
    },
    /// Content kept elsewhere.
    External(Box<ExternalPart>),
    /// Two or more parts.
    Multi {
        /// How they relate.
        semantics: PartSemantics,
        /// The parts, at least two.
        parts: Vec<NestedPart>,
    },
}

/// A body part with its disposition and language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedPart {
    /// How it is meant to be shown.
    pub disposition: Disposition,
    /// Empty, or comma-separated RFC 5646 language tags.
    pub language: String,
    /// What it holds.
    pub part: Part,
}

impl NestedPart {
    /// A part of one media type.
    pub fn single(disposition: Disposition, content_type: &str, content: Vec<u8>) -> NestedPart {
        NestedPart {
            disposition,
            language: String::new(),
            part: Part::Single {
                content_type: content_type.to_owned(),
                content,
            },
        }
    }

    /// An empty part (a delete or an unlike).
    pub fn null() -> NestedPart {
        NestedPart {
            disposition: Disposition::RENDER,
            language: String::new(),
            part: Part::Null,
        }
    }
}

/// One MIMI content message. (Not `Eq`: an extension may hold a float.)
#[derive(Debug, Clone, PartialEq)]
pub struct MimiContent {
    /// 16 random octets, unique to the message.
    pub salt: [u8; 16],
    /// The message this one edits or deletes (the id of its first
    /// version).
    pub replaces: Option<MimiId>,
    /// Groups messages into a topic; empty: none.
    pub topic_id: Vec<u8>,
    /// When the message should be deleted.
    pub expires: Option<Expiration>,
    /// The message this one answers or reacts to.
    pub in_reply_to: Option<MimiId>,
    /// The extensions, keys unique, in any order (encoded sorted; decoded
    /// in the sorted order, with every map inside them sorted too).
    pub extensions: Vec<(ExtensionKey, Value)>,
    /// The body.
    pub body: NestedPart,
}

/// Why bytes are not a MIMI content message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MimiError {
    /// Not well-formed CBOR, or bytes after the message.
    #[error("not a CBOR data item")]
    Cbor,
    /// A field is missing, of the wrong type or size; names which.
    #[error("the {0} field is malformed")]
    Field(&'static str),
    /// A message id whose first octet is not a known hash algorithm.
    #[error("a message id names unknown hash algorithm {0}")]
    UnknownHashAlg(u8),
    /// A `topicId` over [`MAX_TOPIC_ID`] octets.
    #[error("the topic id is longer than {MAX_TOPIC_ID} octets")]
    TopicTooLong,
    /// Parts nested deeper than [`MAX_PART_DEPTH`].
    #[error("body parts are nested more than {MAX_PART_DEPTH} deep")]
    TooDeep,
    /// More than [`MAX_PARTS`] parts.
    #[error("more than {MAX_PARTS} body parts")]
    TooManyParts,
    /// A cardinality other than null, single, external and multi.
    #[error("unknown part cardinality {0}")]
    UnknownCardinality(u64),
    /// A part semantics other than chooseOne, singleUnit and processAll.
    #[error("unknown part semantics {0}")]
    UnknownSemantics(u64),
    /// An extension key or value outside the data model (a key that is not
    /// an integer within ±(2^53 - 1) or a text of 1 to 255 octets, the same
    /// key twice, nesting deeper than [`MAX_EXTENSION_DEPTH`], a map key
    /// inside a value that is not an integer, text or byte string, a map
    /// inside a value with the same key twice, a bignum tag around anything
    /// but a byte string).
    #[error("an extension is outside the data model: {0}")]
    Extension(&'static str),
}

/// The message id of the message whose bytes (as sent) are `message`, sent
/// by `sender_uri` in `room_uri`: SHA-256 over the two URIs, each after its
/// length as a big-endian u16, the message, and its salt again; the hash
/// algorithm's octet, then the first 31 octets of the hash. A URI over
/// 65,535 octets has no id (`None`).
pub fn message_id(
    sender_uri: &str,
    room_uri: &str,
    message: &[u8],
    salt: &[u8; 16],
) -> Option<MimiId> {
    let sender_len = u16::try_from(sender_uri.len()).ok()?;
    let room_len = u16::try_from(room_uri.len()).ok()?;
    let mut h = Sha256::new();
    h.update(sender_len.to_be_bytes());
    h.update(sender_uri.as_bytes());
    h.update(room_len.to_be_bytes());
    h.update(room_uri.as_bytes());
    h.update(message);
    h.update(salt);
    let hash = h.finalize();
    let mut id = [0u8; 32];
    id[0] = HASH_SHA256;
    id[1..].copy_from_slice(&hash[..31]);
    Some(MimiId(id))
}

impl MimiContent {
    /// A message with a fresh random salt and nothing but `body`.
    pub fn new(body: NestedPart) -> MimiContent {
        MimiContent {
            salt: rand::random(),
            replaces: None,
            topic_id: Vec::new(),
            expires: None,
            in_reply_to: None,
            extensions: Vec::new(),
            body,
        }
    }

    /// The text value of an extension with integer key `key`, if any.
    pub fn text_extension(&self, key: i64) -> Option<&str> {
        self.extensions.iter().find_map(|(k, v)| match (k, v) {
            (ExtensionKey::Int(i), Value::Text(t)) if *i == key => Some(t.as_str()),
            _ => None,
        })
    }

    /// The deterministic encoding (draft §"Encoding restrictions").
    pub fn encode(&self) -> Vec<u8> {
        let id = |i: &Option<MimiId>| i.map_or(Value::Null, |i| Value::Bytes(i.0.to_vec()));
        let expires = match self.expires {
            None => Value::Null,
            Some(Expiration::AfterReading(t)) => {
                Value::Array(vec![Value::Bool(true), Value::Integer(t.into())])
            }
            Some(Expiration::At(t)) => {
                Value::Array(vec![Value::Bool(false), Value::Integer(t.into())])
            }
        };
        let mut extensions: Vec<(Vec<u8>, Value, Value)> = self
            .extensions
            .iter()
            .map(|(k, v)| {
                let k = k.to_value();
                (to_bytes(&k), k, sorted(v))
            })
            .collect();
        // RFC 8949 §4.2.1: keys in the bytewise order of their encodings.
        extensions.sort_by(|a, b| a.0.cmp(&b.0));
        let message = Value::Array(vec![
            Value::Bytes(self.salt.to_vec()),
            id(&self.replaces),
            Value::Bytes(self.topic_id.clone()),
            expires,
            id(&self.in_reply_to),
            Value::Map(extensions.into_iter().map(|(_, k, v)| (k, v)).collect()),
            part_value(&self.body),
        ]);
        to_bytes(&message)
    }

    /// Reads a message (any well-formed CBOR encoding of one); see the
    /// module's comment for what is refused.
    pub fn decode(bytes: &[u8]) -> Result<MimiContent, MimiError> {
        let mut reader = bytes;
        let value: Value = ciborium::from_reader(&mut reader).map_err(|_| MimiError::Cbor)?;
        if !reader.is_empty() {
            return Err(MimiError::Cbor);
        }
        let Value::Array(fields) = value else {
            return Err(MimiError::Field("message"));
        };
        let [salt, replaces, topic_id, expires, in_reply_to, extensions, body]: [Value; 7] =
            fields.try_into().map_err(|_| MimiError::Field("message"))?;
        let salt = match salt {
            Value::Bytes(b) => b.try_into().map_err(|_| MimiError::Field("salt"))?,
            _ => return Err(MimiError::Field("salt")),
        };
        let topic_id = match topic_id {
            Value::Bytes(b) if b.len() > MAX_TOPIC_ID => return Err(MimiError::TopicTooLong),
            Value::Bytes(b) => b,
            _ => return Err(MimiError::Field("topicId")),
        };
        let expires = match expires {
            Value::Null => None,
            Value::Array(a) => match a.as_slice() {
                [Value::Bool(relative), Value::Integer(t)] => {
                    let t = u32::try_from(*t).map_err(|_| MimiError::Field("expires"))?;
                    Some(if *relative {
                        Expiration::AfterReading(t)
                    } else {
                        Expiration::At(t)
                    })
                }
                _ => return Err(MimiError::Field("expires")),
            },
            _ => return Err(MimiError::Field("expires")),
        };
        let mut count = 0;
        Ok(MimiContent {
            salt,
            replaces: optional_id(replaces, "replaces")?,
            topic_id,
            expires,
            in_reply_to: optional_id(in_reply_to, "inReplyTo")?,
            extensions: read_extensions(extensions)?,
            body: read_part(body, 1, &mut count)?,
        })
    }
}

fn to_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// `v` in the deterministic form (RFC 8949 §4.2.1), at every depth: every
/// map's keys in the bytewise order of their encodings, a bignum (tag 2 or
/// 3) that fits an integer as that integer and any other without leading
/// zero octets, and a NaN as the one quiet NaN the draft permits. Applied
/// to what is decoded too, so that a value equals itself decoded again.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        Value::Tag(t @ (2 | 3), inner) if matches!(**inner, Value::Bytes(_)) => {
            let Value::Bytes(b) = &**inner else {
                unreachable!("matched above")
            };
            let digits: Vec<u8> = b.iter().copied().skip_while(|d| *d == 0).collect();
            let n = digits
                .iter()
                .try_fold(0u64, |n, d| Some(n.checked_mul(256)? | u64::from(*d)));
            match (t, n) {
                (2, Some(n)) => Value::Integer(n.into()),
                (_, Some(n)) => {
                    // -1 - n, down to -2^64: what a CBOR integer holds.
                    Value::Integer((-1 - i128::from(n)).try_into().expect("in CBOR's range"))
                }
                _ => Value::Tag(*t, Box::new(Value::Bytes(digits))),
            }
        }
        Value::Tag(t, inner) => Value::Tag(*t, Box::new(sorted(inner))),
        Value::Map(m) => {
            let mut entries: Vec<(Vec<u8>, Value, Value)> = m
                .iter()
                .map(|(k, v)| {
                    let k = sorted(k);
                    (to_bytes(&k), k, sorted(v))
                })
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Map(entries.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        Value::Float(f) if f.is_nan() => Value::Float(f64::NAN),
        other => other.clone(),
    }
}

/// Whether a map at any depth of `v` (in the deterministic form) has the
/// same key twice: not valid CBOR (RFC 8949 §5.6).
fn has_duplicate_key(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(has_duplicate_key),
        Value::Tag(_, inner) => has_duplicate_key(inner),
        Value::Map(m) => {
            m.windows(2).any(|w| to_bytes(&w[0].0) == to_bytes(&w[1].0))
                || m.iter()
                    .any(|(k, v)| has_duplicate_key(k) || has_duplicate_key(v))
        }
        _ => false,
    }
}

fn part_value(p: &NestedPart) -> Value {
    let mut fields = vec![
        Value::Integer(p.disposition.0.into()),
        Value::Text(p.language.clone()),
    ];
    match &p.part {
        Part::Null => fields.push(Value::Integer(0.into())),
        Part::Single {
            content_type,
            content,
        } => fields.extend([
            Value::Integer(1.into()),
            Value::Text(content_type.clone()),
            Value::Bytes(content.clone()),
        ]),
        Part::External(e) => fields.extend([
            Value::Integer(2.into()),
            Value::Text(e.content_type.clone()),
            Value::Text(e.url.clone()),
            Value::Integer(e.expires.into()),
            Value::Integer(e.size.into()),
            Value::Integer(e.enc_alg.into()),
            Value::Bytes(e.key.clone()),
            Value::Bytes(e.nonce.clone()),
            Value::Bytes(e.aad.clone()),
            Value::Integer(e.hash_alg.into()),
            Value::Bytes(e.content_hash.clone()),
            Value::Text(e.description.clone()),
            Value::Text(e.filename.clone()),
        ]),
        Part::Multi { semantics, parts } => fields.extend([
            Value::Integer(3.into()),
            Value::Integer(semantics.code().into()),
            Value::Array(parts.iter().map(part_value).collect()),
        ]),
    }
    Value::Array(fields)
}

fn optional_id(v: Value, field: &'static str) -> Result<Option<MimiId>, MimiError> {
    match v {
        Value::Null => Ok(None),
        Value::Bytes(b) => {
            let id: [u8; 32] = b.try_into().map_err(|_| MimiError::Field(field))?;
            if id[0] != HASH_SHA256 {
                return Err(MimiError::UnknownHashAlg(id[0]));
            }
            Ok(Some(MimiId(id)))
        }
        _ => Err(MimiError::Field(field)),
    }
}

fn read_extensions(v: Value) -> Result<Vec<(ExtensionKey, Value)>, MimiError> {
    let Value::Map(entries) = v else {
        return Err(MimiError::Field("extensions"));
    };
    let mut out: Vec<(ExtensionKey, Value)> = Vec::with_capacity(entries.len());
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    for (k, v) in entries {
        let key = match k {
            Value::Integer(i) => {
                let i = i128::from(i);
                if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) {
                    return Err(MimiError::Extension("an integer key beyond 2^53 - 1"));
                }
                ExtensionKey::Int(i as i64)
            }
            Value::Text(t) if (1..=255).contains(&t.len()) => ExtensionKey::Text(t),
            _ => {
                return Err(MimiError::Extension(
                    "a key that is not an integer or a short text",
                ))
            }
        };
        if !seen.insert(key.clone()) {
            return Err(MimiError::Extension("the same key twice"));
        }
        check_extension_value(&v, 2)?;
        if matches!(key, ExtensionKey::Int(EXT_SENDER_URI | EXT_ROOM_URI))
            && !matches!(v, Value::Text(_))
        {
            return Err(MimiError::Extension(
                "a sender or room URI that is not text",
            ));
        }
        let v = sorted(&v);
        if has_duplicate_key(&v) {
            return Err(MimiError::Extension("a map with the same key twice"));
        }
        out.push((key, v));
    }
    // A map has no order: kept in the deterministic one, so that a message
    // decodes to the same value however its maps were ordered.
    out.sort_by_cached_key(|(k, _)| to_bytes(&k.to_value()));
    Ok(out)
}

/// Checks a value at nesting `level` (the extensions map is level 1).
fn check_extension_value(v: &Value, level: usize) -> Result<(), MimiError> {
    let deeper = |level: usize| {
        if level > MAX_EXTENSION_DEPTH {
            Err(MimiError::Extension("nested more than 4 deep"))
        } else {
            Ok(())
        }
    };
    match v {
        Value::Array(a) => {
            deeper(level)?;
            a.iter()
                .try_for_each(|v| check_extension_value(v, level + 1))
        }
        Value::Tag(2 | 3, inner) if !matches!(**inner, Value::Bytes(_)) => {
            // RFC 8949 §3.4.3: a bignum's content is a byte string.
            Err(MimiError::Extension("a bignum that is not a byte string"))
        }
        Value::Tag(_, inner) => {
            deeper(level)?;
            check_extension_value(inner, level + 1)
        }
        Value::Map(m) => {
            deeper(level)?;
            for (k, v) in m {
                match k {
                    Value::Integer(i)
                        if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i128::from(*i)) => {}
                    Value::Text(_) | Value::Bytes(_) => {}
                    _ => return Err(MimiError::Extension("a map key of another type")),
                }
                check_extension_value(v, level + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn uint<T: TryFrom<u64>>(v: Value, field: &'static str) -> Result<T, MimiError> {
    match v {
        Value::Integer(i) => u64::try_from(i)
            .ok()
            .and_then(|i| T::try_from(i).ok())
            .ok_or(MimiError::Field(field)),
        _ => Err(MimiError::Field(field)),
    }
}

fn text(v: Value, field: &'static str) -> Result<String, MimiError> {
    match v {
        Value::Text(t) => Ok(t),
        _ => Err(MimiError::Field(field)),
    }
}

fn bytes(v: Value, field: &'static str) -> Result<Vec<u8>, MimiError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(MimiError::Field(field)),
    }
}

/// Reads a part at nesting `depth` (the body is 1), counting parts in
/// `count`.
fn read_part(v: Value, depth: usize, count: &mut usize) -> Result<NestedPart, MimiError> {
    if depth > MAX_PART_DEPTH {
        return Err(MimiError::TooDeep);
    }
    *count += 1;
    if *count > MAX_PARTS {
        return Err(MimiError::TooManyParts);
    }
    let Value::Array(fields) = v else {
        return Err(MimiError::Field("part"));
    };
    let mut fields = fields.into_iter();
    let mut next = |field| fields.next().ok_or(MimiError::Field(field));
    let disposition = Disposition(uint(next("disposition")?, "disposition")?);
    let language = text(next("language")?, "language")?;
    let cardinality: u64 = uint(next("cardinality")?, "cardinality")?;
    let part = match cardinality {
        0 => Part::Null,
        1 => Part::Single {
            content_type: text(next("contentType")?, "contentType")?,
            content: bytes(next("content")?, "content")?,
        },
        2 => Part::External(Box::new(ExternalPart {
            content_type: text(next("contentType")?, "contentType")?,
            url: text(next("url")?, "url")?,
            expires: uint(next("expires")?, "expires")?,
            size: uint(next("size")?, "size")?,
            enc_alg: uint(next("encAlg")?, "encAlg")?,
            key: bytes(next("key")?, "key")?,
            nonce: bytes(next("nonce")?, "nonce")?,
            aad: bytes(next("aad")?, "aad")?,
            hash_alg: uint(next("hashAlg")?, "hashAlg")?,
            content_hash: bytes(next("contentHash")?, "contentHash")?,
            description: text(next("description")?, "description")?,
            filename: text(next("filename")?, "filename")?,
        })),
        3 => {
            let semantics = match uint::<u64>(next("partSemantics")?, "partSemantics")? {
                0 => PartSemantics::ChooseOne,
                1 => PartSemantics::SingleUnit,
                2 => PartSemantics::ProcessAll,
                other => return Err(MimiError::UnknownSemantics(other)),
            };
            let Value::Array(children) = next("parts")? else {
                return Err(MimiError::Field("parts"));
            };
            if children.len() < 2 {
                return Err(MimiError::Field("parts"));
            }
            let parts = children
                .into_iter()
                .map(|c| read_part(c, depth + 1, count))
                .collect::<Result<_, _>>()?;
            Part::Multi { semantics, parts }
        }
        other => return Err(MimiError::UnknownCardinality(other)),
    };
    if next("nothing more").is_ok() {
        return Err(MimiError::Field("part"));
    }
    Ok(NestedPart {
        disposition,
        language,
        part,
    })
}

//! How Cascade's message kinds are written in the MIMI content format
//! ([`super::mimi`]), and read back (protocol §14.1.1).
//!
//! | Cascade | MIMI |
//! |---|---|
//! | text | body: one part, `text/plain;charset=utf-8`, disposition `render` |
//! | text with mentions | body: one part, `text/markdown;variant=GFM-MIMI` ([`super::markdown`]), each mention a link to the person's URI |
//! | reply | a text with `inReplyTo` set to the original |
//! | edit | `replaces` the original, body: the new text |
//! | delete (a message or a reaction) | `replaces` it, body: the null part |
//! | reaction | `inReplyTo` the message, body: one `text/plain` part of disposition `reaction`, the emoji |
//! | read report | body: one `application/mimi-message-status` part ([`super::status`]) |
//! | attachment | body: one external part: the relay's URL of the sealed file, its size, `encAlg` [`ENC_STREAM_AES_256_GCM`], the key, `hashAlg` SHA-256 and the digest, the media type, file name and caption |
//!
//! The sender's clock travels in the private extension `-1` (an unsigned
//! integer, milliseconds since the Unix epoch): the format has no time of
//! its own. A message id is derived from the sender's and the room's URIs
//! ([`sender_uri`], the room's from the conversation's room extension), so
//! every member computes the same one. A message that names its sender
//! or room in the extensions `1` and `2` must name the MLS sender and this
//! conversation, or it is refused.

use cascade_protocol::{GroupId, OrgId, UserId};
use ciborium::Value;

use super::mimi::{
    self, Disposition, ExtensionKey, ExternalPart, MimiContent, MimiError, MimiId, NestedPart,
    Part, PartSemantics,
};
use super::{markdown, status, Attachment, Body, Content, Mention, MessageId, MAX_TEXT_BYTES};
use crate::error::{CoreError, Result};

/// The media type of a text part.
pub const TEXT_PLAIN: &str = "text/plain;charset=utf-8";

/// The private extension holding the sender's clock.
pub const EXT_SENT_AT: i64 = -1;

/// The `encAlg` of an attachment sealed as [`crate::attachments`] seals
/// (STREAM over AES-256-GCM), from the private-use range of the IANA AEAD
/// registry (RFC 5116 §6): no registered algorithm is this construction.
pub const ENC_STREAM_AES_256_GCM: u16 = 0xCA01;

/// The `hashAlg` of SHA-256 (IANA Named Information Hash Algorithm
/// registry).
pub const HASH_SHA_256: u8 = 1;

/// The largest attachment a receiver takes (sealed octets): 2 GiB.
pub const MAX_ATTACHMENT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The most people one text mentions.
pub const MAX_MENTIONS: usize = 64;

/// The most octets of UTF-8 in a reaction.
pub const MAX_REACTION_BYTES: usize = 64;

/// The URI a user sends as: `mimi://<org>/u/<local part>` (the MIMI URI
/// draft's user form, with the organisation as its authority).
pub fn sender_uri(user: &UserId) -> String {
    let (local, org) = user.as_str().split_once('@').expect("a user id has an @");
    format!("mimi://{org}/u/{local}")
}

/// The URI of a conversation created by a member of `org`:
/// `mimi://<org>/r/<group id in hex>`.
pub fn room_uri(org: &OrgId, group: &GroupId) -> String {
    format!(
        "mimi://{}/r/{}",
        org.as_str(),
        hex::encode(group.as_bytes())
    )
}

/// Whether `emoji` may be a reaction: 1 to 64 octets of UTF-8, with no
/// whitespace or control characters.
pub fn valid_reaction(emoji: &str) -> bool {
    !emoji.is_empty()
        && emoji.len() <= MAX_REACTION_BYTES
        && !emoji.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A message in the MIMI format, ready to send: its id and its bytes.
pub struct Written {
    /// The id every member derives from it.
    pub id: MessageId,
    /// The bytes to encrypt.
    pub bytes: Vec<u8>,
}

/// Writes `body` as MIMI content with `salt`, sent at `sent_at` by
/// `sender` in `room`. The same inputs give the same bytes and id, so a
/// message sent again (after a failure) keeps its id.
pub fn write(
    body: &Body,
    sent_at: u64,
    salt: [u8; 16],
    sender: &str,
    room: &str,
) -> Result<Written> {
    let to_mimi = |id: &MessageId| -> Result<MimiId> {
        match id.as_v1() {
            None => Ok(MimiId(id.as_bytes().try_into().expect("32 octets"))),
            // The format's references are 32-octet ids: a `v1` message
            // (from before the change) cannot be answered or changed.
            Some(_) => Err(crate::error::InvalidInput::OldMessage.into()),
        }
    };
    let text = |t: &str, mentions: &[Mention]| {
        if mentions.is_empty() {
            return NestedPart::single(Disposition::RENDER, TEXT_PLAIN, t.as_bytes().to_vec());
        }
        let links: Vec<markdown::Link> = mentions
            .iter()
            .map(|m| markdown::Link {
                range: m.range(),
                uri: sender_uri(&m.user_id),
            })
            .collect();
        NestedPart::single(
            Disposition::RENDER,
            markdown::GFM_MIMI,
            markdown::write(t, &links).into_bytes(),
        )
    };
    let mut m = MimiContent::new(NestedPart::null());
    m.salt = salt;
    m.extensions.push((
        ExtensionKey::Int(EXT_SENT_AT),
        Value::Integer(sent_at.into()),
    ));
    match body {
        Body::Text {
            text: t,
            in_reply_to,
            mentions,
        } => {
            m.in_reply_to = in_reply_to.as_ref().map(to_mimi).transpose()?;
            m.body = text(t, mentions);
        }
        Body::Edit {
            target,
            text: t,
            mentions,
        } => {
            m.replaces = Some(to_mimi(target)?);
            m.body = text(t, mentions);
        }
        Body::Delete { target } => m.replaces = Some(to_mimi(target)?),
        Body::Reaction { target, emoji } => {
            m.in_reply_to = Some(to_mimi(target)?);
            m.body =
                NestedPart::single(Disposition::REACTION, TEXT_PLAIN, emoji.as_bytes().to_vec());
        }
        Body::Status { entries } => {
            m.body = NestedPart::single(
                Disposition::UNSPECIFIED,
                status::MESSAGE_STATUS,
                status::encode(entries),
            );
        }
        Body::Attachment(a) => {
            m.body = NestedPart {
                disposition: Disposition::RENDER,
                language: String::new(),
                part: Part::External(Box::new(ExternalPart {
                    content_type: a.media_type.clone(),
                    url: a.url.clone(),
                    expires: 0,
                    size: a.size,
                    enc_alg: ENC_STREAM_AES_256_GCM,
                    key: a.key.to_vec(),
                    nonce: Vec::new(),
                    aad: Vec::new(),
                    hash_alg: HASH_SHA_256,
                    content_hash: a.digest.to_vec(),
                    description: a.caption.clone(),
                    filename: a.name.clone(),
                })),
            };
        }
        Body::GroupMeta { .. } | Body::Receipt { .. } | Body::Unsupported { .. } => {
            unreachable!("only text and the message features are written as MIMI")
        }
    }
    let bytes = m.encode();
    let id = mimi::message_id(sender, room, &bytes, &m.salt)
        .and_then(MessageId::mimi)
        .ok_or(CoreError::Decode("a URI over 65,535 octets"))?;
    Ok(Written { id, bytes })
}

/// Reads MIMI content sent by `sender` in `room` into Cascade's terms. A
/// message without the private time extension is dated `now`. What
/// Cascade cannot show (another media type, an attachment, a part it does
/// not know) is [`Body::Unsupported`]; only bytes that are not MIMI
/// content, or that name another sender or room, are errors.
pub fn read(bytes: &[u8], sender: &str, room: &str, now: u64) -> Result<Content> {
    let m = MimiContent::decode(bytes).map_err(mimi_error)?;
    if m.text_extension(mimi::EXT_SENDER_URI)
        .is_some_and(|s| s != sender)
        || m.text_extension(mimi::EXT_ROOM_URI)
            .is_some_and(|r| r != room)
    {
        return Err(CoreError::Decode("a message naming another sender or room"));
    }
    let id = mimi::message_id(sender, room, bytes, &m.salt)
        .and_then(MessageId::mimi)
        .ok_or(CoreError::Decode("a URI over 65,535 octets"))?;
    let sent_at = m
        .extensions
        .iter()
        .find_map(|(k, v)| match (k, v) {
            (ExtensionKey::Int(EXT_SENT_AT), Value::Integer(t)) => u64::try_from(*t).ok(),
            _ => None,
        })
        .unwrap_or(now);
    let id_of = |i: MimiId| MessageId::mimi(i).expect("a decoded id starts 0x01");
    let body = match (m.replaces, m.in_reply_to, &m.body) {
        (
            Some(target),
            _,
            NestedPart {
                part: Part::Null, ..
            },
        ) => Body::Delete {
            target: id_of(target),
        },
        (Some(target), _, part) => match text_of(part) {
            Some((text, mentions)) => Body::Edit {
                target: id_of(target),
                text,
                mentions,
            },
            None => unsupported(part),
        },
        (None, Some(target), part) if part.disposition == Disposition::REACTION => {
            match text_of(part)
                .filter(|(e, mentions)| mentions.is_empty() && valid_reaction(e))
                .map(|(e, _)| e)
            {
                Some(emoji) => Body::Reaction {
                    target: id_of(target),
                    emoji,
                },
                None => unsupported(part),
            }
        }
        (None, in_reply_to, part) if in_reply_to.is_none() && attachment_of(part).is_some() => {
            Body::Attachment(Box::new(attachment_of(part).expect("checked")))
        }
        (None, None, part) if status_of(part).is_some() => Body::Status {
            entries: status_of(part).unwrap_or_default(),
        },
        (None, in_reply_to, part) => match text_of(part) {
            Some((text, mentions)) => Body::Text {
                text,
                in_reply_to: in_reply_to.map(id_of),
                mentions,
            },
            None => unsupported(part),
        },
    };
    Ok(Content { id, sent_at, body })
}

/// Whether `bytes` are MIMI content rather than a `v1` map: a CBOR array
/// of seven.
pub fn is_mimi(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x87)
}

fn mimi_error(e: MimiError) -> CoreError {
    tracing::debug!(error = %e, "MIMI content refused");
    CoreError::Decode("a message's MIMI content")
}

/// The text a part shows, with the people it mentions: a `text/plain`
/// part, or a text with mentions ([`markdown::GFM_MIMI`]); in a multipart
/// of alternatives or of separate parts, the first such. At most
/// [`MAX_TEXT_BYTES`] of UTF-8 and [`MAX_MENTIONS`] mentions (those past
/// it are plain text).
fn text_of(part: &NestedPart) -> Option<(String, Vec<Mention>)> {
    match &part.part {
        Part::Single {
            content_type,
            content,
        } if content.len() <= MAX_TEXT_BYTES => {
            let text = std::str::from_utf8(content).ok()?;
            if is_text_plain(content_type) {
                return Some((text.to_owned(), Vec::new()));
            }
            if !markdown::is_gfm_mimi(content_type) {
                return None;
            }
            let (text, links) = markdown::read(text)?;
            let mentions = links
                .into_iter()
                .filter_map(|l| {
                    Some(Mention {
                        user_id: user_of_uri(&l.uri)?,
                        start: l.range.start as u32,
                        end: l.range.end as u32,
                    })
                })
                .take(MAX_MENTIONS)
                .collect();
            Some((text, mentions))
        }
        Part::Multi {
            semantics: PartSemantics::ChooseOne | PartSemantics::ProcessAll,
            parts,
        } => parts.iter().find_map(text_of),
        _ => None,
    }
}

/// The user a MIMI user URI names ([`sender_uri`]'s form), if it is one.
pub fn user_of_uri(uri: &str) -> Option<UserId> {
    let (org, local) = uri.strip_prefix("mimi://")?.split_once("/u/")?;
    UserId::new(format!("{local}@{org}")).ok()
}

/// A file Cascade can open: an external part sealed as
/// [`crate::attachments`] seals (`encAlg` [`ENC_STREAM_AES_256_GCM`], a
/// 32-octet key, SHA-256 of 32 octets), of at most [`MAX_ATTACHMENT_BYTES`].
fn attachment_of(part: &NestedPart) -> Option<Attachment> {
    let Part::External(e) = &part.part else {
        return None;
    };
    if e.enc_alg != ENC_STREAM_AES_256_GCM
        || e.hash_alg != HASH_SHA_256
        || e.size > MAX_ATTACHMENT_BYTES
        || !e.nonce.is_empty()
        || !e.aad.is_empty()
    {
        return None;
    }
    Some(Attachment {
        url: e.url.clone(),
        digest: e.content_hash.as_slice().try_into().ok()?,
        key: e.key.as_slice().try_into().ok()?,
        size: e.size,
        media_type: e.content_type.clone(),
        name: e.filename.clone(),
        caption: e.description.clone(),
    })
}

/// The entries of a status report: a single part of its media type.
fn status_of(part: &NestedPart) -> Option<Vec<(MessageId, status::Status)>> {
    match &part.part {
        Part::Single {
            content_type,
            content,
        } if content_type.eq_ignore_ascii_case(status::MESSAGE_STATUS) => status::decode(content),
        _ => None,
    }
}

/// `text/plain`, with no charset or UTF-8 (its default is US-ASCII, a
/// subset).
fn is_text_plain(content_type: &str) -> bool {
    let mut params = content_type.split(';').map(str::trim);
    if !params
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case("text/plain"))
    {
        return false;
    }
    params.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            let v = v.trim().trim_matches('"');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("us-ascii")
        }
        _ => true,
    })
}

/// What is shown for a part Cascade cannot show: its media type, or what
/// kind of part it is.
fn unsupported(part: &NestedPart) -> Body {
    let kind = match &part.part {
        Part::Single { content_type, .. } => content_type.clone(),
        Part::External(e) if e.content_type.is_empty() => "attachment".into(),
        Part::External(e) => format!("attachment ({})", e.content_type),
        Part::Multi { .. } => "multipart".into(),
        Part::Null => "empty".into(),
    };
    Body::Unsupported { kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENDER: &str = "mimi://north/u/alice";
    const ROOM: &str = "mimi://north/r/00112233445566778899aabbccddeeff";

    fn round_trip(body: Body) -> Content {
        let w = write(&body, 1_700_000_000_000, [3; 16], SENDER, ROOM).expect("writes");
        let back = read(&w.bytes, SENDER, ROOM, 0).expect("reads");
        assert_eq!(back.id, w.id);
        assert_eq!(back.sent_at, 1_700_000_000_000);
        assert_eq!(back.body, body);
        back
    }

    fn some_id(n: u8) -> MessageId {
        let mut b = [n; 32];
        b[0] = 1;
        MessageId::from_bytes(&b).expect("an id")
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(Body::Text {
            text: "hello".into(),
            in_reply_to: None,
            mentions: Vec::new(),
        });
        round_trip(Body::Text {
            text: "yes".into(),
            in_reply_to: Some(some_id(2)),
            mentions: Vec::new(),
        });
        round_trip(Body::Edit {
            target: some_id(3),
            text: "hello, corrected".into(),
            mentions: Vec::new(),
        });
        let bob = Mention {
            user_id: UserId::new("bob@south").expect("valid"),
            start: 7,
            end: 11,
        };
        round_trip(Body::Text {
            text: "Thanks @Bob, *bed 4*\n  done".into(),
            in_reply_to: None,
            mentions: vec![bob.clone()],
        });
        round_trip(Body::Edit {
            target: some_id(3),
            text: "Thanks @Bob".into(),
            mentions: vec![bob],
        });
        round_trip(Body::Delete { target: some_id(4) });
        round_trip(Body::Attachment(Box::new(Attachment {
            url: "https://relay.example/v1/blobs/ab".into(),
            digest: [0xab; 32],
            key: [7; 32],
            size: 70_000,
            media_type: "image/png".into(),
            name: "chart.png".into(),
            caption: "Bed 4 obs".into(),
        })));
        round_trip(Body::Reaction {
            target: some_id(5),
            emoji: "👍".into(),
        });
        round_trip(Body::Status {
            entries: vec![
                (some_id(6), status::Status::Read),
                (MessageId::v1([7; 16]), status::Status::Read),
            ],
        });
    }

    /// A read report's bytes, pinned: the MIMI content around the status
    /// format's array.
    #[test]
    fn a_read_report_is_pinned() {
        let body = Body::Status {
            entries: vec![(some_id(6), status::Status::Read)],
        };
        let w = write(&body, 1_700_000_000_000, [3; 16], SENDER, ROOM).expect("writes");
        assert_eq!(hex::encode(&w.bytes), READ_REPORT_GOLDEN);
    }

    /// `[salt, null, null, null, {-1: ts}, body: [0, "", 0,
    /// "application/mimi-message-status", [[id, 2]]]]`.
    const READ_REPORT_GOLDEN: &str =
        "875003030303030303030303030303030303f640f6f6a1201b0000018bcfe5680085\
006001781f6170706c69636174696f6e2f6d696d692d6d6573736167652d737461747573\
582581825820010606060606060606060606060606060606060606060606060606060606060602";

    /// The bytes of a text, pinned: what an independent client must write
    /// for the same message (protocol §14.1.1).
    #[test]
    fn a_text_is_pinned() {
        let body = Body::Text {
            text: "hello".into(),
            in_reply_to: None,
            mentions: Vec::new(),
        };
        let w = write(&body, 1_700_000_000_000, [3; 16], SENDER, ROOM).expect("writes");
        assert_eq!(
            hex::encode(&w.bytes),
            "875003030303030303030303030303030303f640f6f6a1201b0000018bcfe5680085\
01600178187465787\
42f706c61696e3b636861727365743d7574662d38\
4568656c6c6f"
        );
        assert_eq!(w.id.to_string(), TEXT_ID);
    }

    /// A text with a mention, pinned: the Markdown part and the link to
    /// the person's URI.
    #[test]
    fn a_mention_is_pinned() {
        let body = Body::Text {
            text: "Ask @Bob!".into(),
            in_reply_to: None,
            mentions: vec![Mention {
                user_id: UserId::new("bob@south").expect("valid"),
                start: 4,
                end: 8,
            }],
        };
        let w = write(&body, 1_700_000_000_000, [3; 16], SENDER, ROOM).expect("writes");
        let m = MimiContent::decode(&w.bytes).expect("decodes");
        assert_eq!(
            m.body,
            NestedPart::single(
                Disposition::RENDER,
                "text/markdown;variant=GFM-MIMI",
                b"Ask [@Bob](<mimi://south/u/bob>)\\!".to_vec()
            )
        );
        assert_eq!(hex::encode(&w.bytes), MENTION_GOLDEN);
    }

    /// `[salt, null, null, null, {-1: ts}, body: [1, "", 1,
    /// "text/markdown;variant=GFM-MIMI", "Ask [@Bob](<mimi://south/u/bob>)\!"]]`.
    const MENTION_GOLDEN: &str =
        "875003030303030303030303030303030303f640f6f6a1201b0000018bcfe5680085\
016001781e746578742f6d61726b646f776e3b76617269616e743d47464d2d4d494d49\
582241736b205b40426f625d283c6d696d693a2f2f736f7574682f752f626f623e295c21";

    /// The draft's example of a mention reads as its text; the person it
    /// names (at `example.com`) is not one Cascade can name, so it is no
    /// mention here. One of ours is.
    #[test]
    fn a_mention_names_a_person_cascade_can_name() {
        let m = MimiContent::new(NestedPart::single(
            Disposition::RENDER,
            "text/markdown;variant=GFM-MIMI",
            b"Kudos to [@Alice Smith](mimi://example.com/u/alice-smith) and [@Bob](mimi://south/u/bob) and [@R](mimi://south/r/ward)".to_vec(),
        ));
        let Body::Text { text, mentions, .. } =
            read(&m.encode(), SENDER, ROOM, 0).expect("valid").body
        else {
            panic!("a text")
        };
        assert_eq!(text, "Kudos to @Alice Smith and @Bob and @R");
        assert_eq!(
            mentions,
            vec![Mention {
                user_id: UserId::new("bob@south").expect("valid"),
                start: 26,
                end: 30
            }]
        );
        // A reaction cannot mention.
        let mut m = MimiContent::new(NestedPart::single(
            Disposition::REACTION,
            "text/markdown;variant=GFM-MIMI",
            b"[x](mimi://south/u/bob)".to_vec(),
        ));
        m.in_reply_to = Some(MimiId([1; 32]));
        assert!(matches!(
            read(&m.encode(), SENDER, ROOM, 0).expect("valid").body,
            Body::Unsupported { .. }
        ));
    }

    const TEXT_ID: &str = "012aa833cbd790b132687ec83e0a5940fb3211e098233179e124fde2253fcd31";

    #[test]
    fn the_id_depends_on_sender_and_room() {
        let body = Body::Text {
            text: "hello".into(),
            in_reply_to: None,
            mentions: Vec::new(),
        };
        let w = write(&body, 1, [3; 16], SENDER, ROOM).expect("writes");
        let other_sender = read(&w.bytes, "mimi://north/u/mallory", ROOM, 0).expect("reads");
        let other_room = read(&w.bytes, SENDER, "mimi://north/r/00", 0).expect("reads");
        assert_ne!(other_sender.id, w.id);
        assert_ne!(other_room.id, w.id);
        assert_ne!(other_sender.id, other_room.id);
    }

    /// A message claiming in its extensions to come from someone else, or
    /// to belong to another room, is refused.
    #[test]
    fn a_claimed_sender_or_room_must_match() {
        let mut m = MimiContent::new(NestedPart::single(
            Disposition::RENDER,
            TEXT_PLAIN,
            b"hi".to_vec(),
        ));
        m.extensions.push((
            ExtensionKey::Int(mimi::EXT_SENDER_URI),
            Value::Text("mimi://north/u/bob".into()),
        ));
        assert!(read(&m.encode(), SENDER, ROOM, 0).is_err());
        m.extensions[0].1 = Value::Text(SENDER.into());
        assert!(read(&m.encode(), SENDER, ROOM, 0).is_ok());
        m.extensions.push((
            ExtensionKey::Int(mimi::EXT_ROOM_URI),
            Value::Text("mimi://south/r/ff".into()),
        ));
        assert!(read(&m.encode(), SENDER, ROOM, 0).is_err());
    }

    /// What Cascade cannot show is kept as unsupported, never an error;
    /// a message without a time is dated on arrival.
    #[test]
    fn what_cannot_be_shown_is_unsupported() {
        let cases = [
            (
                NestedPart::single(Disposition::RENDER, "image/png", vec![1, 2]),
                "image/png",
            ),
            (
                NestedPart::single(
                    Disposition::RENDER,
                    "text/plain;charset=latin1",
                    b"x".to_vec(),
                ),
                "text/plain;charset=latin1",
            ),
            (
                NestedPart::single(Disposition::RENDER, TEXT_PLAIN, vec![0xff, 0xfe]),
                TEXT_PLAIN,
            ),
        ];
        for (part, kind) in cases {
            let m = MimiContent::new(part);
            let c = read(&m.encode(), SENDER, ROOM, 42).expect("reads");
            assert_eq!(c.sent_at, 42);
            assert_eq!(c.body, Body::Unsupported { kind: kind.into() });
        }
        // A text among alternatives is shown.
        let m = MimiContent::new(NestedPart {
            disposition: Disposition::RENDER,
            language: String::new(),
            part: Part::Multi {
                semantics: PartSemantics::ChooseOne,
                parts: vec![
                    NestedPart::single(Disposition::RENDER, "text/markdown", b"*hi*".to_vec()),
                    NestedPart::single(Disposition::RENDER, "text/plain", b"hi".to_vec()),
                ],
            },
        });
        assert_eq!(
            read(&m.encode(), SENDER, ROOM, 0).expect("reads").body,
            Body::Text {
                text: "hi".into(),
                in_reply_to: None,
                mentions: Vec::new(),
            }
        );
        // A reaction that is not one (whitespace, too long) is unsupported.
        let mut m = MimiContent::new(NestedPart::single(
            Disposition::REACTION,
            TEXT_PLAIN,
            b"a b".to_vec(),
        ));
        m.in_reply_to = Some(MimiId([1; 32]));
        assert!(matches!(
            read(&m.encode(), SENDER, ROOM, 0).expect("reads").body,
            Body::Unsupported { .. }
        ));
        assert!(read(b"\x87", SENDER, ROOM, 0).is_err());
    }

    #[test]
    fn a_v1_message_cannot_be_referenced() {
        let body = Body::Reaction {
            target: MessageId::v1([1; 16]),
            emoji: "👍".into(),
        };
        assert!(matches!(
            write(&body, 1, [0; 16], SENDER, ROOM),
            Err(CoreError::Invalid(crate::error::InvalidInput::OldMessage))
        ));
    }

    #[test]
    fn uris_and_reactions() {
        let user = UserId::new("alice@north").expect("user");
        assert_eq!(sender_uri(&user), "mimi://north/u/alice");
        let org = OrgId::new("north").expect("org");
        assert_eq!(
            room_uri(&org, &GroupId([0xab; 16])),
            format!("mimi://north/r/{}", "ab".repeat(16))
        );
        assert!(valid_reaction("👍"));
        assert!(valid_reaction("👩‍⚕️"));
        assert!(!valid_reaction(""));
        assert!(!valid_reaction("a b"));
        assert!(!valid_reaction(&"x".repeat(65)));
    }
}

//! A device's history as a [`HistoryArchive`]: its conversations with their
//! messages, earlier versions, reactions, receipts, read positions and
//! attachment references, taken out of the store and put into another
//! device's store (an encrypted backup restored, a linked device).
//!
//! The archive is the store's history in a form of its own, not the
//! store's tables: what a device of the same user needs to show the same
//! history, and nothing of the MLS state (a device joins a conversation
//! with its own keys). Its CBOR encoding is pinned by a golden test
//! (`tests/golden.rs`, protocol §14.11).
//!
//! Putting an archive into a store keeps what the store already has: a
//! message it holds is not replaced, a conversation's name, mute and read
//! position only ever move forward, and the archive's messages come before
//! the ones this device received itself (which are newer: they came after
//! it joined).

use cascade_protocol::{DeviceId, GroupId, UserId};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{ConversationState, DeliveryState};
use crate::content::{Attachment, Mention, MessageId};
use crate::error::{CoreError, Result};

/// The version of the archive's layout this build writes and reads.
pub const ARCHIVE_VERSION: u32 = 1;

/// A device's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryArchive {
    /// [`ARCHIVE_VERSION`].
    pub version: u32,
    /// Its conversations, in the order of their latest activity.
    pub conversations: Vec<ArchivedConversation>,
}

impl HistoryArchive {
    /// How many messages it carries.
    pub fn messages(&self) -> usize {
        self.conversations.iter().map(|c| c.messages.len()).sum()
    }
}

/// One conversation's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedConversation {
    /// The group (16 octets).
    pub group_id: ByteBuf,
    /// Its name.
    pub name: String,
    /// Whether the user was a member when the archive was made (else they
    /// had left or been removed: the history is kept to read).
    pub member: bool,
    /// The user muted it.
    pub muted: bool,
    /// How far the user had read (the group's sequence).
    pub read_seq: u64,
    /// Unread messages.
    pub unread: u64,
    /// Time of its latest activity (ms since the Unix epoch).
    pub last_activity: u64,
    /// Its messages, oldest first.
    pub messages: Vec<ArchivedMessage>,
    /// The versions its edits replaced.
    pub versions: Vec<ArchivedVersion>,
    /// Its reactions, in the order they came.
    pub reactions: Vec<ArchivedReaction>,
    /// Who had each of the user's messages (delivery receipts).
    pub receipts: Vec<ArchivedReceipt>,
    /// How far each other member had read.
    pub read_marks: Vec<ArchivedReadMark>,
}

/// A message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedMessage {
    /// Its id (16 or 32 octets).
    pub id: ByteBuf,
    /// Who sent it.
    pub sender: UserId,
    /// From which device (16 octets).
    pub sender_device: ByteBuf,
    /// The sender's clock, ms since the Unix epoch.
    pub sent_at: u64,
    /// Its place in the group's sequence.
    pub seq: Option<u64>,
    /// Its kind (`text`, `attachment`, `system`, …).
    pub kind: String,
    /// Its text; `None` once erased or for a kind with none.
    pub text: Option<String>,
    /// Its delivery state.
    pub state: DeliveryState,
    /// The message it answers.
    pub in_reply_to: Option<ByteBuf>,
    /// When its sender last edited it.
    pub edited_at: Option<u64>,
    /// Who deleted it for everyone.
    pub deleted_by: Option<UserId>,
    /// The salt of the user's own MIMI message (to edit or delete it from
    /// the new device).
    pub salt: Option<ByteBuf>,
    /// When it disappears (only in an archive for a linked device: a
    /// backup leaves disappearing messages out).
    pub expires_at: Option<u64>,
    /// The people its text mentions.
    pub mentions: Vec<Mention>,
    /// The file it carries, with the key that opens it.
    pub attachment: Option<Attachment>,
}

/// A version an edit replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedVersion {
    /// The message edited.
    pub message_id: ByteBuf,
    /// The edit's own id.
    pub edit_id: ByteBuf,
    /// The text it replaced.
    pub text: String,
    /// When.
    pub at: u64,
}

/// A reaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedReaction {
    /// Its id.
    pub id: ByteBuf,
    /// The message reacted to.
    pub target: ByteBuf,
    /// Who reacted.
    pub user_id: UserId,
    /// With what.
    pub emoji: String,
    /// When.
    pub at: u64,
}

/// A delivery receipt of one of the user's messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedReceipt {
    /// The message.
    pub message_id: ByteBuf,
    /// The recipient.
    pub user_id: UserId,
    /// Whether a receipt from them was expected.
    pub expected: bool,
    /// When they had it, if they did.
    pub received_at: Option<u64>,
}

/// How far another member had read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedReadMark {
    /// The member.
    pub user_id: UserId,
    /// Their read position.
    pub seq: u64,
    /// When they reported it.
    pub at: u64,
}

/// What putting an archive into a store did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// Conversations new to this device.
    pub conversations: usize,
    /// Messages new to this device.
    pub messages: usize,
}

fn invalid(what: &'static str) -> CoreError {
    CoreError::Decode(what)
}

/// The conversation's group id, checked.
pub(crate) fn group_id(c: &ArchivedConversation) -> Result<GroupId> {
    let id: [u8; 16] = c
        .group_id
        .as_slice()
        .try_into()
        .map_err(|_| invalid("an archived conversation's id"))?;
    Ok(GroupId(id))
}

fn message_id(b: &[u8], what: &'static str) -> Result<MessageId> {
    MessageId::from_bytes(b).ok_or_else(|| invalid(what))
}

/// Checks what a store would otherwise take on trust: every id is of its
/// length, every mention lies within its text.
pub(crate) fn validate(archive: &HistoryArchive) -> Result<()> {
    if archive.version != ARCHIVE_VERSION {
        return Err(invalid("an archive of another version"));
    }
    for c in &archive.conversations {
        group_id(c)?;
        for m in &c.messages {
            message_id(&m.id, "an archived message's id")?;
            DeviceId::from_slice(&m.sender_device)
                .map_err(|_| invalid("an archived message's device"))?;
            if let Some(q) = &m.in_reply_to {
                message_id(q, "an archived reply")?;
            }
            if m.salt.as_ref().is_some_and(|s| s.len() != 16) {
                return Err(invalid("an archived message's salt"));
            }
            let len = m.text.as_deref().map_or(0, str::len);
            if m.mentions
                .iter()
                .any(|x| x.start > x.end || x.end as usize > len)
            {
                return Err(invalid("an archived mention"));
            }
        }
        for v in &c.versions {
            message_id(&v.message_id, "an archived edit")?;
            message_id(&v.edit_id, "an archived edit")?;
        }
        for r in &c.reactions {
            message_id(&r.id, "an archived reaction")?;
            message_id(&r.target, "an archived reaction")?;
        }
        for r in &c.receipts {
            message_id(&r.message_id, "an archived receipt")?;
        }
    }
    Ok(())
}

/// Every column of `messages` but its row number.
const COLS: &str = "message_id, group_id, sender, sender_device, sent_at, seq, kind, text, state,
     in_reply_to, edited_at, deleted_by, salt, expires_at, mentions, attachment";

const ARCHIVE_MSG_COLS: &str = "message_id, sender, sender_device, sent_at, seq, kind, text, state,
     in_reply_to, edited_at, deleted_by, salt, expires_at, mentions, attachment";

fn decode_col<T: serde::de::DeserializeOwned>(
    i: usize,
    json: Option<String>,
) -> rusqlite::Result<Option<T>> {
    json.map(|j| {
        serde_json::from_str(&j).map_err(|_| {
            rusqlite::Error::InvalidColumnType(i, "json".into(), rusqlite::types::Type::Text)
        })
    })
    .transpose()
}

fn user_col(i: usize, s: String) -> rusqlite::Result<UserId> {
    UserId::new(s).map_err(|_| {
        rusqlite::Error::InvalidColumnType(i, "user".into(), rusqlite::types::Type::Text)
    })
}

fn row_to_archived(r: &rusqlite::Row<'_>) -> rusqlite::Result<ArchivedMessage> {
    Ok(ArchivedMessage {
        id: ByteBuf::from(r.get::<_, Vec<u8>>(0)?),
        sender: user_col(1, r.get(1)?)?,
        sender_device: ByteBuf::from(r.get::<_, Vec<u8>>(2)?),
        sent_at: r.get::<_, i64>(3)? as u64,
        seq: r.get::<_, Option<i64>>(4)?.map(|s| s as u64),
        kind: r.get(5)?,
        text: r.get(6)?,
        state: DeliveryState::parse(&r.get::<_, String>(7)?),
        in_reply_to: r.get::<_, Option<Vec<u8>>>(8)?.map(ByteBuf::from),
        edited_at: r.get::<_, Option<i64>>(9)?.map(|t| t as u64),
        deleted_by: r
            .get::<_, Option<String>>(10)?
            .map(|s| user_col(10, s))
            .transpose()?,
        salt: r.get::<_, Option<Vec<u8>>>(11)?.map(ByteBuf::from),
        expires_at: r.get::<_, Option<i64>>(12)?.map(|t| t as u64),
        mentions: decode_col(13, r.get(13)?)?.unwrap_or_default(),
        attachment: decode_col(14, r.get(14)?)?,
    })
}

/// Takes the history out of the store. `disappearing`: whether messages
/// with a disappearing time go with it. Messages still on their way out
/// stay behind (this device sends them; the other gets them as anyone
/// does).
pub(super) fn export(conn: &Connection, disappearing: bool) -> Result<HistoryArchive> {
    let mut conversations = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT group_id, name, state, muted, read_seq, unread, last_activity
         FROM conversations WHERE state NOT IN ('joining')
         ORDER BY last_activity DESC, group_id",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                ConversationState::parse(&r.get::<_, String>(2)?),
                r.get::<_, bool>(3)?,
                r.get::<_, i64>(4)? as u64,
                r.get::<_, i64>(5)? as u64,
                r.get::<_, i64>(6)? as u64,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (group, name, state, muted, read_seq, unread, last_activity) in rows {
        let keep = if disappearing {
            "1"
        } else {
            "expires_at IS NULL"
        };
        let messages = conn
            .prepare(&format!(
                "SELECT {ARCHIVE_MSG_COLS} FROM messages
                 WHERE group_id = ?1 AND state != 'sending' AND {keep} ORDER BY rowid"
            ))?
            .query_map([&group], row_to_archived)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let kept = format!(
            "SELECT message_id FROM messages WHERE group_id = ?1 AND state != 'sending' AND {keep}"
        );
        let versions = conn
            .prepare(&format!(
                "SELECT message_id, edit_id, text, at FROM message_versions
                 WHERE group_id = ?1 AND message_id IN ({kept}) ORDER BY rowid"
            ))?
            .query_map([&group], |r| {
                Ok(ArchivedVersion {
                    message_id: ByteBuf::from(r.get::<_, Vec<u8>>(0)?),
                    edit_id: ByteBuf::from(r.get::<_, Vec<u8>>(1)?),
                    text: r.get(2)?,
                    at: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let reactions = conn
            .prepare(&format!(
                "SELECT reaction_id, target_id, user_id, emoji, at FROM reactions
                 WHERE group_id = ?1 AND target_id IN ({kept}) ORDER BY rowid"
            ))?
            .query_map([&group], |r| {
                Ok(ArchivedReaction {
                    id: ByteBuf::from(r.get::<_, Vec<u8>>(0)?),
                    target: ByteBuf::from(r.get::<_, Vec<u8>>(1)?),
                    user_id: user_col(2, r.get(2)?)?,
                    emoji: r.get(3)?,
                    at: r.get::<_, i64>(4)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let receipts = conn
            .prepare(&format!(
                "SELECT message_id, user_id, expected, received_at FROM recipients
                 WHERE group_id = ?1 AND message_id IN ({kept})
                 ORDER BY message_id, user_id"
            ))?
            .query_map([&group], |r| {
                Ok(ArchivedReceipt {
                    message_id: ByteBuf::from(r.get::<_, Vec<u8>>(0)?),
                    user_id: user_col(1, r.get(1)?)?,
                    expected: r.get(2)?,
                    received_at: r.get::<_, Option<i64>>(3)?.map(|t| t as u64),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let read_marks = conn
            .prepare(
                "SELECT user_id, seq, at FROM read_marks WHERE group_id = ?1 ORDER BY user_id",
            )?
            .query_map([&group], |r| {
                Ok(ArchivedReadMark {
                    user_id: user_col(0, r.get(0)?)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    at: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        conversations.push(ArchivedConversation {
            group_id: ByteBuf::from(group),
            name,
            member: state.is_member(),
            muted,
            read_seq,
            unread,
            last_activity,
            messages,
            versions,
            reactions,
            receipts,
            read_marks,
        });
    }
    Ok(HistoryArchive {
        version: ARCHIVE_VERSION,
        conversations,
    })
}

/// Puts one archived conversation into the store (inside the caller's
/// transaction), as the module says. A conversation new to this device is
/// recorded as `new_state`. Returns how many of its messages were new.
pub(super) fn import(
    conn: &Connection,
    c: &ArchivedConversation,
    new_state: ConversationState,
) -> Result<(bool, usize)> {
    let group = group_id(c)?;
    let g = group.as_bytes().as_slice();
    let existed = conn
        .query_row(
            "SELECT 1 FROM conversations WHERE group_id = ?1",
            [g],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if existed {
        conn.execute(
            "UPDATE conversations SET
                name = CASE WHEN name = '' THEN ?2 ELSE name END,
                muted = MAX(muted, ?3),
                read_seq = MAX(read_seq, ?4),
                reported_seq = MAX(reported_seq, ?4),
                last_activity = MAX(last_activity, ?5)
             WHERE group_id = ?1",
            params![
                g,
                c.name,
                c.muted,
                c.read_seq as i64,
                c.last_activity as i64
            ],
        )?;
    } else {
        conn.execute(
            "INSERT INTO conversations
             (group_id, name, state, last_seq, unread, last_activity, muted, read_seq, reported_seq)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?7)",
            params![
                g,
                c.name,
                new_state.as_str(),
                c.unread as i64,
                c.last_activity as i64,
                c.muted,
                c.read_seq as i64
            ],
        )?;
    }
    // What this device received itself goes after the archive's messages:
    // set aside, deleted, and put back once they are in.
    conn.execute_batch(
        "DROP TABLE IF EXISTS temp.own_messages;
         CREATE TEMP TABLE own_messages AS SELECT * FROM messages WHERE 0;",
    )?;
    conn.execute(
        "INSERT INTO temp.own_messages SELECT * FROM messages WHERE group_id = ?1 ORDER BY rowid",
        [g],
    )?;
    conn.execute("DELETE FROM messages WHERE group_id = ?1", [g])?;
    let mut new = 0;
    {
        let mut insert = conn.prepare(&format!(
            "INSERT OR IGNORE INTO messages ({COLS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
        ))?;
        // A message this device holds itself stays as it has it (it may
        // know of a later edit), in the archive's place.
        let mut held = conn.prepare(&format!(
            "INSERT INTO messages ({COLS}) SELECT {COLS} FROM temp.own_messages
             WHERE message_id = ?1"
        ))?;
        for m in &c.messages {
            if m.state == DeliveryState::Sending {
                continue;
            }
            if held.execute([m.id.as_slice()])? == 1 {
                continue;
            }
            new += 1;
            insert.execute(params![
                m.id.as_slice(),
                g,
                m.sender.as_str(),
                m.sender_device.as_slice(),
                m.sent_at as i64,
                m.seq.map(|s| s as i64),
                m.kind,
                m.text,
                m.state.as_str(),
                m.in_reply_to.as_ref().map(|b| b.as_slice()),
                m.edited_at.map(|t| t as i64),
                m.deleted_by.as_ref().map(UserId::as_str),
                m.salt.as_ref().map(|b| b.as_slice()),
                m.expires_at.map(|t| t as i64),
                super::mentions_column(&m.mentions),
                m.attachment
                    .as_ref()
                    .map(|a| serde_json::to_string(a).expect("an attachment serialises")),
            ])?;
        }
    }
    conn.execute_batch(&format!(
        "INSERT OR IGNORE INTO messages ({COLS}) SELECT {COLS}
         FROM temp.own_messages ORDER BY rowid;
         DROP TABLE temp.own_messages;"
    ))?;
    for v in &c.versions {
        conn.execute(
            "INSERT OR IGNORE INTO message_versions (message_id, group_id, edit_id, text, at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                v.message_id.as_slice(),
                g,
                v.edit_id.as_slice(),
                v.text,
                v.at as i64
            ],
        )?;
    }
    for r in &c.reactions {
        conn.execute(
            "INSERT OR IGNORE INTO reactions (reaction_id, group_id, target_id, user_id, emoji, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                r.id.as_slice(),
                g,
                r.target.as_slice(),
                r.user_id.as_str(),
                r.emoji,
                r.at as i64
            ],
        )?;
    }
    for r in &c.receipts {
        conn.execute(
            "INSERT INTO recipients (message_id, group_id, user_id, expected, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (message_id, user_id) DO UPDATE SET
                received_at = COALESCE(received_at, excluded.received_at)",
            params![
                r.message_id.as_slice(),
                g,
                r.user_id.as_str(),
                r.expected,
                r.received_at.map(|t| t as i64)
            ],
        )?;
    }
    for m in &c.read_marks {
        conn.execute(
            "INSERT INTO read_marks (group_id, user_id, seq, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (group_id, user_id) DO UPDATE SET
                seq = MAX(seq, excluded.seq), at = MAX(at, excluded.at)",
            params![g, m.user_id.as_str(), m.seq as i64, m.at as i64],
        )?;
    }
    Ok((!existed, new))
}

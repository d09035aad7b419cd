//! Read state in the store: how far this user has read each conversation
//! (on any of their devices), how far this device has told others, and
//! how far each other person has read.
//!
//! Positions are the relay's per-group `seq`, the one order every member
//! shares. A person who read a message read everything before it (protocol
//! §15 rule 27), so one position per person and conversation says who read
//! which of our messages: the cost grows with the people, not the messages.

use cascade_protocol::{GroupId, UserId};
use rusqlite::{params, Connection, OptionalExtension};

use super::user_column;
use crate::content::{MessageId, SYSTEM_KIND};
use crate::error::Result;

/// Schema version 6: read positions; messages by when they were sent, for
/// an organisation's maximum retention; conversations this user muted.
pub(super) const SCHEMA_V6: &str = "
ALTER TABLE conversations ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN reported_seq INTEGER NOT NULL DEFAULT 0;
CREATE TABLE read_marks (
    group_id BLOB NOT NULL,
    user_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX messages_by_sent ON messages (sent_at);
ALTER TABLE conversations ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;
";

/// How far this user has read a conversation, and told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadState {
    /// Everything up to this `seq` is read (on some device of this user).
    pub read_seq: u64,
    /// The last position this device sent a read report for.
    pub reported_seq: u64,
}

/// How far another person has read a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMark {
    /// Who.
    pub user: UserId,
    /// Everything up to this `seq` is read.
    pub seq: u64,
    /// When their report arrived (ms since the Unix epoch).
    pub at: u64,
}

pub(super) fn state(conn: &Connection, group: &GroupId) -> Result<ReadState> {
    Ok(conn
        .query_row(
            "SELECT read_seq, reported_seq FROM conversations WHERE group_id = ?1",
            [group.as_bytes().as_slice()],
            |r| {
                Ok(ReadState {
                    read_seq: r.get::<_, i64>(0)? as u64,
                    reported_seq: r.get::<_, i64>(1)? as u64,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

/// Moves this user's position forward to `seq` and counts what is still
/// unread after it (others' messages, not the device's own lines).
pub(super) fn read_up_to(
    conn: &Connection,
    group: &GroupId,
    seq: u64,
    me: &UserId,
) -> Result<bool> {
    let g = group.as_bytes().as_slice();
    let moved = conn.execute(
        "UPDATE conversations SET read_seq = ?2 WHERE group_id = ?1 AND read_seq < ?2",
        params![g, seq as i64],
    )? == 1;
    if moved {
        conn.execute(
            "UPDATE conversations SET unread = (
                 SELECT COUNT(*) FROM messages
                 WHERE group_id = ?1 AND seq > ?2 AND sender != ?3 AND kind != ?4
             ) WHERE group_id = ?1",
            params![g, seq as i64, me.as_str(), SYSTEM_KIND],
        )?;
    }
    Ok(moved)
}

pub(super) fn set_reported(conn: &Connection, group: &GroupId, seq: u64) -> Result<()> {
    conn.execute(
        "UPDATE conversations SET reported_seq = MAX(reported_seq, ?2) WHERE group_id = ?1",
        params![group.as_bytes().as_slice(), seq as i64],
    )?;
    Ok(())
}

/// The newest message others could know of (sequenced by the relay, not
/// a line of this device's own): its id and `seq`.
pub(super) fn latest(conn: &Connection, group: &GroupId) -> Result<Option<(MessageId, u64)>> {
    let row: Option<(Vec<u8>, i64)> = conn
        .query_row(
            "SELECT message_id, seq FROM messages
             WHERE group_id = ?1 AND seq IS NOT NULL AND kind != ?2
             ORDER BY seq DESC LIMIT 1",
            params![group.as_bytes().as_slice(), SYSTEM_KIND],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(id, seq)| Some((MessageId::from_bytes(&id)?, seq as u64))))
}

/// The newest message of each other person with `seq` in `(after,
/// up_to]`.
pub(super) fn latest_by_sender(
    conn: &Connection,
    group: &GroupId,
    after: u64,
    up_to: u64,
    me: &UserId,
) -> Result<Vec<(UserId, MessageId)>> {
    // SQLite takes the other columns from the row holding the MAX.
    let mut stmt = conn.prepare(
        "SELECT sender, message_id, MAX(seq) FROM messages
         WHERE group_id = ?1 AND seq > ?2 AND seq <= ?3 AND sender != ?4 AND kind != ?5
         GROUP BY sender",
    )?;
    let rows = stmt
        .query_map(
            params![
                group.as_bytes().as_slice(),
                after as i64,
                up_to as i64,
                me.as_str(),
                SYSTEM_KIND
            ],
            |r| Ok((user_column(0, r.get(0)?)?, r.get::<_, Vec<u8>>(1)?)),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(u, id)| Some((u, MessageId::from_bytes(&id)?)))
        .collect())
}

/// Moves `user`'s position forward to `seq`; whether it moved.
pub(super) fn add_mark(
    conn: &Connection,
    group: &GroupId,
    user: &UserId,
    seq: u64,
    at: u64,
) -> Result<bool> {
    let n = conn.execute(
        "INSERT INTO read_marks (group_id, user_id, seq, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (group_id, user_id) DO UPDATE SET seq = excluded.seq, at = excluded.at
         WHERE excluded.seq > read_marks.seq",
        params![
            group.as_bytes().as_slice(),
            user.as_str(),
            seq as i64,
            at as i64
        ],
    )?;
    Ok(n == 1)
}

pub(super) fn marks(conn: &Connection, group: &GroupId) -> Result<Vec<ReadMark>> {
    let mut stmt = conn.prepare(
        "SELECT user_id, seq, at FROM read_marks WHERE group_id = ?1 ORDER BY seq DESC, user_id",
    )?;
    let rows = stmt
        .query_map([group.as_bytes().as_slice()], |r| {
            Ok(ReadMark {
                user: user_column(0, r.get(0)?)?,
                seq: r.get::<_, i64>(1)? as u64,
                at: r.get::<_, i64>(2)? as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Forgets how far `user` read (they left the conversation).
pub(super) fn forget_mark(conn: &Connection, group: &GroupId, user: &UserId) -> Result<()> {
    conn.execute(
        "DELETE FROM read_marks WHERE group_id = ?1 AND user_id = ?2",
        params![group.as_bytes().as_slice(), user.as_str()],
    )?;
    Ok(())
}

/// Who must confirm our message `id` and who did: each user with whether
/// they were expected (in the conversation when the relay accepted it)
/// and when their delivery receipt came. Empty where receipts are not
/// sent.
pub(super) fn recipients(
    conn: &Connection,
    id: &MessageId,
) -> Result<Vec<(UserId, bool, Option<u64>)>> {
    let mut stmt = conn.prepare(
        "SELECT user_id, expected, received_at FROM recipients
         WHERE message_id = ?1 ORDER BY user_id",
    )?;
    let rows = stmt
        .query_map([id.as_bytes()], |r| {
            Ok((
                user_column(0, r.get(0)?)?,
                r.get::<_, i64>(1)? != 0,
                r.get::<_, Option<i64>>(2)?.map(|t| t as u64),
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

//! Disappearing messages in the store: each message sent while its
//! conversation's timer is set has an `expires_at`, and is deleted —
//! row, earlier versions, reactions, receipts and search index entries,
//! with SQLite `secure_delete` overwriting them — once that time passes.

use cascade_protocol::GroupId;
use rusqlite::Connection;

use super::blob16;
use crate::content::MessageId;
use crate::error::Result;

/// Schema version 5: when each message disappears (ms since the Unix
/// epoch; NULL: never).
pub(super) const SCHEMA_V5: &str = "
ALTER TABLE messages ADD COLUMN expires_at INTEGER;
CREATE INDEX messages_by_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;
";

/// Deletes every message whose time has come; returns them by conversation.
pub(super) fn expire(conn: &Connection, now: u64) -> Result<Vec<(GroupId, MessageId)>> {
    delete_where(
        conn,
        "SELECT group_id, message_id FROM messages
         WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        now,
    )
}

/// Deletes every message sent before `cutoff` (the organisation's maximum
/// retention), as [`expire`] does.
pub(super) fn expire_sent_before(
    conn: &Connection,
    cutoff: u64,
) -> Result<Vec<(GroupId, MessageId)>> {
    delete_where(
        conn,
        "SELECT group_id, message_id FROM messages WHERE sent_at <= ?1",
        cutoff,
    )
}

/// When the oldest message kept was sent (by the `messages_by_sent`
/// index).
pub(super) fn oldest(conn: &Connection) -> Result<Option<u64>> {
    let at: Option<i64> = conn.query_row("SELECT MIN(sent_at) FROM messages", [], |r| r.get(0))?;
    Ok(at.map(|t| t.max(0) as u64))
}

/// Deletes the messages `select` (group id, message id; one parameter)
/// finds, with what hangs off them.
fn delete_where(conn: &Connection, select: &str, param: u64) -> Result<Vec<(GroupId, MessageId)>> {
    let mut stmt = conn.prepare(select)?;
    let due = stmt
        .query_map([param as i64], |r| {
            let id: Vec<u8> = r.get(1)?;
            Ok((blob16(r.get(0)?, GroupId)?, id))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut gone = Vec::with_capacity(due.len());
    for (group, id) in due {
        // The reactions to it, its earlier versions, who received it, and
        // (by the search triggers) its index entries go with it.
        conn.execute("DELETE FROM reactions WHERE target_id = ?1", [&id])?;
        conn.execute("DELETE FROM message_versions WHERE message_id = ?1", [&id])?;
        conn.execute("DELETE FROM recipients WHERE message_id = ?1", [&id])?;
        conn.execute("DELETE FROM messages WHERE message_id = ?1", [&id])?;
        if let Some(id) = MessageId::from_bytes(&id) {
            gone.push((group, id));
        }
    }
    Ok(gone)
}

/// When the next message disappears, if any will.
pub(super) fn next(conn: &Connection) -> Result<Option<u64>> {
    let at: Option<i64> = conn.query_row(
        "SELECT MIN(expires_at) FROM messages WHERE expires_at IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    Ok(at.map(|t| t as u64))
}

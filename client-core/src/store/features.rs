//! The store's side of the message features: the versions an edit
//! replaced, deletes for everyone, reactions, and the salts of our MIMI
//! messages.

use cascade_protocol::{GroupId, UserId};
use rusqlite::{params, Connection, OptionalExtension};

use super::{blob16, Message, MessageVersion, Reaction, Reactions};
use crate::content::{Mention, MessageId};
use crate::error::Result;

fn id_column(i: usize, b: Vec<u8>) -> rusqlite::Result<MessageId> {
    MessageId::from_bytes(&b).ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(i, "message id".into(), rusqlite::types::Type::Blob)
    })
}

pub(super) fn set_salt(conn: &Connection, id: &MessageId, salt: &[u8; 16]) -> Result<()> {
    conn.execute(
        "UPDATE messages SET salt = ?2 WHERE message_id = ?1",
        params![id.as_bytes(), salt.as_slice()],
    )?;
    Ok(())
}

pub(super) fn salt(conn: &Connection, id: &MessageId) -> Result<Option<[u8; 16]>> {
    let salt: Option<Option<Vec<u8>>> = conn
        .query_row(
            "SELECT salt FROM messages WHERE message_id = ?1",
            [id.as_bytes()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(salt.flatten().and_then(|s| s.try_into().ok()))
}

/// Schema version 7: the people a message's text mentions (JSON, as
/// [`super::mentions_column`] writes it; `NULL` for none), and a message's
/// attachment (JSON of [`crate::content::Attachment`], key included: the
/// store is encrypted at rest).
pub(super) const SCHEMA_V7: &str = "
ALTER TABLE messages ADD COLUMN mentions TEXT;
ALTER TABLE messages ADD COLUMN attachment TEXT;
";

pub(super) fn set_attachment(
    conn: &Connection,
    id: &MessageId,
    attachment: &crate::content::Attachment,
) -> Result<()> {
    conn.execute(
        "UPDATE messages SET attachment = ?2 WHERE message_id = ?1",
        params![
            id.as_bytes(),
            serde_json::to_string(attachment).expect("an attachment serialises")
        ],
    )?;
    Ok(())
}

pub(super) fn attachment(
    conn: &Connection,
    id: &MessageId,
) -> Result<Option<crate::content::Attachment>> {
    let json: Option<Option<String>> = conn
        .query_row(
            "SELECT attachment FROM messages WHERE message_id = ?1",
            [id.as_bytes()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(json.flatten().and_then(|j| serde_json::from_str(&j).ok()))
}

pub(super) fn edit(
    conn: &Connection,
    id: &MessageId,
    edit_id: &MessageId,
    text: &str,
    mentions: &[Mention],
    at: u64,
) -> Result<bool> {
    // The version replaced: the message's text, dated by its last edit or,
    // for the first, by its sending.
    let kept = conn.execute(
        "INSERT OR IGNORE INTO message_versions (message_id, group_id, edit_id, text, at)
         SELECT message_id, group_id, ?2, text, COALESCE(edited_at, sent_at)
         FROM messages WHERE message_id = ?1 AND text IS NOT NULL AND deleted_by IS NULL",
        params![id.as_bytes(), edit_id.as_bytes()],
    )?;
    if kept == 0 {
        return Ok(false);
    }
    conn.execute(
        "UPDATE messages SET text = ?2, edited_at = ?3, mentions = ?4 WHERE message_id = ?1",
        params![
            id.as_bytes(),
            text,
            at as i64,
            super::mentions_column(mentions)
        ],
    )?;
    Ok(true)
}

pub(super) fn versions(conn: &Connection, id: &MessageId) -> Result<Vec<MessageVersion>> {
    let mut stmt =
        conn.prepare("SELECT text, at FROM message_versions WHERE message_id = ?1 ORDER BY rowid")?;
    let out = stmt
        .query_map([id.as_bytes()], |r| {
            Ok(MessageVersion {
                text: r.get(0)?,
                at: r.get::<_, i64>(1)? as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(out)
}

pub(super) fn erase(conn: &Connection, id: &MessageId, by: &UserId) -> Result<()> {
    conn.execute(
        "UPDATE messages SET text = NULL, salt = NULL, mentions = NULL, attachment = NULL,
         deleted_by = ?2 WHERE message_id = ?1",
        params![id.as_bytes(), by.as_str()],
    )?;
    conn.execute(
        "DELETE FROM message_versions WHERE message_id = ?1",
        [id.as_bytes()],
    )?;
    conn.execute(
        "DELETE FROM reactions WHERE target_id = ?1",
        [id.as_bytes()],
    )?;
    Ok(())
}

pub(super) fn insert_reaction(conn: &Connection, r: &Reaction, at: u64) -> Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO reactions (reaction_id, group_id, target_id, user_id, emoji, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            r.id.as_bytes(),
            r.group_id.as_bytes().as_slice(),
            r.target.as_bytes(),
            r.user.as_str(),
            r.emoji,
            at as i64
        ],
    )?;
    Ok(n == 1)
}

const REACTION_COLS: &str = "reaction_id, group_id, target_id, user_id, emoji";

fn row_to_reaction(r: &rusqlite::Row<'_>) -> rusqlite::Result<Reaction> {
    Ok(Reaction {
        id: id_column(0, r.get(0)?)?,
        group_id: blob16(r.get(1)?, GroupId)?,
        target: id_column(2, r.get(2)?)?,
        user: super::user_column(3, r.get(3)?)?,
        emoji: r.get(4)?,
    })
}

pub(super) fn reaction(conn: &Connection, id: &MessageId) -> Result<Option<Reaction>> {
    Ok(conn
        .query_row(
            &format!("SELECT {REACTION_COLS} FROM reactions WHERE reaction_id = ?1"),
            [id.as_bytes()],
            row_to_reaction,
        )
        .optional()?)
}

pub(super) fn reactions_to(conn: &Connection, target: &MessageId) -> Result<Vec<Reaction>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {REACTION_COLS} FROM reactions WHERE target_id = ?1 ORDER BY rowid"
    ))?;
    let out = stmt
        .query_map([target.as_bytes()], row_to_reaction)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(out)
}

pub(super) fn delete_reaction(conn: &Connection, id: &MessageId) -> Result<()> {
    conn.execute(
        "DELETE FROM reactions WHERE reaction_id = ?1",
        [id.as_bytes()],
    )?;
    Ok(())
}

/// Fills in each message's reactions: by emoji in the order first seen,
/// each person once.
pub(super) fn fill_reactions(conn: &Connection, messages: &mut [Message]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT emoji, user_id FROM reactions WHERE target_id = ?1 ORDER BY rowid",
    )?;
    for m in messages.iter_mut().filter(|m| m.deleted_by.is_none()) {
        let rows = stmt
            .query_map([m.id.as_bytes()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut out: Vec<Reactions> = Vec::new();
        for (emoji, user) in rows {
            let user = super::user_column(1, user)?;
            match out.iter_mut().find(|r| r.emoji == emoji) {
                Some(r) if r.users.contains(&user) => {}
                Some(r) => r.users.push(user),
                None => out.push(Reactions {
                    emoji,
                    users: vec![user],
                }),
            }
        }
        m.reactions = out;
    }
    Ok(())
}

//! Full-text search over the device's own history: an SQLite FTS5 index
//! with the trigram tokenizer, so that any three or more characters match
//! inside words ("amox" finds "amoxicillin"), case- and accent-blind.
//!
//! The index is external-content over `messages.text` and kept by triggers
//! in the same transaction as every insert, edit and delete, so it never
//! disagrees with history. Its `secure-delete` option removes a deleted
//! text's trigrams from the index itself (not only marks them), so a
//! message deleted for everyone leaves no searchable trace.

use cascade_protocol::{GroupId, UserId};
use rusqlite::{params_from_iter, types::Value, Connection};
use serde::{Deserialize, Serialize};

use super::{row_to_message, Message, MSG_COLS, QUOTE_JOIN};
use crate::error::Result;

/// Schema version 4: the search index and the triggers that keep it.
pub(super) const SCHEMA_V4: &str = "
CREATE VIRTUAL TABLE message_search USING fts5(
    text, content='messages', content_rowid='rowid',
    tokenize='trigram case_sensitive 0 remove_diacritics 1'
);
INSERT INTO message_search(message_search, rank) VALUES ('secure-delete', 1);
CREATE TRIGGER message_search_insert AFTER INSERT ON messages
WHEN new.text IS NOT NULL AND new.kind = 'text' BEGIN
    INSERT INTO message_search(rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER message_search_delete AFTER DELETE ON messages
WHEN old.text IS NOT NULL AND old.kind = 'text' BEGIN
    INSERT INTO message_search(message_search, rowid, text)
    VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER message_search_update AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO message_search(message_search, rowid, text)
    SELECT 'delete', old.rowid, old.text WHERE old.text IS NOT NULL AND old.kind = 'text';
    INSERT INTO message_search(rowid, text)
    SELECT new.rowid, new.text WHERE new.text IS NOT NULL AND new.kind = 'text';
END;
INSERT INTO message_search(message_search) VALUES ('rebuild');
";

/// The fewest characters a search word needs (the tokenizer's trigrams).
pub const MIN_SEARCH_CHARS: usize = 3;

/// What to look for, and where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Words, each of which must appear (anywhere in a word; any case).
    pub text: String,
    /// Only this conversation.
    pub group: Option<GroupId>,
    /// Only messages from this user.
    pub sender: Option<UserId>,
    /// Only messages sent at or after this time (ms since the Unix epoch).
    pub since: Option<u64>,
    /// Only messages sent before this time.
    pub until: Option<u64>,
    /// The most results, newest first.
    pub limit: u32,
}

/// One result: the message, its conversation's name, and where in its
/// text the words matched (byte ranges, in order, for highlighting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The message, as history shows it.
    pub message: Message,
    /// Its conversation's name.
    pub conversation: String,
    /// Byte ranges of its text that matched a word.
    pub matches: Vec<(usize, usize)>,
}

/// The words of a query: whitespace-separated, each at least
/// [`MIN_SEARCH_CHARS`] characters (shorter ones are dropped; a query of
/// none finds nothing).
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.chars().count() >= MIN_SEARCH_CHARS)
        .map(str::to_owned)
        .collect()
}

/// The FTS5 query for `words`: each a quoted string (so no word is read
/// as FTS5 syntax), all required.
fn fts_query(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ")
}

pub(super) fn search(conn: &Connection, q: &SearchQuery) -> Result<Vec<SearchHit>> {
    let words = words(&q.text);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = format!(
        "SELECT {MSG_COLS}, c.name FROM message_search s
         JOIN messages m ON m.rowid = s.rowid
         JOIN conversations c ON c.group_id = m.group_id
         {QUOTE_JOIN}
         WHERE message_search MATCH ?1 AND m.deleted_by IS NULL"
    );
    let mut args: Vec<Value> = vec![Value::Text(fts_query(&words))];
    if let Some(g) = &q.group {
        args.push(Value::Blob(g.as_bytes().to_vec()));
        // `+`: a filter on the matches, never the plan's driver (from
        // the conversation's index, a search scanned all of its rows:
        // 20 ms at 1,000,000 messages, docs/benchmarks.md).
        sql.push_str(&format!(" AND +m.group_id = ?{}", args.len()));
    }
    if let Some(u) = &q.sender {
        args.push(Value::Text(u.as_str().to_owned()));
        sql.push_str(&format!(" AND m.sender = ?{}", args.len()));
    }
    if let Some(t) = q.since {
        args.push(Value::Integer(t as i64));
        sql.push_str(&format!(" AND m.sent_at >= ?{}", args.len()));
    }
    if let Some(t) = q.until {
        args.push(Value::Integer(t as i64));
        sql.push_str(&format!(" AND m.sent_at < ?{}", args.len()));
    }
    args.push(Value::Integer(i64::from(q.limit)));
    sql.push_str(&format!(" ORDER BY s.rowid DESC LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let name_col = MSG_COLS.split(',').count();
    let mut hits = stmt
        .query_map(params_from_iter(args), |r| {
            Ok((row_to_message(r)?, r.get::<_, String>(name_col)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(|(message, conversation)| SearchHit {
            matches: matches(message.text.as_deref().unwrap_or(""), &words),
            message,
            conversation,
        })
        .collect::<Vec<_>>();
    let mut messages: Vec<Message> = hits.iter().map(|h| h.message.clone()).collect();
    super::features::fill_reactions(conn, &mut messages)?;
    for (h, m) in hits.iter_mut().zip(messages) {
        h.message = m;
    }
    Ok(hits)
}

/// Where `words` occur in `text`, ignoring case (byte ranges, sorted,
/// overlaps merged). Accents are not folded here: a word that matched
/// only through that is found but not highlighted.
pub fn matches(text: &str, words: &[String]) -> Vec<(usize, usize)> {
    let lower: Vec<(usize, char)> = text
        .char_indices()
        .flat_map(|(i, c)| c.to_lowercase().map(move |l| (i, l)))
        .collect();
    let mut out: Vec<(usize, usize)> = Vec::new();
    for w in words {
        let w: Vec<char> = w.chars().flat_map(char::to_lowercase).collect();
        if w.is_empty() || w.len() > lower.len() {
            continue;
        }
        for start in 0..=lower.len() - w.len() {
            if lower[start..start + w.len()]
                .iter()
                .map(|(_, c)| *c)
                .eq(w.iter().copied())
            {
                let from = lower[start].0;
                let last = lower[start + w.len() - 1].0;
                let to = last + text[last..].chars().next().map_or(0, char::len_utf8);
                out.push((from, to));
            }
        }
    }
    out.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (a, b) in out {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_and_short_ones_dropped() {
        assert_eq!(words("  amox 5 mg  bay\"3 "), ["amox", "bay\"3"]);
        assert_eq!(
            fts_query(&words("amox bay\"3")),
            "\"amox\" AND \"bay\"\"3\""
        );
        assert!(words("a bc").is_empty());
    }

    #[test]
    fn matches_are_found_in_any_case_and_merged() {
        let text = "Amoxicillin 500 mg; AMOX again";
        assert_eq!(
            matches(text, &["amox".into(), "xic".into()]),
            [(0, 6), (20, 24)]
        );
        // Multi-byte text keeps its character boundaries.
        let text = "Überweisung für Bett 4";
        let m = matches(text, &["für".into()]);
        assert_eq!(&text[m[0].0..m[0].1], "für");
    }
}

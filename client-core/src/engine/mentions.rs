//! Mentions: `@` and a member's user id, typed in a text, become a mention
//! of that person, shown as `@` and the name their organisation certified
//! (protocol §14.1.1, rule 28).
//!
//! - **Sending.** [`resolve`] finds `@alice@north` where `alice@north` is a
//!   member of the conversation and writes `@Alice Smith` in its place,
//!   remembering the stretch of text. Anything else after an `@` stays as
//!   typed. The mention travels as a link to the person's MIMI URI.
//! - **Receiving.** The sender chose the link's text, so every receiver
//!   shows the certified name of the person the URI names instead
//!   ([`verify`]): a member cannot make a mention of Mallory read
//!   `@Dr Chief`. A link to someone who is not a member is no mention (its
//!   text stays, plain).
//! - **Editing.** [`as_typed`] gives the text back with each mention as its
//!   user id, for an edit box.
//!
//! A mention of this user notifies even in a muted conversation
//! ([`super::Engine::notifies`]).

use std::collections::HashMap;

use cascade_protocol::{GroupId, UserId};

use super::groups;
use crate::content::mapping::MAX_MENTIONS;
use crate::content::Mention;
use crate::error::Result;
use crate::store::ClientStore;

/// The certified name of each member of a conversation, by user (from
/// their most recently certified device).
pub(crate) fn names(
    store: &dyn ClientStore,
    group_id: &GroupId,
) -> Result<HashMap<UserId, String>> {
    let group = groups::read(store, group_id)?;
    let mut newest: HashMap<UserId, (i64, String)> = HashMap::new();
    for c in groups::member_certs(&group)? {
        let e = newest
            .entry(c.user)
            .or_insert((c.expires, c.display_name.clone()));
        if e.0 < c.expires {
            *e = (c.expires, c.display_name);
        }
    }
    Ok(newest.into_iter().map(|(u, (_, n))| (u, n)).collect())
}

/// Whether `c` may be part of a user id's organisation (the last part of
/// a handle): a handle ends where such characters do.
fn org_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// The text to send for `typed`: each `@<user id>` of a member (in
/// `names`) becomes `@<their name>`, a mention. At most [`MAX_MENTIONS`].
pub fn resolve(typed: &str, names: &HashMap<UserId, String>) -> (String, Vec<Mention>) {
    let mut out = String::with_capacity(typed.len());
    let mut mentions = Vec::new();
    let mut rest = typed;
    while let Some(at) = rest.find('@') {
        let (before, from_at) = rest.split_at(at);
        out.push_str(before);
        // An `@` inside a word (an e-mail address) is not a mention.
        let in_word = out
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || "._-@".contains(c));
        let handle = &from_at[1..];
        let found = (!in_word && mentions.len() < MAX_MENTIONS)
            .then(|| {
                names
                    .iter()
                    .filter(|(user, _)| {
                        let id = user.as_str();
                        handle.len() >= id.len()
                            && handle.is_char_boundary(id.len())
                            && handle[..id.len()].eq_ignore_ascii_case(id)
                            && !handle[id.len()..]
                                .starts_with(|c: char| org_char(c.to_ascii_lowercase()))
                    })
                    .max_by_key(|(user, _)| user.as_str().len())
            })
            .flatten();
        match found {
            Some((user, name)) => {
                let start = out.len();
                out.push('@');
                out.push_str(name);
                mentions.push(Mention {
                    user_id: user.clone(),
                    start: start as u32,
                    end: out.len() as u32,
                });
                rest = &handle[user.as_str().len()..];
            }
            None => {
                out.push('@');
                rest = handle;
            }
        }
    }
    out.push_str(rest);
    (out, mentions)
}

/// What a receiver shows for a text and the mentions its sender claimed:
/// each mention of a member reads `@<their certified name>`; one of anyone
/// else (or out of place) is dropped, its text kept.
pub fn verify(
    text: &str,
    claimed: &[Mention],
    names: &HashMap<UserId, String>,
) -> (String, Vec<Mention>) {
    let mut out = String::with_capacity(text.len());
    let mut mentions = Vec::new();
    let mut at = 0;
    for m in claimed {
        let r = m.range();
        if r.start < at
            || r.end <= r.start
            || r.end > text.len()
            || !text.is_char_boundary(r.start)
            || !text.is_char_boundary(r.end)
        {
            continue;
        }
        let Some(name) = names.get(&m.user_id) else {
            continue;
        };
        out.push_str(&text[at..r.start]);
        let start = out.len();
        out.push('@');
        out.push_str(name);
        mentions.push(Mention {
            user_id: m.user_id.clone(),
            start: start as u32,
            end: out.len() as u32,
        });
        at = r.end;
    }
    out.push_str(&text[at..]);
    (out, mentions)
}

/// [`verify`] against the conversation's members, reading them only if
/// there is a mention to check.
pub(crate) fn verified(
    store: &dyn ClientStore,
    group_id: &GroupId,
    text: String,
    claimed: Vec<Mention>,
) -> Result<(String, Vec<Mention>)> {
    if claimed.is_empty() {
        return Ok((text, claimed));
    }
    Ok(verify(&text, &claimed, &names(store, group_id)?))
}

/// The text as it would be typed: each mention as `@` and the user id, so
/// that sending it again (an edit) mentions the same people.
pub fn as_typed(text: &str, mentions: &[Mention]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for m in mentions {
        let r = m.range();
        if r.start < at || r.end > text.len() || !text.is_char_boundary(r.start) {
            continue;
        }
        if !text.is_char_boundary(r.end) {
            continue;
        }
        out.push_str(&text[at..r.start]);
        out.push('@');
        out.push_str(m.user_id.as_str());
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

/// A text cut into what front ends show: plain stretches and mentions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// The characters shown.
    pub text: String,
    /// The person, if this stretch is a mention of them.
    pub mention: Option<UserId>,
}

/// `text` cut at its mentions.
pub fn segments(text: &str, mentions: &[Mention]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut at = 0;
    let plain = |s: &str| Segment {
        text: s.to_owned(),
        mention: None,
    };
    for m in mentions {
        let r = m.range();
        if r.start < at
            || r.end > text.len()
            || !text.is_char_boundary(r.start)
            || !text.is_char_boundary(r.end)
        {
            continue;
        }
        if r.start > at {
            out.push(plain(&text[at..r.start]));
        }
        out.push(Segment {
            text: text[r.clone()].to_owned(),
            mention: Some(m.user_id.clone()),
        });
        at = r.end;
    }
    if at < text.len() {
        out.push(plain(&text[at..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::new(s).expect("valid")
    }

    fn ward() -> HashMap<UserId, String> {
        [
            (user("alice@north"), "Alice Smith".to_owned()),
            (user("bob@south"), "Bob Jones".to_owned()),
            (user("bob.k@south"), "Bob King".to_owned()),
        ]
        .into()
    }

    fn mention(u: &str, start: u32, end: u32) -> Mention {
        Mention {
            user_id: user(u),
            start,
            end,
        }
    }

    #[test]
    fn a_typed_handle_of_a_member_becomes_a_mention() {
        let (text, mentions) = resolve("@bob@south, bed 4 please (cc @Alice@North).", &ward());
        assert_eq!(text, "@Bob Jones, bed 4 please (cc @Alice Smith).");
        assert_eq!(
            mentions,
            vec![mention("bob@south", 0, 10), mention("alice@north", 29, 41)]
        );
        assert_eq!(
            as_typed(&text, &mentions),
            "@bob@south, bed 4 please (cc @alice@north)."
        );
    }

    #[test]
    fn the_longest_handle_wins_and_others_stay_as_typed() {
        let (text, mentions) = resolve("@bob.k@south and @bob@southwest", &ward());
        assert_eq!(text, "@Bob King and @bob@southwest");
        assert_eq!(mentions, vec![mention("bob.k@south", 0, 9)]);
        let typed = "mail carol@north or @carol@north or me@bob@south";
        assert_eq!(resolve(typed, &ward()), (typed.to_owned(), vec![]));
    }

    #[test]
    fn a_receiver_shows_the_certified_name() {
        // Mallory's link text says "@Dr Chief" but names Bob.
        let (text, mentions) = verify("ask @Dr Chief now", &[mention("bob@south", 4, 13)], &ward());
        assert_eq!(text, "ask @Bob Jones now");
        assert_eq!(mentions, vec![mention("bob@south", 4, 14)]);
        // Someone not in the conversation is no mention.
        let (text, mentions) = verify("ask @Carol now", &[mention("carol@north", 4, 10)], &ward());
        assert_eq!(text, "ask @Carol now");
        assert!(mentions.is_empty());
        // Out of place, overlapping or off a character boundary: dropped.
        let (text, mentions) = verify(
            "é @x @y",
            &[
                mention("bob@south", 1, 4),
                mention("bob@south", 3, 5),
                mention("alice@north", 3, 99),
                mention("alice@north", 6, 8),
            ],
            &ward(),
        );
        assert_eq!(text, "é @Bob Jones @Alice Smith");
        assert_eq!(
            mentions,
            vec![mention("bob@south", 3, 13), mention("alice@north", 14, 26)]
        );
    }

    #[test]
    fn segments_cut_at_mentions() {
        let s = segments("hi @Bob Jones!", &[mention("bob@south", 3, 13)]);
        assert_eq!(
            s,
            vec![
                Segment {
                    text: "hi ".into(),
                    mention: None
                },
                Segment {
                    text: "@Bob Jones".into(),
                    mention: Some(user("bob@south"))
                },
                Segment {
                    text: "!".into(),
                    mention: None
                },
            ]
        );
    }

    #[test]
    fn no_more_than_the_limit() {
        let typed = "@bob@south ".repeat(MAX_MENTIONS + 3);
        let (_, mentions) = resolve(&typed, &ward());
        assert_eq!(mentions.len(), MAX_MENTIONS);
    }
}

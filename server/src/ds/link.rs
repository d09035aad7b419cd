//! `LinkPut` and `LinkGet`: link sessions, the relay's small mailbox
//! between two devices of one user while one links the other (protocol
//! §3.7, §14.12). A session is the new device's offer, the existing
//! device's answer and where the sealed history is, each written once,
//! under the code the new device shows, and seen only by devices of the
//! same user. Sessions live in memory for [`LINK_TTL_SECS`]: a relay that
//! restarts forgets them, and the devices start again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cascade_protocol::frames::{Bytes, LinkSlot, Response};
use cascade_protocol::limits::{
    LINK_SESSIONS_PER_USER, LINK_TTL_SECS, MAX_LINK_CODE, MAX_LINK_PAYLOAD,
};
use cascade_protocol::{RateScope, UserId};

use super::Session;
use crate::error::DsError;
use crate::AppState;

/// Most link sessions the relay holds in all (each at most three slots of
/// [`MAX_LINK_PAYLOAD`]); past it, new ones wait for old ones to lapse.
pub const MAX_LINK_SESSIONS: usize = 10_000;

struct LinkSession {
    opened: Instant,
    slots: HashMap<LinkSlot, Bytes>,
}

/// The open link sessions, by user and code.
#[derive(Default)]
pub struct Links {
    sessions: Mutex<HashMap<(UserId, String), LinkSession>>,
}

fn ttl() -> Duration {
    Duration::from_secs(LINK_TTL_SECS)
}

fn check_code(code: &str) -> Result<(), DsError> {
    if code.is_empty() || code.len() > MAX_LINK_CODE || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DsError::Malformed("a link code is 1 to 16 digits"));
    }
    Ok(())
}

impl Links {
    /// Writes a slot of `user`'s session `code`.
    pub fn put(
        &self,
        user: &UserId,
        code: &str,
        slot: LinkSlot,
        payload: Bytes,
    ) -> Result<(), DsError> {
        check_code(code)?;
        if payload.len() > MAX_LINK_PAYLOAD {
            return Err(DsError::TooLarge {
                limit: MAX_LINK_PAYLOAD as u64,
            });
        }
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("link sessions");
        sessions.retain(|_, s| now.duration_since(s.opened) < ttl());
        let key = (user.clone(), code.to_owned());
        match (sessions.get_mut(&key), slot) {
            (Some(_), LinkSlot::Offer) => {
                Err(DsError::Malformed("a link session with this code is open"))
            }
            (None, LinkSlot::Offer) => {
                let open = sessions.keys().filter(|(u, _)| u == user).count();
                if open >= LINK_SESSIONS_PER_USER || sessions.len() >= MAX_LINK_SESSIONS {
                    let oldest = sessions.values().map(|s| s.opened).min().unwrap_or(now);
                    let wait = ttl().saturating_sub(now.duration_since(oldest));
                    return Err(DsError::RateLimited {
                        retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        scope: RateScope::Link,
                    });
                }
                sessions.insert(
                    key,
                    LinkSession {
                        opened: now,
                        slots: HashMap::from([(LinkSlot::Offer, payload)]),
                    },
                );
                Ok(())
            }
            (None, _) => Err(DsError::Malformed("no link session with this code")),
            (Some(s), slot) => {
                if s.slots.contains_key(&slot) {
                    return Err(DsError::Malformed(
                        "this part of the link session is written",
                    ));
                }
                if slot == LinkSlot::Ready && !s.slots.contains_key(&LinkSlot::Answer) {
                    return Err(DsError::Malformed("the link session has no answer yet"));
                }
                s.slots.insert(slot, payload);
                Ok(())
            }
        }
    }

    /// Reads a slot of `user`'s session `code`: `None` if it is not
    /// written, or there is no such session of this user's.
    pub fn get(&self, user: &UserId, code: &str, slot: LinkSlot) -> Result<Option<Bytes>, DsError> {
        check_code(code)?;
        let sessions = self.sessions.lock().expect("link sessions");
        Ok(sessions
            .get(&(user.clone(), code.to_owned()))
            .filter(|s| s.opened.elapsed() < ttl())
            .and_then(|s| s.slots.get(&slot).cloned()))
    }

    /// How many sessions are held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.sessions.lock().expect("link sessions").len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `LinkPut`.
pub fn put(
    state: &AppState,
    session: &Session,
    code: &str,
    slot: LinkSlot,
    payload: Bytes,
) -> Result<Response, DsError> {
    state.links().put(&session.user_id, code, slot, payload)?;
    Ok(Response::LinkStored)
}

/// `LinkGet`.
pub fn get(
    state: &AppState,
    session: &Session,
    code: &str,
    slot: LinkSlot,
) -> Result<Response, DsError> {
    let payload = state.links().get(&session.user_id, code, slot)?;
    Ok(Response::LinkSlot { payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(u: &str) -> UserId {
        UserId::new(u).expect("user")
    }

    fn b(x: u8) -> Bytes {
        Bytes::from(vec![x; 8])
    }

    #[test]
    fn a_session_is_seen_by_its_user_only_and_each_slot_written_once() {
        let links = Links::default();
        let alice = user("alice@north");
        let mallory = user("mallory@east");
        links
            .put(&alice, "12345678", LinkSlot::Offer, b(1))
            .expect("offer");
        assert_eq!(
            links.get(&alice, "12345678", LinkSlot::Offer).expect("get"),
            Some(b(1))
        );
        assert_eq!(
            links
                .get(&mallory, "12345678", LinkSlot::Offer)
                .expect("get"),
            None,
            "another user sees nothing"
        );
        assert!(
            links
                .put(&mallory, "12345678", LinkSlot::Answer, b(2))
                .is_err(),
            "nor answers it"
        );
        assert!(links
            .put(&alice, "12345678", LinkSlot::Ready, b(3))
            .is_err());
        links
            .put(&alice, "12345678", LinkSlot::Answer, b(2))
            .expect("answer");
        assert!(
            links
                .put(&alice, "12345678", LinkSlot::Answer, b(9))
                .is_err(),
            "a second answer is refused"
        );
        assert!(links
            .put(&alice, "12345678", LinkSlot::Offer, b(9))
            .is_err());
        links
            .put(&alice, "12345678", LinkSlot::Ready, b(3))
            .expect("ready");
        assert_eq!(
            links
                .get(&alice, "12345678", LinkSlot::Answer)
                .expect("get"),
            Some(b(2))
        );
    }

    #[test]
    fn bad_codes_big_payloads_and_too_many_sessions_are_refused() {
        let links = Links::default();
        let alice = user("alice@north");
        for code in ["", "12ab", "12345678901234567"] {
            assert!(links.put(&alice, code, LinkSlot::Offer, b(1)).is_err());
        }
        assert!(matches!(
            links.put(
                &alice,
                "1",
                LinkSlot::Offer,
                Bytes::from(vec![0; MAX_LINK_PAYLOAD + 1])
            ),
            Err(DsError::TooLarge { .. })
        ));
        for i in 0..LINK_SESSIONS_PER_USER {
            links
                .put(&alice, &i.to_string(), LinkSlot::Offer, b(1))
                .expect("within the limit");
        }
        assert!(matches!(
            links.put(&alice, "99", LinkSlot::Offer, b(1)),
            Err(DsError::RateLimited {
                scope: RateScope::Link,
                ..
            })
        ));
        links
            .put(&user("bob@north"), "99", LinkSlot::Offer, b(1))
            .expect("another user's own limit");
    }
}

//! What front ends read: members (by device and by person), safety numbers.

use std::collections::HashMap;

use cascade_protocol::{DeviceId, DirectoryEntry, GroupId, OrgId, UserId};
use serde::{Deserialize, Serialize};

use super::groups;
use super::trust::Trust;
use super::Me;
use crate::error::{InvalidInput, Result};
use crate::store::{ClientStore, Person};

/// A member device of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The user.
    pub user_id: UserId,
    /// One of the user's devices (one MLS leaf).
    pub device_id: DeviceId,
    /// Whether this is the local device.
    pub is_self: bool,
    /// The user's name, as their organisation's CA certified it.
    pub display_name: String,
    /// The user's role, as certified.
    pub role: String,
    /// The organisation that certified the device.
    pub org_id: OrgId,
    /// When the device's certificate expires, seconds since the Unix epoch.
    pub certificate_expires: i64,
}

/// A person in a conversation, with their devices: what a member list
/// shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// The user.
    pub user_id: UserId,
    /// Their certified name (from their most recently certified device).
    pub display_name: String,
    /// Their certified role.
    pub role: String,
    /// Their role in this conversation (`None` in one created before
    /// conversation roles).
    pub conversation_role: Option<super::room::Role>,
    /// Their organisation.
    pub org_id: OrgId,
    /// Whether this is the local user.
    pub is_me: bool,
    /// Their devices in the conversation, sorted by id.
    pub devices: Vec<ParticipantDevice>,
}

/// One device of a [`Participant`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantDevice {
    /// The device.
    pub device_id: DeviceId,
    /// Whether it is this device.
    pub is_this_device: bool,
    /// When its certificate expires, seconds since the Unix epoch.
    pub certificate_expires: i64,
}

/// The conversation's member devices, from the MLS group state.
pub(crate) fn members(store: &dyn ClientStore, me: &Me, group_id: &GroupId) -> Result<Vec<Member>> {
    let group = groups::read(store, group_id)?;
    Ok(groups::member_certs(&group)?
        .into_iter()
        .map(|m| Member {
            is_self: m.device == me.identity.device_id,
            user_id: m.user,
            device_id: m.device,
            display_name: m.display_name,
            role: m.role,
            org_id: m.org,
            certificate_expires: m.expires,
        })
        .collect())
}

/// The conversation's members grouped by person: this user first, then by
/// name.
pub(crate) fn participants(
    store: &dyn ClientStore,
    me: &Me,
    group_id: &GroupId,
) -> Result<Vec<Participant>> {
    let mut by_user: Vec<Participant> = Vec::new();
    let mut newest: HashMap<UserId, i64> = HashMap::new();
    for m in members(store, me, group_id)? {
        let device = ParticipantDevice {
            device_id: m.device_id,
            is_this_device: m.is_self,
            certificate_expires: m.certificate_expires,
        };
        match by_user.iter_mut().find(|p| p.user_id == m.user_id) {
            Some(p) => {
                p.devices.push(device);
                // The latest certificate names them as they are now.
                if newest
                    .get(&m.user_id)
                    .is_some_and(|t| *t < m.certificate_expires)
                {
                    p.display_name = m.display_name;
                    p.role = m.role;
                    newest.insert(m.user_id, m.certificate_expires);
                }
            }
            None => {
                newest.insert(m.user_id.clone(), m.certificate_expires);
                by_user.push(Participant {
                    is_me: m.user_id == me.identity.user_id,
                    user_id: m.user_id,
                    display_name: m.display_name,
                    role: m.role,
                    conversation_role: None,
                    org_id: m.org_id,
                    devices: vec![device],
                });
            }
        }
    }
    let room = super::room::of(&*groups::read(store, group_id)?);
    let users: std::collections::BTreeSet<UserId> =
        by_user.iter().map(|p| p.user_id.clone()).collect();
    for p in &mut by_user {
        p.devices.sort_by_key(|d| d.device_id);
        p.conversation_role = room.as_ref().map(|r| r.role_of(&p.user_id, &users));
    }
    by_user.sort_by(|a, b| {
        b.is_me
            .cmp(&a.is_me)
            .then_with(|| {
                a.display_name
                    .to_lowercase()
                    .cmp(&b.display_name.to_lowercase())
            })
            .then_with(|| a.user_id.cmp(&b.user_id))
    });
    Ok(by_user)
}

/// Verifies directory entries: a person is shown only with a certificate
/// that verifies against our anchors and names them (so the relay cannot
/// invent or rename colleagues), and is cached for offline search.
pub(crate) fn verify_directory(
    store: &dyn ClientStore,
    trust: &Trust,
    entries: Vec<DirectoryEntry>,
    now: u64,
) -> Result<Vec<Person>> {
    let mut people = Vec::new();
    for entry in entries {
        let mut person: Option<Person> = None;
        for cert in &entry.certificates {
            let Ok(m) = trust.verify_certificate(cert, now) else {
                continue;
            };
            if m.claims.user != entry.user_id {
                continue;
            }
            match &mut person {
                Some(p) => p.devices += 1,
                None => {
                    person = Some(Person {
                        user_id: m.claims.user,
                        org_id: m.org,
                        display_name: m.claims.display_name,
                        role: m.claims.role,
                        devices: 1,
                    })
                }
            }
        }
        if let Some(p) = person {
            store.put_person(&p, now)?;
            people.push(p);
        }
    }
    Ok(people)
}

/// The safety number of this user and `other` in a conversation (see
/// [`safety_number`]).
pub(crate) fn conversation_safety_number(
    store: &dyn ClientStore,
    me: &Me,
    group_id: &GroupId,
    other: &UserId,
) -> Result<String> {
    let group = groups::read(store, group_id)?;
    let mut keys: HashMap<UserId, Vec<(DeviceId, Vec<u8>)>> = HashMap::new();
    for m in groups::member_certs(&group)? {
        keys.entry(m.user)
            .or_default()
            .push((m.device, m.signature_key));
    }
    let mine = keys
        .remove(&me.identity.user_id)
        .unwrap_or_else(|| vec![(me.identity.device_id, me.signer.public().to_vec())]);
    let theirs = keys
        .remove(other)
        .ok_or_else(|| InvalidInput::NotInConversation(other.clone()))?;
    Ok(safety_number((&me.identity.user_id, mine), (other, theirs)))
}

/// 30 digits for one user's device keys: an iterated SHA-256 over the user
/// id and the sorted (device, key) pairs (iterated so that finding another
/// key set with the same digits is costly, as in Signal's safety numbers).
fn safety_digits(user: &UserId, mut devices: Vec<(DeviceId, Vec<u8>)>) -> String {
    use sha2::{Digest, Sha256};
    devices.sort();
    let mut input = b"cascade-safety-number-v1\0".to_vec();
    input.extend_from_slice(user.as_str().as_bytes());
    input.push(0);
    for (d, k) in &devices {
        input.extend_from_slice(d.as_bytes());
        input.extend_from_slice(&(k.len() as u32).to_be_bytes());
        input.extend_from_slice(k);
    }
    let mut h = Sha256::digest(&input).to_vec();
    for _ in 0..1023 {
        let mut next = Sha256::new();
        next.update(&h);
        next.update(&input);
        h = next.finalize().to_vec();
    }
    h[..30]
        .chunks(5)
        .map(|c| {
            let v = c.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
            format!("{:05}", v % 100_000)
        })
        .collect()
}

/// The safety number of two users: both halves, lower user id first, in
/// groups of five digits: 60 digits in 12 groups of 5, identical on both
/// sides, changing whenever either user's set of device keys changes.
pub fn safety_number(
    a: (&UserId, Vec<(DeviceId, Vec<u8>)>),
    b: (&UserId, Vec<(DeviceId, Vec<u8>)>),
) -> String {
    let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let digits = safety_digits(first.0, first.1) + &safety_digits(second.0, second.1);
    digits
        .as_bytes()
        .chunks(5)
        .map(|c| std::str::from_utf8(c).expect("ASCII digits"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::new(s).expect("valid")
    }

    #[test]
    fn safety_numbers_are_symmetric_and_change_with_keys() {
        let a = vec![(DeviceId([1; 16]), vec![1; 32])];
        let b = vec![
            (DeviceId([2; 16]), vec![2; 32]),
            (DeviceId([3; 16]), vec![3; 32]),
        ];
        let ab = safety_number((&user("alice@n"), a.clone()), (&user("bob@e"), b.clone()));
        let ba = safety_number((&user("bob@e"), b.clone()), (&user("alice@n"), a.clone()));
        assert_eq!(ab, ba);
        assert_eq!(ab.len(), 60 + 11, "12 groups of 5 digits");
        assert!(ab
            .split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit())));
        // Device order does not matter; a changed key does.
        let b_rev: Vec<_> = b.iter().rev().cloned().collect();
        assert_eq!(
            ab,
            safety_number((&user("alice@n"), a.clone()), (&user("bob@e"), b_rev))
        );
        let mut b2 = b.clone();
        b2[1].1 = vec![4; 32];
        assert_ne!(
            ab,
            safety_number((&user("alice@n"), a), (&user("bob@e"), b2))
        );
    }
}

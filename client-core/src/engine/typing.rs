//! Typing indicators (protocol §14.9): ephemeral, never stored, and not MLS
//! messages.
//!
//! An indicator is not sent through the group's MLS ratchets: it travels
//! live only, outside the relay's order, so sending it as an application
//! message would consume generations that devices offline never see and
//! arrive out of order with the messages around it. Instead it is sealed
//! with a key every member derives from the epoch (the MLS exporter,
//! label [`LABEL`]), bound to the group, the epoch and the sending device,
//! and signed with the device's MLS signature key, so neither the relay nor
//! another member can make one device's indicator look like another's. The
//! relay passes it only to the group's connected devices and forgets it.
//!
//! - **Sending.** [`Engine::set_typing`] while the user types: at most one
//!   indicator every [`SEND_EVERY_MS`] per conversation; "stopped" only if
//!   "typing" went out lately. Offline, nothing is sent (nor kept).
//! - **Receiving.** [`Event::Typing`] with the time the indicator lapses
//!   ([`SHOWN_MS`] after it arrived) or 0 for "stopped", also when the
//!   person's message arrives. One older than the last from the same device
//!   (a replay), or sent more than [`MAX_AGE_MS`] before it arrived, is
//!   dropped. [`Engine::typing`] says who is typing now.

use std::collections::HashMap;

use cascade_protocol::frames::Request;
use cascade_protocol::{DeviceId, GroupId, UserId};
use openmls::prelude::MlsGroup;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;
use openmls_traits::OpenMlsProvider;

use super::effects::{Effects, Route};
use super::groups::{self, CIPHERSUITE};
use super::{Engine, Event, Me};
use crate::error::{CoreError, Result};
use crate::store::ClientStore;

/// The exporter label of the indicators' key, and the start of what the
/// signature covers.
pub const LABEL: &str = "cascade typing v1";

/// While the user types, an indicator goes at most this often.
pub const SEND_EVERY_MS: u64 = 3_000;

/// How long an indicator shows the person as typing, unless another
/// arrives.
pub const SHOWN_MS: u64 = 6_000;

/// An indicator sent this long before it arrived is dropped.
pub const MAX_AGE_MS: u64 = 300_000;

/// Octets of the nonce (the ciphersuite's AEAD nonce) and of the
/// signature (Ed25519).
const NONCE: usize = 12;
const SIGNATURE: usize = 64;

/// What the engine remembers of typing, in memory only.
#[derive(Debug, Default)]
pub(crate) struct Typing {
    /// When this device last said "typing", per conversation.
    sent: HashMap<GroupId, u64>,
    /// Until when each person shows as typing.
    shown: HashMap<(GroupId, UserId), u64>,
    /// The sender's time of the last indicator from each device.
    last: HashMap<DeviceId, u64>,
}

impl Typing {
    /// The person's message arrived: they are no longer typing it.
    pub(crate) fn message_from(&mut self, group: GroupId, user: &UserId) -> Option<Event> {
        self.shown
            .remove(&(group, user.clone()))
            .map(|_| Event::Typing {
                group_id: group,
                user_id: user.clone(),
                until: 0,
            })
    }

    /// This device sent a message: the next keystroke says "typing" again.
    pub(crate) fn sent_message(&mut self, group: &GroupId) {
        self.sent.remove(group);
    }

    /// Forgets what lapsed.
    fn prune(&mut self, now: u64) {
        self.shown.retain(|_, until| *until > now);
        self.sent.retain(|_, at| now < at.saturating_add(SHOWN_MS));
    }
}

/// What the signature covers: the label, the group, the epoch, the device,
/// and the indicator.
fn to_be_signed(group: &GroupId, epoch: u64, device: &DeviceId, typing: bool, at: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(LABEL.len() + 16 + 8 + 16 + 1 + 8);
    out.extend_from_slice(LABEL.as_bytes());
    out.extend_from_slice(group.as_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(device.as_bytes());
    out.push(u8::from(typing));
    out.extend_from_slice(&at.to_be_bytes());
    out
}

/// The associated data of the seal: the group, the epoch, the device.
fn aad(group: &GroupId, epoch: u64, device: &DeviceId) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(group.as_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(device.as_bytes());
    out
}

fn key(store: &dyn ClientStore, group: &MlsGroup) -> Result<Vec<u8>> {
    group
        .export_secret(
            store.mls().crypto(),
            LABEL,
            &[],
            CIPHERSUITE.aead_key_length(),
        )
        .map_err(|_| CoreError::Decode("the typing key"))
}

/// Seals an indicator of this device: the epoch and the payload.
pub(crate) fn seal(
    store: &dyn ClientStore,
    me: &Me,
    group_id: &GroupId,
    typing: bool,
    at: u64,
) -> Result<(u64, Vec<u8>)> {
    let group = groups::read(store, group_id)?;
    let epoch = group.epoch().as_u64();
    let device = me.identity.device_id;
    let signature = me
        .signer
        .sign(&to_be_signed(group_id, epoch, &device, typing, at))
        .map_err(|_| CoreError::Decode("a typing signature"))?;
    let mut plaintext = Vec::with_capacity(1 + 8 + SIGNATURE);
    plaintext.push(u8::from(typing));
    plaintext.extend_from_slice(&at.to_be_bytes());
    plaintext.extend_from_slice(&signature);
    let nonce: [u8; NONCE] = rand::random();
    let sealed = store
        .mls()
        .crypto()
        .aead_encrypt(
            CIPHERSUITE.aead_algorithm(),
            &key(store, &group)?,
            &plaintext,
            &nonce,
            &aad(group_id, epoch, &device),
        )
        .map_err(|_| CoreError::Decode("a typing seal"))?;
    let mut payload = nonce.to_vec();
    payload.extend_from_slice(&sealed);
    Ok((epoch, payload))
}

/// Opens an indicator from `sender`: who, typing or stopped, and the
/// sender's time. Fails for another epoch, a device not in the group, or a
/// seal or signature that does not verify.
pub(crate) fn open(
    store: &dyn ClientStore,
    group_id: &GroupId,
    epoch: u64,
    sender: &DeviceId,
    payload: &[u8],
) -> Result<(UserId, bool, u64)> {
    let bad = || CoreError::Decode("a typing indicator");
    let group = groups::read(store, group_id)?;
    if !group.is_active() || group.epoch().as_u64() != epoch || payload.len() < NONCE {
        return Err(bad());
    }
    let (nonce, sealed) = payload.split_at(NONCE);
    let provider = store.mls();
    let crypto = provider.crypto();
    let plaintext = crypto
        .aead_decrypt(
            CIPHERSUITE.aead_algorithm(),
            &key(store, &group)?,
            sealed,
            nonce,
            &aad(group_id, epoch, sender),
        )
        .map_err(|_| bad())?;
    if plaintext.len() != 1 + 8 + SIGNATURE || plaintext[0] > 1 {
        return Err(bad());
    }
    let typing = plaintext[0] == 1;
    let at = u64::from_be_bytes(plaintext[1..9].try_into().expect("8 octets"));
    let member = groups::member_certs(&group)?
        .into_iter()
        .find(|m| m.device == *sender)
        .ok_or_else(bad)?;
    crypto
        .verify_signature(
            CIPHERSUITE.signature_algorithm(),
            &to_be_signed(group_id, epoch, sender, typing, at),
            &member.signature_key,
            &plaintext[9..],
        )
        .map_err(|_| bad())?;
    Ok((member.user, typing, at))
}

impl<S: ClientStore> Engine<S> {
    /// The user is typing in a conversation (or stopped: cleared the
    /// draft). Sends an indicator to the members connected now when that
    /// changes what they see; at most one every [`SEND_EVERY_MS`]. Offline
    /// it does nothing: an indicator is never kept for later.
    pub fn set_typing(&mut self, group_id: &GroupId, typing: bool, now: u64) -> Result<()> {
        self.require(group_id, true)?;
        self.typing.prune(now);
        let last = self.typing.sent.get(group_id).copied();
        let send = match last {
            Some(at) if typing => now >= at.saturating_add(SEND_EVERY_MS),
            Some(_) => true,
            None => typing,
        };
        if typing {
            if send {
                self.typing.sent.insert(*group_id, now);
            }
        } else {
            self.typing.sent.remove(group_id);
        }
        let Some(me) = &self.me else {
            return Err(CoreError::NotEnrolled);
        };
        if !send || !self.conn.is_ready() {
            return Ok(());
        }
        let (epoch, payload) = seal(&self.store, me, group_id, typing, now)?;
        let mut fx = Effects::default();
        fx.request(
            Request::Typing {
                group_id: *group_id,
                epoch,
                payload: payload.into(),
            },
            Route::Forget,
        );
        self.apply(fx)
    }

    /// Who is typing in a conversation now (not this user), by user id.
    pub fn typing(&self, group_id: &GroupId, now: u64) -> Vec<UserId> {
        let mut users: Vec<UserId> = self
            .typing
            .shown
            .iter()
            .filter(|((g, _), until)| g == group_id && **until > now)
            .map(|((_, u), _)| u.clone())
            .collect();
        users.sort();
        users
    }

    /// An indicator from another member device arrived.
    pub(super) fn typing_arrived(
        &mut self,
        group_id: GroupId,
        sender: DeviceId,
        epoch: u64,
        payload: &[u8],
        now: u64,
    ) -> Option<Event> {
        let me = self.me.as_ref()?;
        let (user, typing, at) = match open(&self.store, &group_id, epoch, &sender, payload) {
            Ok(opened) => opened,
            Err(e) => {
                tracing::debug!(group = %group_id, error = %e, "a typing indicator was dropped");
                return None;
            }
        };
        if user == me.identity.user_id
            || at.saturating_add(MAX_AGE_MS) < now
            || self.typing.last.get(&sender).is_some_and(|last| at < *last)
        {
            return None;
        }
        self.typing.last.insert(sender, at);
        self.typing.prune(now);
        let until = if typing { now + SHOWN_MS } else { 0 };
        if typing {
            self.typing.shown.insert((group_id, user.clone()), until);
        } else if self
            .typing
            .shown
            .remove(&(group_id, user.clone()))
            .is_none()
        {
            return None;
        }
        Some(Event::Typing {
            group_id,
            user_id: user,
            until,
        })
    }
}

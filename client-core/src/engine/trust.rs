//! Whom this device trusts: the organisations' CAs it accepts members from
//! (its own and the partners in its organisation's signed trust list), the
//! devices those organisations revoked, and the gate that holds the
//! backlog until both are current.
//!
//! After authentication the queue is held back (the *gate*) until the
//! organisation's trust list and the revocation list of every organisation
//! then trusted are fetched and verified, so that queued Welcomes and
//! commits are judged by what the organisation trusts now, not by what it
//! trusted when the device was last online.

use std::collections::{HashMap, HashSet};

use cascade_protocol::{DeviceId, OrgId, Push, Request, SignedDocument};
use openmls::prelude::Credential;

use super::effects::{Effects, Route};
use super::groups;
use super::outbox::Op;
use super::{Event, Me};
use crate::credential::{verify_member, MemberIdentity};
use crate::error::{CoreError, CredentialError, Result};
use crate::identity::{
    verify_device_cert, verify_revocations, verify_trust_list, verify_wipe_order, DevicePolicy,
    TrustAnchor, TrustList, VerifiedMember,
};
use crate::store::Transactions;
use crate::store::{ClientStore, ConversationState};

/// Where the organisation's trust list is kept (`kv`).
const KV_TRUST_LIST: &str = "trust_list";
/// Prefix of where each trusted organisation's revocation list is kept.
const KV_REVOCATIONS: &str = "revocations:";

/// The backlog held until the trust and revocation lists are current.
struct Gate {
    /// Answers still awaited.
    outstanding: usize,
    /// Pushes held meanwhile, in order.
    held: Vec<Push>,
}

/// The trust state of this device.
#[derive(Default)]
pub(crate) struct Trust {
    /// The CAs whose members this device accepts: its own organisation's,
    /// then the partners its organisation's trust list pins.
    anchors: Vec<TrustAnchor>,
    /// Devices revoked by the organisations we trust, from their signed
    /// revocation lists.
    revoked: HashMap<OrgId, HashSet<DeviceId>>,
    /// What our organisation asks of this device, from its stored trust
    /// list (the defaults without one).
    policy: DevicePolicy,
    gate: Option<Gate>,
}

impl Trust {
    /// Loads the anchors and revocation lists kept in the store. A stored
    /// list that no longer verifies is ignored (the next fetch replaces
    /// it); the device's own organisation stays trusted whatever happens.
    pub fn load(store: &dyn ClientStore, me: Option<&Me>) -> Trust {
        let mut t = Trust::default();
        let Some(me) = me else { return t };
        t.anchors = load_anchors(store, me).unwrap_or_else(|e| {
            tracing::error!(error = %e, "trust anchors could not be loaded");
            Vec::new()
        });
        t.policy = match stored_document(store, KV_TRUST_LIST) {
            Ok(Some(doc)) => verify_own_trust_list(me, &doc)
                .map(|(list, _)| policy_of(&list))
                .unwrap_or_default(),
            Ok(None) => DevicePolicy::default(),
            Err(e) => {
                tracing::error!(error = %e, "the trust list could not be loaded");
                DevicePolicy::default()
            }
        };
        for anchor in &t.anchors {
            let key = format!("{KV_REVOCATIONS}{}", anchor.org);
            match stored_document(store, &key).map(|d| d.map(|d| verify_revocations(&d, anchor))) {
                Ok(Some(Ok(list))) => {
                    t.revoked
                        .insert(anchor.org.clone(), list.devices.into_iter().collect());
                }
                Ok(None) => {}
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, org = %anchor.org, "stored revocation list no longer verifies")
                }
                Err(e) => tracing::error!(error = %e, "revocation lists could not be loaded"),
            }
        }
        t
    }

    /// What our organisation asks of this device.
    pub fn policy(&self) -> DevicePolicy {
        self.policy
    }

    /// The organisations whose members this device accepts (its own first).
    pub fn orgs(&self) -> Vec<OrgId> {
        let mut orgs: Vec<OrgId> = Vec::new();
        for a in &self.anchors {
            if !orgs.contains(&a.org) {
                orgs.push(a.org.clone());
            }
        }
        orgs
    }

    /// Whether `doc` is a revocation list of this device's own organisation,
    /// signed by its CA (or, during a rotation, its successor), that names
    /// this device. What the relay says counts for nothing here: only a
    /// list the organisation signed makes a device erase itself.
    pub fn revokes_me(&self, me: &Me, doc: &SignedDocument) -> bool {
        let own = &me.identity.org_id;
        self.anchors
            .iter()
            .filter(|anchor| &anchor.org == own)
            .any(|anchor| match verify_revocations(doc, anchor) {
                Ok(list) => &list.org == own && list.devices.contains(&me.identity.device_id),
                Err(e) => {
                    tracing::warn!(error = %e, "a revocation list offered for this device was refused");
                    false
                }
            })
    }

    /// Whether `doc` is a wipe order for this device signed by its own
    /// organisation's CA (any of its current anchors).
    pub fn wipes_me(&self, me: &Me, doc: &SignedDocument) -> bool {
        let own = &me.identity.org_id;
        self.anchors.iter().filter(|anchor| &anchor.org == own).any(
            |anchor| match verify_wipe_order(doc, anchor) {
                Ok(order) => order.device == me.identity.device_id,
                Err(e) => {
                    tracing::warn!(error = %e, "a wipe order offered for this device was refused");
                    false
                }
            },
        )
    }

    /// Whether an organisation we trust revoked this device.
    pub fn is_revoked(&self, org: &OrgId, device: &DeviceId) -> bool {
        self.revoked.get(org).is_some_and(|d| d.contains(device))
    }

    /// Verifies a member entering our view (`now` in ms) and returns who
    /// they are.
    pub fn verify(
        &self,
        credential: &Credential,
        signature_key: &[u8],
        now: u64,
    ) -> Result<MemberIdentity> {
        let m = verify_member(
            credential,
            signature_key,
            &self.anchors,
            (now / 1000) as i64,
            &|org, device| self.is_revoked(org, device),
        )?;
        Ok(MemberIdentity {
            user: m.claims.user,
            device: m.claims.device,
        })
    }

    /// Verifies a device certificate (a directory entry) against our
    /// anchors.
    pub fn verify_certificate(&self, der: &[u8], now: u64) -> Result<VerifiedMember> {
        Ok(verify_device_cert(
            der,
            &self.anchors,
            (now / 1000) as i64,
            &|org, device| self.is_revoked(org, device),
        )?)
    }

    // ----- the gate --------------------------------------------------------

    /// Authenticated: fetch the trust list and hold the backlog until it and
    /// the revocation lists are current.
    pub fn open_gate(&mut self, me: &Me, fx: &mut Effects) {
        self.gate = Some(Gate {
            outstanding: 1,
            held: Vec::new(),
        });
        fx.request(
            Request::GetTrustList {
                org_id: me.identity.org_id.clone(),
            },
            Route::TrustList { gate: true },
        );
    }

    /// The connection dropped: unacked items come again.
    pub fn close_gate(&mut self) {
        self.gate = None;
    }

    /// Holds a queue item (or `QueueDrained`) while the gate is up; returns
    /// the push if it may be handled now.
    pub fn hold(&mut self, push: Push) -> Option<Push> {
        match &mut self.gate {
            Some(gate) if matches!(push, Push::Deliver(_) | Push::QueueDrained) => {
                gate.held.push(push);
                None
            }
            _ => Some(push),
        }
    }

    /// One of the answers the gate waits for arrived (`more` further
    /// requests went out because of it). Returns the held pushes once none
    /// is outstanding.
    fn gate_answered(&mut self, more: usize) -> Option<Vec<Push>> {
        let gate = self.gate.as_mut()?;
        gate.outstanding = gate.outstanding + more - 1;
        if gate.outstanding > 0 {
            return None;
        }
        self.gate.take().map(|g| g.held)
    }

    // ----- trust lists -----------------------------------------------------

    /// Asks for the revocation list of every organisation we trust.
    /// Returns how many requests went out.
    pub fn fetch_revocations(&self, gate: bool, fx: &mut Effects) -> usize {
        let orgs = self.orgs();
        for org in &orgs {
            fx.request(
                Request::GetRevocations {
                    org_id: org.clone(),
                },
                Route::Revocations {
                    org: org.clone(),
                    gate,
                },
            );
        }
        orgs.len()
    }

    /// The relay answered a trust list request. Verifies and stores a newer
    /// list (a list the relay altered, or an older one, is refused and the
    /// current one kept), then asks for the revocation lists of the
    /// organisations now trusted. Returns the pushes the gate released, if
    /// this was the gate's request.
    pub fn handle_trust_list(
        &mut self,
        store: &dyn ClientStore,
        me: &Me,
        document: Option<SignedDocument>,
        gate: bool,
        fx: &mut Effects,
    ) -> Result<Option<Vec<Push>>> {
        let stored = match document {
            Some(doc) => self.store_trust_list(store, me, doc, fx),
            None => Ok(()),
        };
        let more = self.fetch_revocations(gate, fx);
        let released = if gate { self.gate_answered(more) } else { None };
        // Whatever happened to the list, the held queue goes on.
        stored.map(|()| released)
    }

    fn store_trust_list(
        &mut self,
        store: &dyn ClientStore,
        me: &Me,
        doc: SignedDocument,
        fx: &mut Effects,
    ) -> Result<()> {
        let (list, partners) = match verify_own_trust_list(me, &doc) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "trust list refused");
                fx.failed(
                    None,
                    format!("the organisation's trust list was refused: {e}"),
                );
                return Ok(());
            }
        };
        if let Some(old) = stored_document(store, KV_TRUST_LIST)? {
            if verify_own_trust_list(me, &old).is_ok_and(|(old, _)| old.serial >= list.serial) {
                return Ok(()); // not newer: keep what we have
            }
        }
        store_document(store, KV_TRUST_LIST, &doc)?;
        self.anchors = load_anchors(store, me)?;
        let policy = policy_of(&list);
        if policy != self.policy {
            self.policy = policy;
            fx.event(Event::PolicyUpdated(policy));
        }
        let own = &me.identity.org_id;
        let mut partner_orgs: Vec<OrgId> = partners
            .into_iter()
            .map(|a| a.org)
            .filter(|o| o != own)
            .collect();
        partner_orgs.dedup();
        fx.event(Event::TrustUpdated {
            partners: partner_orgs,
        });
        // Members of an organisation no longer trusted leave our groups.
        self.remove_unacceptable_members(store, me)
    }

    /// The relay answered a revocation list request: verifies and stores a
    /// newer list, then queues the removal of the devices it names from
    /// every conversation we share with them. Returns the pushes the gate
    /// released, if this was one of the gate's requests.
    pub fn handle_revocations(
        &mut self,
        store: &dyn ClientStore,
        me: &Me,
        org: &OrgId,
        document: Option<SignedDocument>,
        gate: bool,
    ) -> Result<Option<Vec<Push>>> {
        let stored = match document {
            Some(doc) => self.store_revocations(store, me, org, doc),
            None => Ok(()),
        };
        let released = if gate { self.gate_answered(0) } else { None };
        stored.map(|()| released)
    }

    fn store_revocations(
        &mut self,
        store: &dyn ClientStore,
        me: &Me,
        org: &OrgId,
        doc: SignedDocument,
    ) -> Result<()> {
        let Some(anchor) = self.anchors.iter().find(|a| &a.org == org).cloned() else {
            return Ok(()); // no longer trusted
        };
        let list = match verify_revocations(&doc, &anchor) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, org = %org, "revocation list refused");
                return Ok(());
            }
        };
        let key = format!("{KV_REVOCATIONS}{org}");
        if let Some(old) = stored_document(store, &key)? {
            if verify_revocations(&old, &anchor).is_ok_and(|o| o.serial >= list.serial) {
                return Ok(());
            }
        }
        store_document(store, &key, &doc)?;
        self.revoked
            .insert(org.clone(), list.devices.iter().copied().collect());
        self.remove_unacceptable_members(store, me)
    }

    /// Queues, for every conversation this device is in, the removal of
    /// members it no longer accepts: devices their organisation revoked,
    /// and members of organisations no longer trusted. Every member the
    /// conversation's policy lets remove others does this (and every member
    /// for its own user's devices); one commit wins and the others find
    /// nothing left to remove. Members who may not remove others leave it
    /// to those who may: a receiver that has not yet heard of the
    /// revocation would refuse their commit (protocol rule 25), while an
    /// admin's is judged by the role alone. The relay already refuses the
    /// revoked device meanwhile.
    fn remove_unacceptable_members(&self, store: &dyn ClientStore, me: &Me) -> Result<()> {
        let trusted = self.orgs();
        for conv in store.conversations(&|_| 0)? {
            // A device that asked to leave is still a member until someone
            // commits it, and may be the only one there to remove them.
            if !matches!(
                conv.state,
                ConversationState::Active | ConversationState::Leaving
            ) {
                continue;
            }
            let Ok(group) = groups::read(store, &conv.group_id) else {
                continue;
            };
            let Ok(members) = groups::member_certs(&group) else {
                continue;
            };
            let may_remove_others = match super::room::of(&group) {
                Some(room) => {
                    let users = groups::users(&group).into_iter().collect();
                    room.may(&me.identity.user_id, super::room::Action::Remove, &users)
                        .is_ok()
                }
                None => true,
            };
            let devices: Vec<DeviceId> = members
                .iter()
                .filter(|m| {
                    m.device != me.identity.device_id
                        && (may_remove_others || m.user == me.identity.user_id)
                        && (self.is_revoked(&m.org, &m.device) || !trusted.contains(&m.org))
                })
                .map(|m| m.device)
                .collect();
            if !devices.is_empty() {
                Op::RemoveDevices {
                    group_id: conv.group_id,
                    devices,
                }
                .queue(store)?;
            }
        }
        Ok(())
    }

    // ----- this device's certificate ---------------------------------------

    /// Verifies and records this device's certificate (from the relay). It
    /// must be issued by our CA, or by its successor during a rotation (then
    /// the successor becomes our anchor), and name this user, device and
    /// key. When it replaces an earlier one (a renewal), the device's leaf
    /// in every conversation is updated to carry it. Returns whether it was
    /// new, and whether it was a renewal.
    pub fn accept_certificate(
        &mut self,
        store: &dyn ClientStore,
        me: &mut Me,
        der: &[u8],
        now: u64,
        fx: &mut Effects,
    ) -> Result<Accepted> {
        let identity = &me.identity;
        if identity.certificate.as_deref().map(|c| c.as_slice()) == Some(der) {
            return Ok(Accepted::Known);
        }
        let renewal = identity.certificate.is_some();
        let never = |_: &OrgId, _: &DeviceId| false;
        let own = TrustAnchor::from_der(&identity.anchor)?;
        let when = (now / 1000) as i64;
        let (m, new_anchor) =
            match verify_device_cert(der, std::slice::from_ref(&own), when, &never) {
                Ok(m) => (m, None),
                Err(e) => {
                    let found = self
                        .anchors
                        .iter()
                        .filter(|a| a.org == own.org && **a != own)
                        .find_map(|a| {
                            verify_device_cert(der, std::slice::from_ref(a), when, &never)
                                .ok()
                                .map(|m| (m, a.clone()))
                        });
                    match found {
                        Some((m, a)) => (m, Some(a)),
                        None => return Err(e.into()),
                    }
                }
            };
        if m.claims.user != identity.user_id
            || m.claims.device != identity.device_id
            || m.signature_key != identity.signature_key
        {
            return Err(CredentialError::OtherDevice.into());
        }
        let mut updated = identity.clone();
        updated.display_name = m.claims.display_name;
        updated.role = m.claims.role;
        updated.certificate = Some(serde_bytes::ByteBuf::from(der.to_vec()));
        if let Some(next) = new_anchor {
            updated.previous_anchor = Some(serde_bytes::ByteBuf::from(updated.anchor.clone()));
            updated.anchor = next.cert_der;
        }
        let tx = store.transaction()?;
        store.set_identity(&updated)?;
        if renewal {
            for conv in store.conversations(&|_| 0)? {
                if conv.state.is_member() {
                    Op::UpdateCredential {
                        group_id: conv.group_id,
                    }
                    .queue(store)?;
                }
            }
        }
        tx.commit()?;
        me.identity = updated;
        fx.event(Event::CertificateReceived);
        Ok(if renewal {
            Accepted::Renewed
        } else {
            Accepted::First
        })
    }
}

/// What [`Trust::accept_certificate`] made of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// The one already held.
    Known,
    /// The device's first certificate.
    First,
    /// A renewal (or re-issue under a rotated CA).
    Renewed,
}

/// A signed document (trust or revocation list) kept under `key`.
fn stored_document(store: &dyn ClientStore, key: &str) -> Result<Option<SignedDocument>> {
    store
        .kv_get(key)?
        .map(|b| {
            ciborium::from_reader(b.as_slice())
                .map_err(|_| CoreError::Decode("a stored signed document"))
        })
        .transpose()
}

/// Keeps a signed document under `key`.
fn store_document(store: &dyn ClientStore, key: &str, doc: &SignedDocument) -> Result<()> {
    let mut b = Vec::new();
    ciborium::into_writer(doc, &mut b).expect("serialising to a Vec cannot fail");
    store.kv_set(key, &b)
}

/// Our organisation's CA, then the partners (and a successor CA) its stored
/// trust list pins.
fn load_anchors(store: &dyn ClientStore, me: &Me) -> Result<Vec<TrustAnchor>> {
    if me.identity.anchor.is_empty() {
        return Ok(Vec::new());
    }
    let mut anchors = vec![TrustAnchor::from_der(&me.identity.anchor)?];
    if let Some(doc) = stored_document(store, KV_TRUST_LIST)? {
        match verify_own_trust_list(me, &doc) {
            Ok((_, listed)) => {
                for a in listed {
                    if !anchors.contains(&a) {
                        anchors.push(a);
                    }
                }
            }
            // Our own organisation stays trusted whatever the stored list's
            // state; the next fetched list replaces it.
            Err(e) => tracing::warn!(error = %e, "stored trust list no longer verifies"),
        }
    }
    Ok(anchors)
}

/// The device policy a verified trust list of our organisation sets, within
/// the bounds devices accept.
fn policy_of(list: &TrustList) -> DevicePolicy {
    list.policy.unwrap_or_default().clamped()
}

/// Verifies our organisation's trust list: signed by our CA, or, right
/// after a CA rotation, by the previous one.
fn verify_own_trust_list(me: &Me, doc: &SignedDocument) -> Result<(TrustList, Vec<TrustAnchor>)> {
    let own = TrustAnchor::from_der(&me.identity.anchor)?;
    match verify_trust_list(doc, &own) {
        Ok(v) => Ok(v),
        Err(e) => match &me.identity.previous_anchor {
            Some(prev) => Ok(verify_trust_list(doc, &TrustAnchor::from_der(prev)?)?),
            None => Err(e.into()),
        },
    }
}

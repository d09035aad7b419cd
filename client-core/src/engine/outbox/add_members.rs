//! `AddMembers`: add every current device of some users.
//!
//! First the organisation's trust list is fetched again, so that a partner
//! pinned a moment ago is accepted; then one KeyPackage per device is
//! claimed, user by user, each verified (certificate, trust, revocation,
//! and that it names the device the relay said it was for); then one
//! commit adds them all. A user with no device that verifies is reported
//! and the others are still added.
//!
//! KeyPackages are single-use: the ones claimed are kept with the
//! operation in the store as they arrive, so a disconnect, a restart or a
//! `WrongEpoch` retry commits with them instead of claiming again.

use cascade_protocol::{DeviceId, GroupId, ProtocolError, RateScope, Request, Response, UserId};
use openmls::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Operation, Progress};
use crate::content::{Body, Content, MessageId};
use crate::engine::commit::{self, transient_or_failed, Built, Change};
use crate::engine::effects::{Effects, Route};
use crate::engine::groups::{self, mls_in, Present};
use crate::engine::outbox::Op;
use crate::engine::Ctx;
use crate::error::{CoreError, CredentialError, Result};

/// The progress kept in the store (`OutboxEntry::state`, CBOR; pinned by a
/// golden test).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AddClaims {
    /// How many of the users have been claimed for.
    pub next: usize,
    /// The KeyPackages claimed, as the relay served them.
    pub claimed: Vec<Claimed>,
}

/// One KeyPackage claimed for a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claimed {
    pub device: DeviceId,
    pub user: UserId,
    #[serde(with = "serde_bytes")]
    pub key_package: Vec<u8>,
}

impl AddClaims {
    fn decode(b: Option<&[u8]>) -> AddClaims {
        b.and_then(|b| ciborium::from_reader(b).ok())
            .unwrap_or_default()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        ciborium::into_writer(self, &mut b).expect("serialising to a Vec cannot fail");
        b
    }
}

enum Phase {
    /// Fetching the trust list.
    Refreshing,
    /// Claiming for `users[claims.next]`.
    Claiming,
    /// The commit is out.
    Committing,
}

/// The longest a claim refused by a rate limit is waited for before that
/// user's add is given up (and reported): an add holds the messages queued
/// behind it in its conversation.
const MAX_CLAIM_WAIT_MS: u64 = 5_000;

/// Adds users to a conversation.
pub(super) struct AddMembers {
    op_id: i64,
    group_id: GroupId,
    users: Vec<UserId>,
    claims: AddClaims,
    phase: Phase,
}

impl AddMembers {
    pub fn new(op_id: i64, group_id: GroupId, users: Vec<UserId>, state: Option<&[u8]>) -> Self {
        Self {
            op_id,
            group_id,
            users,
            claims: AddClaims::decode(state),
            phase: Phase::Refreshing,
        }
    }

    fn route(&self) -> Route {
        Route::Op {
            group: self.group_id,
            op_id: self.op_id,
        }
    }

    /// Claims for the next user, or commits once every user is claimed for.
    fn next(&mut self, cx: &Ctx<'_>, fx: &mut Effects) -> Result<Progress> {
        match self.users.get(self.claims.next) {
            Some(user) => {
                self.phase = Phase::Claiming;
                fx.request(
                    Request::ClaimKeyPackages {
                        user_id: user.clone(),
                    },
                    self.route(),
                );
                Ok(Progress::Waiting)
            }
            None => {
                self.phase = Phase::Committing;
                let mut change = Adding {
                    users: self.users.clone(),
                    claimed: self.claims.claimed.clone(),
                };
                commit::start(cx, self.op_id, self.group_id, &mut change, fx)
            }
        }
    }

    /// Reports that the user being claimed for is not added, and goes on
    /// with the next.
    fn give_up_on_user(
        &mut self,
        reason: String,
        cx: &Ctx<'_>,
        fx: &mut Effects,
    ) -> Result<Progress> {
        let next = self.claims.next + 1;
        self.give_up(reason, next, cx, fx)
    }

    /// Reports that the users from the one being claimed for up to (not
    /// including) `users[resume]` are not added, and goes on from there.
    fn give_up(
        &mut self,
        reason: String,
        resume: usize,
        cx: &Ctx<'_>,
        fx: &mut Effects,
    ) -> Result<Progress> {
        fx.failed(Some(self.group_id), reason);
        self.claims.next = resume.min(self.users.len());
        cx.store.set_op_state(self.op_id, &self.claims.encode())?;
        self.next(cx, fx)
    }

    /// The relay's KeyPackages for the user being claimed for.
    fn claimed(
        &mut self,
        cx: &Ctx<'_>,
        answer: std::result::Result<Response, ProtocolError>,
        fx: &mut Effects,
    ) -> Result<Progress> {
        let Some(user) = self.users.get(self.claims.next).cloned() else {
            return Ok(Progress::Failed("unexpected answer from the relay".into()));
        };
        // This user's own other devices (added with every conversation the
        // device creates): having none, or none with a KeyPackage, is no
        // failure to report.
        let own = user == cx.me.identity.user_id;
        let devices = match answer {
            Ok(Response::KeyPackages { devices }) => devices,
            Err(ProtocolError::UnknownUser) => {
                // The relay answers so for a user it does not know and for
                // one of an organisation that does not trust ours, or that
                // ours does not trust (protocol §11.5).
                let org = user.org();
                let why = if !cx.trust.orgs().contains(&org) {
                    crate::identity::CertError::UntrustedOrg(org.to_string()).to_string()
                } else {
                    format!(
                        "no such user, or organisation {org} does not trust {}",
                        cx.me.identity.org_id
                    )
                };
                return self.give_up_on_user(format!("{user} cannot be added: {why}"), cx, fx);
            }
            Err(ProtocolError::NoKeyPackages) => Vec::new(),
            Err(ProtocolError::RateLimited {
                retry_after_ms,
                scope,
            }) if retry_after_ms > MAX_CLAIM_WAIT_MS => {
                // Waiting would hold every message queued behind the add in
                // this conversation for minutes: the users are reported, and
                // those already claimed for are still added.
                let minutes = retry_after_ms.div_ceil(60_000);
                let again = format!(
                    "try again in {minutes} minute{}",
                    if minutes == 1 { "" } else { "s" }
                );
                if scope == Some(RateScope::Device) {
                    // Not about this person: every claim of this device is
                    // refused until the window ends.
                    let rest = self.users[self.claims.next..]
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ");
                    let reason = format!(
                        "{rest} cannot be added now: this device has asked the relay for \
                         too many people's keys in the last 10 minutes; {again}"
                    );
                    let everyone = self.users.len();
                    return self.give_up(reason, everyone, cx, fx);
                }
                let reason = format!(
                    "{user} cannot be added now: their devices were asked for too often; {again}"
                );
                return self.give_up_on_user(reason, cx, fx);
            }
            Err(e) => return Ok(transient_or_failed(cx, e)),
            Ok(_) => return Ok(Progress::Failed("unexpected answer from the relay".into())),
        };
        let mut usable = 0;
        let mut refused = None;
        let required = required_extensions(&*groups::load(cx.store, &self.group_id)?);
        for d in devices {
            match validate(cx, &d.key_package, &user, &d.device_id, &required) {
                Ok(_) => {
                    self.claims.claimed.push(Claimed {
                        device: d.device_id,
                        user: user.clone(),
                        key_package: d.key_package.into_vec(),
                    });
                    usable += 1;
                }
                Err(e @ CoreError::Storage(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "claimed KeyPackage rejected");
                    refused = Some(e.to_string());
                }
            }
        }
        if usable == 0 && !own {
            // The others are still added; this user is reported.
            let reason = match refused {
                Some(why) => format!("{user} cannot be added: {why}"),
                None => format!("{user} has no device that can be added"),
            };
            fx.failed(Some(self.group_id), reason);
        }
        self.claims.next += 1;
        cx.store.set_op_state(self.op_id, &self.claims.encode())?;
        self.next(cx, fx)
    }
}

impl Operation for AddMembers {
    fn start(&mut self, cx: &Ctx<'_>, fx: &mut Effects) -> Result<Progress> {
        if self.claims.next >= self.users.len() {
            // Everyone claimed for (before a restart or a retry).
            return self.next(cx, fx);
        }
        if self.users.iter().all(|u| *u == cx.me.identity.user_id) {
            // Only this user's own devices: its own organisation needs no
            // trust list.
            return self.next(cx, fx);
        }
        self.phase = Phase::Refreshing;
        fx.request(
            Request::GetTrustList {
                org_id: cx.me.identity.org_id.clone(),
            },
            self.route(),
        );
        Ok(Progress::Waiting)
    }

    fn answer(
        &mut self,
        cx: &Ctx<'_>,
        answer: std::result::Result<Response, ProtocolError>,
        fx: &mut Effects,
    ) -> Result<Progress> {
        match self.phase {
            Phase::Refreshing => {
                match answer {
                    Ok(Response::TrustList { document }) => fx.trust_lists.push(document),
                    other => tracing::warn!(?other, "trust list not refreshed before an add"),
                }
                self.next(cx, fx)
            }
            Phase::Claiming => self.claimed(cx, answer, fx),
            Phase::Committing => {
                let mut change = Adding {
                    users: self.users.clone(),
                    claimed: self.claims.claimed.clone(),
                };
                commit::answer(cx, self.op_id, self.group_id, &mut change, answer, fx)
            }
        }
    }
}

/// The extensions a group requires of every member's leaf (its room's,
/// protocol §14.8).
fn required_extensions(group: &MlsGroup) -> Vec<ExtensionType> {
    group
        .extensions()
        .required_capabilities()
        .map(|r| r.extension_types().to_vec())
        .unwrap_or_default()
}

/// Verifies a claimed KeyPackage: it decodes and validates as MLS, its
/// credential verifies against our anchors, it names exactly the user
/// and device the relay said it was for, and its leaf supports the
/// extensions the group requires (`required`: else MLS would refuse the
/// whole commit for one outdated device).
fn validate(
    cx: &Ctx<'_>,
    kp: &[u8],
    user: &UserId,
    device: &DeviceId,
    required: &[ExtensionType],
) -> Result<KeyPackage> {
    let MlsMessageBodyIn::KeyPackage(kp) = mls_in(kp)?.extract() else {
        return Err(CoreError::Decode("a claimed KeyPackage"));
    };
    let kp = kp
        .validate(cx.store.mls().crypto(), ProtocolVersion::Mls10)
        .map_err(CoreError::mls)?;
    let leaf = kp.leaf_node();
    let id = cx
        .trust
        .verify(leaf.credential(), leaf.signature_key().as_slice(), cx.now)?;
    if &id.user != user || &id.device != device {
        return Err(CredentialError::ClaimMismatch.into());
    }
    if required
        .iter()
        .any(|t| !leaf.capabilities().extensions().contains(t))
    {
        return Err(CredentialError::Outdated.into());
    }
    Ok(kp)
}

/// The commit of an add, from the claimed KeyPackages.
struct Adding {
    users: Vec<UserId>,
    claimed: Vec<Claimed>,
}

impl Adding {
    /// The conversation's name for the new members, who cannot read
    /// earlier messages.
    fn send_name(&self, cx: &Ctx<'_>, group_id: &GroupId) -> Result<()> {
        let name = cx
            .store
            .conversations(&|_| 0)?
            .into_iter()
            .find(|c| &c.group_id == group_id)
            .map(|c| c.name)
            .unwrap_or_default();
        if name.is_empty() {
            return Ok(());
        }
        let content = Content {
            id: MessageId::random(),
            sent_at: cx.now,
            body: Body::GroupMeta { name },
        };
        Op::send(*group_id, &content).queue(cx.store)?;
        Ok(())
    }
}

impl Change for Adding {
    fn build(
        &mut self,
        cx: &Ctx<'_>,
        group: &mut MlsGroup,
        present: &[Present],
    ) -> Result<Option<Built>> {
        let mut kps = Vec::new();
        let required = required_extensions(group);
        for c in &self.claimed {
            if present.iter().any(|p| p.id.device == c.device) {
                continue; // added already
            }
            // Verified again: what we trust may have changed since the claim.
            match validate(cx, &c.key_package, &c.user, &c.device, &required) {
                Ok(kp) => kps.push(kp),
                Err(e @ CoreError::Storage(_)) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "a claimed KeyPackage no longer verifies"),
            }
        }
        if kps.is_empty() {
            return Ok(None);
        }
        let (commit, welcome, group_info) = group
            .add_members(&cx.store.mls(), &cx.me.signer, &kps)
            .map_err(CoreError::mls)?;
        Ok(Some(Built {
            commit,
            welcome: Some(welcome),
            group_info,
        }))
    }

    fn merged(&mut self, cx: &Ctx<'_>, group_id: &GroupId) -> Result<()> {
        self.send_name(cx, group_id)
    }

    fn nothing_to_do(&mut self, cx: &Ctx<'_>, group_id: &GroupId) -> Result<()> {
        let group = crate::engine::groups::read(cx.store, group_id)?;
        let present = crate::engine::groups::users(&group);
        if !self.claimed.is_empty() && self.users.iter().all(|u| present.contains(u)) {
            // Added by our commit merged through its echo (the relay's
            // answer was lost): the new members still need the name.
            self.send_name(cx, group_id)?;
        }
        // Otherwise nobody could be added; each user was reported already.
        Ok(())
    }
}

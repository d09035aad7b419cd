//! MLS group helpers shared by the sub-machines: configuration, loading,
//! encoding, and who the members are.

use cascade_protocol::{DeviceId, GroupId, OrgId, UserId};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;

use crate::credential::{member_identity, MemberIdentity};
use crate::error::{CoreError, Result};
use crate::identity::read_device_cert;
use crate::store::ClientStore;

/// The one ciphersuite Cascade uses.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// How many past epochs' secrets a group keeps, so late application messages
/// still decrypt after a commit: as many as the relay lets a message lag
/// behind the group's epoch. A device processes a group's items in `seq`
/// order, so it is at the group's epoch of each message's `seq` when it
/// reads it. More would cost without use: openmls keeps each past epoch's
/// full member list and writes them all on every merge (about 70 % of
/// processing a commit in a group of 10,000, `docs/benchmarks.md`).
pub const MAX_PAST_EPOCHS: usize = cascade_protocol::limits::MAX_MESSAGE_EPOCH_LAG as usize;

/// The leaf capabilities every Cascade device advertises: our ciphersuite,
/// X.509 credentials only, and the `last_resort` extension that its
/// last-resort KeyPackage carries (RFC 9420 §7.2 and §10: a KeyPackage's
/// extensions must be listed in its leaf's capabilities, or peers refuse
/// it).
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(&[ExtensionType::LastResort]),
        None,
        Some(&[CredentialType::X509]),
    )
}

/// The configuration of a group this device creates.
pub fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .capabilities(capabilities())
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .build()
}

/// The configuration of a group this device joins (Welcome or external
/// commit).
pub fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .build()
}

/// The TLS encoding of an outgoing MLS message.
pub(crate) fn mls_bytes(m: &MlsMessageOut) -> Result<Vec<u8>> {
    m.tls_serialize_detached().map_err(CoreError::mls)
}

/// Decodes an incoming MLS message (untrusted input).
pub(crate) fn mls_in(bytes: &[u8]) -> Result<MlsMessageIn> {
    MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| CoreError::Decode("MLS message"))
}

/// The openmls group id of a Cascade group id.
pub(crate) fn mls_group_id(g: &GroupId) -> openmls::group::GroupId {
    openmls::group::GroupId::from_slice(g.as_bytes())
}

/// Wraps bytes for a frame.
pub(crate) fn bytes(v: Vec<u8>) -> cascade_protocol::Bytes {
    cascade_protocol::Bytes::from(v)
}

/// Loads a group's MLS state.
pub(crate) fn load(store: &dyn ClientStore, group_id: &GroupId) -> Result<MlsGroup> {
    let provider = store.mls();
    MlsGroup::load(provider.storage(), &mls_group_id(group_id))?
        .ok_or(CoreError::UnknownConversation)
}

/// Loads a group's MLS state if this device has any.
pub(crate) fn try_load(store: &dyn ClientStore, group_id: &GroupId) -> Result<Option<MlsGroup>> {
    let provider = store.mls();
    Ok(MlsGroup::load(provider.storage(), &mls_group_id(group_id))?)
}

/// Deletes a group's MLS state, if any.
pub(crate) fn delete(store: &dyn ClientStore, group_id: &GroupId) -> Result<()> {
    let provider = store.mls();
    if let Some(mut g) = try_load(store, group_id)? {
        g.delete(provider.storage())?;
    }
    Ok(())
}

/// Forgets a commit this device built but the relay did not take.
pub(crate) fn clear_pending_commit(store: &dyn ClientStore, group_id: &GroupId) -> Result<()> {
    let provider = store.mls();
    if let Some(mut g) = try_load(store, group_id)? {
        if g.pending_commit().is_some() {
            g.clear_pending_commit(provider.storage())?;
        }
    }
    Ok(())
}

/// The group's epoch on this device.
pub(crate) fn epoch(store: &dyn ClientStore, group_id: &GroupId) -> Result<u64> {
    Ok(load(store, group_id)?.epoch().as_u64())
}

/// A member as read from its (already verified) credential.
#[derive(Debug, Clone)]
pub(crate) struct Present {
    /// The member's leaf.
    pub leaf: LeafNodeIndex,
    /// Who the leaf is.
    pub id: MemberIdentity,
}

/// The group's members by leaf, as their credentials name them. Leaves
/// whose credential does not read are left out (they were verified when
/// they entered, so this does not happen in a group this device follows).
pub(crate) fn present(group: &MlsGroup) -> Vec<Present> {
    group
        .members()
        .filter_map(|m| {
            member_identity(&m.credential)
                .ok()
                .map(|id| Present { leaf: m.index, id })
        })
        .collect()
}

/// One member device with what its certificate says.
#[derive(Debug, Clone)]
pub(crate) struct MemberCert {
    pub user: UserId,
    pub device: DeviceId,
    pub org: OrgId,
    pub display_name: String,
    pub role: String,
    pub expires: i64,
    pub signature_key: Vec<u8>,
}

/// Every member device of an active group with its certificate's claims;
/// empty for a group this device is no longer in.
pub(crate) fn member_certs(group: &MlsGroup) -> Result<Vec<MemberCert>> {
    if !group.is_active() {
        return Ok(Vec::new());
    }
    group
        .members()
        .map(|m| {
            let cert = crate::credential::certificate(&m.credential)?;
            let claims = read_device_cert(&cert)?;
            Ok(MemberCert {
                expires: crate::identity::expires_at(&cert)?,
                org: claims.user.org(),
                user: claims.user,
                device: claims.device,
                display_name: claims.display_name,
                role: claims.role,
                signature_key: m.signature_key,
            })
        })
        .collect()
}

/// The users in a group, sorted, without duplicates.
pub(crate) fn users(group: &MlsGroup) -> Vec<UserId> {
    let mut users: Vec<UserId> = present(group).into_iter().map(|p| p.id.user).collect();
    users.sort();
    users.dedup();
    users
}

/// Records who is in the conversation (its organisations and how many
/// people) for the conversation list, after its membership changed.
pub(crate) fn record_members(
    store: &dyn ClientStore,
    group_id: &GroupId,
    group: &MlsGroup,
) -> Result<()> {
    let members = member_certs(group)?;
    let mut orgs: Vec<OrgId> = members.iter().map(|m| m.org.clone()).collect();
    orgs.sort();
    orgs.dedup();
    let mut users: Vec<UserId> = members.into_iter().map(|m| m.user).collect();
    users.sort();
    users.dedup();
    store.set_conversation_members(group_id, &orgs, &users)
}

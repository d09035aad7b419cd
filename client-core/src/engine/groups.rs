//! MLS group helpers shared by the sub-machines: configuration, loading,
//! encoding, and who the members are.

use cascade_protocol::{DeviceId, GroupId, OrgId, UserId};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;

use crate::credential::{member_identity, MemberIdentity};
use crate::error::{CoreError, Result};
use crate::identity::read_device_cert;
use crate::store::group_cache::Ticket;
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
/// X.509 credentials only, the `last_resort` extension that its
/// last-resort KeyPackage carries (RFC 9420 §7.2 and §10: a KeyPackage's
/// extensions must be listed in its leaf's capabilities, or peers refuse
/// it), and the room extension ([`super::room`]): this device reads MIMI
/// content.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(&[
            ExtensionType::LastResort,
            ExtensionType::Unknown(super::room::ROOM_EXTENSION),
        ]),
        None,
        Some(&[CredentialType::X509]),
    )
}

/// The configuration of a group without a room (benchmarks and tests of
/// MLS alone).
pub fn create_config() -> MlsGroupCreateConfig {
    builder().build()
}

/// The configuration of a conversation this device creates, with its room.
pub fn create_config_with(room: &super::room::Room) -> Result<MlsGroupCreateConfig> {
    Ok(builder()
        .with_group_context_extensions(super::room::group_context_extensions(room)?)
        .build())
}

fn builder() -> MlsGroupCreateConfigBuilder {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .capabilities(capabilities())
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .sender_ratchet_configuration(sender_ratchet())
}

/// How far ahead of the last message read from a member its next one may
/// be (in generations of its sending ratchet). Messages addressed to some
/// users only (read reports) are generations the others never see, so a
/// member who only reads can be far ahead when they next write to
/// everyone; openmls's default of 1,000 would make that message unreadable
/// (protocol §11.1).
pub const MAX_FORWARD_DISTANCE: u32 = 100_000;

fn sender_ratchet() -> SenderRatchetConfiguration {
    SenderRatchetConfiguration::new(5, MAX_FORWARD_DISTANCE)
}

/// The configuration of a group this device joins (Welcome or external
/// commit).
pub fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .sender_ratchet_configuration(sender_ratchet())
        .build()
}

/// Brings the configuration of a group joined or created before
/// [`MAX_FORWARD_DISTANCE`] up to date (the configuration is this device's
/// own, kept with the group; nothing is sent).
pub(crate) fn upgrade_config(store: &dyn ClientStore, group: &mut MlsGroup) -> Result<()> {
    let distance = group
        .configuration()
        .sender_ratchet_configuration()
        .maximum_forward_distance();
    if distance < MAX_FORWARD_DISTANCE {
        let config = MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .max_past_epochs(MAX_PAST_EPOCHS)
            .wire_format_policy(group.configuration().wire_format_policy())
            .sender_ratchet_configuration(sender_ratchet())
            .build();
        group
            .set_configuration(store.mls().storage(), &config)
            .map_err(CoreError::mls)?;
    }
    Ok(())
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

/// A group's live MLS state, loaded for one operation. It goes back to the
/// store's cache when dropped ([`crate::store::group_cache`]): kept if the
/// operation's transaction commits.
pub struct Loaded<'a> {
    store: &'a dyn ClientStore,
    id: GroupId,
    group: Option<MlsGroup>,
    ticket: Ticket,
    changed: bool,
}

impl std::ops::Deref for Loaded<'_> {
    type Target = MlsGroup;

    fn deref(&self) -> &MlsGroup {
        self.group.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Loaded<'_> {
    fn deref_mut(&mut self) -> &mut MlsGroup {
        self.group.as_mut().expect("present until dropped")
    }
}

impl Drop for Loaded<'_> {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            self.store
                .give_back_group(self.id, group, self.ticket, self.changed);
        }
    }
}

/// Loads a group's MLS state, to change it.
pub fn load<'a>(store: &'a dyn ClientStore, group_id: &GroupId) -> Result<Loaded<'a>> {
    try_load(store, group_id)?.ok_or(CoreError::UnknownConversation)
}

/// Loads a group's MLS state, to change it, if this device has any.
pub fn try_load<'a>(store: &'a dyn ClientStore, group_id: &GroupId) -> Result<Option<Loaded<'a>>> {
    fetch(store, group_id, true)
}

/// Loads a group's MLS state only to read it: it goes back to the cache
/// whatever happens to the transaction.
pub(crate) fn read<'a>(
    store: &'a dyn ClientStore,
    group_id: &GroupId,
) -> Result<impl std::ops::Deref<Target = MlsGroup> + 'a> {
    let loaded = fetch(store, group_id, false)?.ok_or(CoreError::UnknownConversation)?;
    Ok(ReadOnly(loaded))
}

/// A [`Loaded`] that gives no `&mut` access, so it can be kept unchanged.
struct ReadOnly<'a>(Loaded<'a>);

impl std::ops::Deref for ReadOnly<'_> {
    type Target = MlsGroup;

    fn deref(&self) -> &MlsGroup {
        &self.0
    }
}

fn fetch<'a>(
    store: &'a dyn ClientStore,
    group_id: &GroupId,
    changed: bool,
) -> Result<Option<Loaded<'a>>> {
    let (kept, ticket) = store.take_group(group_id)?;
    let group = match kept {
        Some(group) => group,
        None => {
            let provider = store.mls();
            match MlsGroup::load(provider.storage(), &mls_group_id(group_id))? {
                Some(group) => group,
                None => return Ok(None),
            }
        }
    };
    Ok(Some(Loaded {
        store,
        id: *group_id,
        group: Some(group),
        ticket,
        changed,
    }))
}

/// Forgets any state of the group kept in memory: call after creating,
/// joining or deleting its state other than through [`load`].
pub(crate) fn forget(store: &dyn ClientStore, group_id: &GroupId) {
    store.forget_group(group_id);
}

/// Deletes a group's MLS state, if any.
pub(crate) fn delete(store: &dyn ClientStore, group_id: &GroupId) -> Result<()> {
    let provider = store.mls();
    if let Some(mut g) = try_load(store, group_id)? {
        g.delete(provider.storage())?;
    }
    forget(store, group_id);
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
    Ok(read(store, group_id)?.epoch().as_u64())
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

/// Who a member device of a conversation belongs to, for a line in it:
/// "Name (user id)" from the device's certificate, or the device id.
pub(crate) fn device_owner(
    store: &dyn crate::store::ClientStore,
    group_id: &cascade_protocol::GroupId,
    device: &cascade_protocol::DeviceId,
) -> String {
    let found = read(store, group_id)
        .ok()
        .and_then(|group| member_certs(&group).ok())
        .and_then(|certs| certs.into_iter().find(|c| c.device == *device));
    match found {
        Some(c) => format!("{} ({})", c.display_name, c.user),
        None => format!("device {device}"),
    }
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

#[cfg(test)]
mod tests {
    //! The group cache hands out only state that equals the database's.
    //! Each test would fail if the cache kept the instance it must not.

    use openmls_basic_credential::SignatureKeyPair;

    use super::*;
    use crate::store::{SqliteStore, Transactions};

    fn create(store: &SqliteStore, id: &GroupId) -> SignatureKeyPair {
        let provider = store.mls();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("keys");
        signer.store(provider.storage()).expect("key stored");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(b"cache".to_vec()).into(),
            signature_key: signer.public().into(),
        };
        MlsGroup::new_with_group_id(
            &provider,
            &signer,
            &MlsGroupCreateConfig::builder()
                .ciphersuite(CIPHERSUITE)
                .build(),
            mls_group_id(id),
            credential,
        )
        .expect("group");
        signer
    }

    /// Moves the group one epoch on through a loaded instance.
    fn advance(store: &SqliteStore, group: &mut MlsGroup, signer: &SignatureKeyPair) {
        let provider = store.mls();
        group
            .self_update(&provider, signer, LeafNodeParameters::default())
            .expect("update");
        group.merge_pending_commit(&provider).expect("merged");
    }

    fn stored_epoch(store: &SqliteStore, id: &GroupId) -> u64 {
        MlsGroup::load(store.mls().storage(), &mls_group_id(id))
            .expect("read")
            .expect("present")
            .epoch()
            .as_u64()
    }

    #[test]
    fn a_committed_change_is_kept_and_a_rolled_back_one_is_not() {
        let store = SqliteStore::in_memory().expect("store");
        let id = GroupId([7; 16]);
        let signer = create(&store, &id);
        assert_eq!(epoch(&store, &id).expect("epoch"), 0);
        assert_eq!(store.groups.borrow().kept_len(), 1, "a read is kept");

        let tx = store.transaction().expect("tx");
        {
            let mut g = load(&store, &id).expect("load");
            advance(&store, &mut g, &signer);
        }
        tx.commit().expect("commit");
        assert_eq!(
            store.groups.borrow().kept_len(),
            1,
            "a committed change is kept"
        );
        assert_eq!(epoch(&store, &id).expect("epoch"), 1);

        let tx = store.transaction().expect("tx");
        {
            let mut g = load(&store, &id).expect("load");
            advance(&store, &mut g, &signer);
            assert_eq!(g.epoch().as_u64(), 2);
        }
        drop(tx); // rolled back: the database is at epoch 1
        assert_eq!(stored_epoch(&store, &id), 1);
        assert_eq!(epoch(&store, &id).expect("epoch"), 1);

        // Changed outside any transaction: not known to have been written.
        {
            let mut g = load(&store, &id).expect("load");
            g.self_update(&store.mls(), &signer, LeafNodeParameters::default())
                .expect("update");
        }
        assert_eq!(store.groups.borrow().kept_len(), 0);
    }

    #[test]
    fn an_instance_out_during_a_rollback_is_not_kept() {
        let store = SqliteStore::in_memory().expect("store");
        let id = GroupId([8; 16]);
        let signer = create(&store, &id);
        let outer = store.transaction().expect("tx");
        let mut g = load(&store, &id).expect("load");
        let inner = store.transaction().expect("savepoint");
        advance(&store, &mut g, &signer);
        drop(inner); // the savepoint rolls back; `g` is still out, at epoch 1
        drop(g);
        outer.commit().expect("commit");
        assert_eq!(stored_epoch(&store, &id), 0);
        assert_eq!(epoch(&store, &id).expect("epoch"), 0);
    }

    #[test]
    fn a_second_load_while_one_is_out_keeps_neither() {
        let store = SqliteStore::in_memory().expect("store");
        let id = GroupId([9; 16]);
        let signer = create(&store, &id);
        let stale = read(&store, &id).expect("read");
        let tx = store.transaction().expect("tx");
        {
            let mut g = load(&store, &id).expect("load");
            advance(&store, &mut g, &signer);
        }
        tx.commit().expect("commit");
        drop(stale); // from before the change: must not replace it
        assert_eq!(epoch(&store, &id).expect("epoch"), 1);
    }

    #[test]
    fn another_connections_commit_empties_the_cache() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("device.db");
        let a = SqliteStore::open(&path, &crate::StoreKey::key([7; 32])).expect("a");
        let id = GroupId([10; 16]);
        let signer = create(&a, &id);
        assert_eq!(epoch(&a, &id).expect("epoch"), 0);
        assert_eq!(a.groups.borrow().kept_len(), 1);

        let b = SqliteStore::open(&path, &crate::StoreKey::key([7; 32])).expect("b");
        let tx = b.transaction().expect("tx");
        {
            let mut g = load(&b, &id).expect("load");
            advance(&b, &mut g, &signer);
        }
        tx.commit().expect("commit");
        assert_eq!(epoch(&a, &id).expect("epoch"), 1, "a sees b's commit");
    }

    #[test]
    fn deleting_a_group_forgets_it() {
        let store = SqliteStore::in_memory().expect("store");
        let id = GroupId([11; 16]);
        create(&store, &id);
        assert_eq!(epoch(&store, &id).expect("epoch"), 0);
        delete(&store, &id).expect("deleted");
        assert!(matches!(
            epoch(&store, &id),
            Err(CoreError::UnknownConversation)
        ));
    }
}

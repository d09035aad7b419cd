//! Messages from past epochs under Cascade's group configuration, through
//! the vendored openmls, which keeps a past epoch's members as the changes
//! the next epoch made rather than a full copy
//! (`vendor/openmls/member-changes.patch`). A message sent before a commit
//! must still be read after it, and attributed to the member who sent it
//! even when that member left and a newcomer now holds its leaf.

use cascade_core::credential::make_credential;
use cascade_core::engine::{create_config, join_config, CIPHERSUITE, MAX_PAST_EPOCHS};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider;

struct Party {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

fn party(name: u8) -> Party {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("keys");
    signer.store(provider.storage()).expect("stored");
    let mut certificate = vec![0x30; 200];
    certificate[0] = name;
    Party {
        credential: CredentialWithKey {
            credential: make_credential(&certificate),
            signature_key: signer.public().into(),
        },
        provider,
        signer,
    }
}

fn key_package(p: &Party) -> KeyPackage {
    KeyPackage::builder()
        .leaf_node_capabilities(cascade_core::engine::capabilities())
        .build(CIPHERSUITE, &p.provider, &p.signer, p.credential.clone())
        .expect("KeyPackage")
        .key_package()
        .clone()
}

fn join(p: &Party, welcome: MlsMessageOut) -> MlsGroup {
    let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::from(welcome).extract() else {
        panic!("not a Welcome");
    };
    StagedWelcome::new_from_welcome(&p.provider, &join_config(), welcome, None)
        .expect("staged")
        .into_group(&p.provider)
        .expect("joined")
}

fn protocol(out: MlsMessageOut) -> ProtocolMessage {
    MlsMessageIn::from(out)
        .try_into_protocol_message()
        .expect("protocol message")
}

fn send(p: &Party, g: &mut MlsGroup, text: &[u8]) -> ProtocolMessage {
    protocol(
        g.create_message(&p.provider, &p.signer, text)
            .expect("encrypt"),
    )
}

/// `p` processes and merges `commit` in `g`.
fn merge(p: &Party, g: &mut MlsGroup, commit: ProtocolMessage) {
    let processed = g.process_message(&p.provider, commit).expect("commit");
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        panic!("not a commit");
    };
    g.merge_staged_commit(&p.provider, *staged).expect("merged");
}

/// `p` reads `message` in `g`: the text and the sender's credential.
fn read(p: &Party, g: &mut MlsGroup, message: ProtocolMessage) -> (Vec<u8>, Credential) {
    let processed = g.process_message(&p.provider, message).expect("readable");
    let credential = processed.credential().clone();
    let ProcessedMessageContent::ApplicationMessage(text) = processed.into_content() else {
        panic!("not an application message");
    };
    (text.into_bytes(), credential)
}

/// The creator's commit, merged on its side; returns what members process.
fn committed(p: &Party, g: &mut MlsGroup, out: MlsMessageOut) -> ProtocolMessage {
    g.merge_pending_commit(&p.provider).expect("merge");
    protocol(out)
}

/// Alice's group with Bob and Carol, at epoch 1: (Alice's, Bob's, Carol's).
fn trio(alice: &Party, bob: &Party, carol: &Party) -> (MlsGroup, MlsGroup, MlsGroup) {
    let mut a = MlsGroup::new(
        &alice.provider,
        &alice.signer,
        &create_config(),
        alice.credential.clone(),
    )
    .expect("group");
    let (_, welcome, _) = a
        .add_members(
            &alice.provider,
            &alice.signer,
            &[key_package(bob), key_package(carol)],
        )
        .expect("add");
    a.merge_pending_commit(&alice.provider).expect("merge");
    let b = join(bob, welcome.clone());
    let c = join(carol, welcome);
    (a, b, c)
}

/// `p` updates its own leaf (a commit with a path); the commit, not merged.
fn self_update(p: &Party, g: &mut MlsGroup) -> MlsMessageOut {
    let bundle = g
        .self_update(&p.provider, &p.signer, LeafNodeParameters::default())
        .expect("update");
    let (out, _, _) = bundle.into_contents();
    out
}

#[test]
fn a_message_from_a_past_epoch_is_read_and_attributed_to_its_sender() {
    let (alice, bob, carol, dan) = (party(b'a'), party(b'b'), party(b'c'), party(b'd'));
    let (mut a, mut b, mut c) = trio(&alice, &bob, &carol);

    // Epoch 1: Carol and Alice write; Bob reads later.
    let carols = send(&carol, &mut c, b"from carol in epoch 1");
    let carols_last = send(&carol, &mut c, b"carol again in epoch 1");
    let alices = send(&alice, &mut a, b"from alice in epoch 1");
    let carols_leaf = c.own_leaf_index();

    // Epoch 2: Alice removes Carol. Epoch 3: Dan joins, into Carol's leaf.
    let (out, _, _) = a
        .remove_members(&alice.provider, &alice.signer, &[carols_leaf])
        .expect("remove");
    merge(&bob, &mut b, committed(&alice, &mut a, out));
    let (out, welcome, _) = a
        .add_members(&alice.provider, &alice.signer, &[key_package(&dan)])
        .expect("add");
    merge(&bob, &mut b, committed(&alice, &mut a, out));
    let mut d = join(&dan, welcome);
    assert_eq!(
        d.own_leaf_index(),
        carols_leaf,
        "Dan holds Carol's leaf now"
    );
    // Epoch 4: Alice updates her own leaf (a commit with a path).
    let out = self_update(&alice, &mut a);
    let commit = committed(&alice, &mut a, out);
    merge(&bob, &mut b, commit.clone());
    merge(&dan, &mut d, commit);
    assert_eq!(b.epoch().as_u64(), 4);

    // Three epochs later Bob reads Carol's message as Carol's, though Dan
    // holds her leaf, and Alice's though her leaf changed since.
    let (text, sender) = read(&bob, &mut b, carols);
    assert_eq!(text, b"from carol in epoch 1");
    assert_eq!(sender, carol.credential.credential, "Carol's, not Dan's");
    let (text, sender) = read(&bob, &mut b, alices);
    assert_eq!(text, b"from alice in epoch 1");
    assert_eq!(sender, alice.credential.credential);
    // And a message of the current epoch from Carol's leaf is Dan's.
    let dans = send(&dan, &mut d, b"from dan in epoch 4");
    let (_, sender) = read(&bob, &mut b, dans);
    assert_eq!(sender, dan.credential.credential);

    // Past the kept epochs, the message is refused, never misattributed.
    for _ in 0..MAX_PAST_EPOCHS {
        let out = self_update(&alice, &mut a);
        merge(&bob, &mut b, committed(&alice, &mut a, out));
    }
    assert!(b.process_message(&bob.provider, carols_last).is_err());
}

/// The past epochs survive storage: a member whose group is loaded again
/// from its provider after commits reads a message from before them.
#[test]
fn past_epochs_are_read_back_from_storage() {
    let (alice, bob, carol) = (party(b'a'), party(b'b'), party(b'c'));
    let (mut a, mut b, mut c) = trio(&alice, &bob, &carol);
    let carols = send(&carol, &mut c, b"before the commits");
    let carols_leaf = c.own_leaf_index();
    let (out, _, _) = a
        .remove_members(&alice.provider, &alice.signer, &[carols_leaf])
        .expect("remove");
    merge(&bob, &mut b, committed(&alice, &mut a, out));
    let group_id = b.group_id().clone();
    drop(b);
    let mut b = MlsGroup::load(bob.provider.storage(), &group_id)
        .expect("loads")
        .expect("stored");
    let (text, sender) = read(&bob, &mut b, carols);
    assert_eq!(text, b"before the commits");
    assert_eq!(sender, carol.credential.credential);
}

/// Rewrites `p`'s stored message secrets of `g` as openmls wrote them
/// before the patch: every past epoch with its full member list and no
/// `changed`. Done on the JSON, independently of the patch's own code: the
/// members of each past epoch follow from the current ones by putting back,
/// newest epoch first, what each epoch's successor changed.
fn store_past_epochs_in_full(p: &Party, g: &MlsGroup) {
    use serde_json::Value;
    let storage = p.provider.storage();
    let mut values = storage.values.write().expect("lock");
    let (_, stored) = values
        .iter_mut()
        .find(|(k, _)| k.starts_with(b"MessageSecrets"))
        .expect("message secrets stored");
    let mut secrets: Value = serde_json::from_slice(stored).expect("JSON");
    let mut members: std::collections::BTreeMap<u64, Value> = g
        .members()
        .map(|m| {
            (
                u64::from(m.index.u32()),
                serde_json::to_value(&m).expect("member"),
            )
        })
        .collect();
    let trees = secrets["past_epoch_trees"].as_array_mut().expect("array");
    assert!(!trees.is_empty(), "past epochs kept");
    for tree in trees.iter_mut().rev() {
        let tree = tree.as_object_mut().expect("object");
        let changed = tree.remove("changed").expect("stored with its changes");
        for change in changed.as_array().expect("changes") {
            let index = change[0].as_u64().expect("leaf index");
            match &change[1] {
                Value::Null => members.remove(&index),
                member => members.insert(index, member.clone()),
            };
        }
        tree.insert(
            "leaves".into(),
            Value::Array(members.values().cloned().collect()),
        );
    }
    *stored = serde_json::to_vec(&secrets).expect("JSON");
}

/// Past epochs stored in full by openmls before the patch are still read,
/// alone and behind epochs stored as changes.
#[test]
fn past_epochs_stored_in_full_before_the_patch_are_read() {
    let (alice, bob, carol, dan) = (party(b'a'), party(b'b'), party(b'c'), party(b'd'));
    let (mut a, mut b, mut c) = trio(&alice, &bob, &carol);
    let carols = send(&carol, &mut c, b"carol, epoch 1");
    let carols_later = send(&carol, &mut c, b"carol again, epoch 1");
    let (out, _, _) = a
        .remove_members(&alice.provider, &alice.signer, &[c.own_leaf_index()])
        .expect("remove");
    merge(&bob, &mut b, committed(&alice, &mut a, out));
    let (out, _, _) = a
        .add_members(&alice.provider, &alice.signer, &[key_package(&dan)])
        .expect("add");
    merge(&bob, &mut b, committed(&alice, &mut a, out));

    store_past_epochs_in_full(&bob, &b);
    let group_id = b.group_id().clone();
    let mut b = MlsGroup::load(bob.provider.storage(), &group_id)
        .expect("loads")
        .expect("stored");
    let (_, sender) = read(&bob, &mut b, carols);
    assert_eq!(sender, carol.credential.credential);

    // A commit now keeps epoch 3 as changes, behind the full epochs 1 and 2.
    let alices = send(&alice, &mut a, b"alice, epoch 3");
    let out = self_update(&alice, &mut a);
    merge(&bob, &mut b, committed(&alice, &mut a, out));
    let (_, sender) = read(&bob, &mut b, alices);
    assert_eq!(sender, alice.credential.credential);
    let (text, sender) = read(&bob, &mut b, carols_later);
    assert_eq!(text, b"carol again, epoch 1");
    assert_eq!(sender, carol.credential.credential);
}

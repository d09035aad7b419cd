//! Interoperability with other RFC 9420 implementations, on the simulated
//! relay: a peer whose KeyPackage is built by openmls directly (as another
//! implementation would), with the X.509 credential of `docs/protocol.md`.

mod sim;

use cascade_core::credential::make_credential;
use cascade_core::engine::room::ROOM_EXTENSION;
use cascade_core::engine::CIPHERSUITE;
use cascade_core::GroupId;
use cascade_protocol::*;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use sim::*;

/// A KeyPackage as a peer that GREASEs would send it (RFC 9420 §13.5, as
/// mlspp does): a GREASE extension in its leaf and one in the KeyPackage,
/// both listed in its capabilities, and a last-resort mark; with the room
/// extension among them (protocol §14.8) if `reads_rooms`.
fn greasing_key_package(
    provider: &OpenMlsRustCrypto,
    signer: &SignatureKeyPair,
    certificate: &[u8],
    reads_rooms: bool,
) -> Bytes {
    let mut extensions = vec![
        ExtensionType::LastResort,
        ExtensionType::Grease(0x4A4A),
        ExtensionType::Grease(0x8A8A),
    ];
    if reads_rooms {
        extensions.push(ExtensionType::Unknown(ROOM_EXTENSION));
    }
    let capabilities = Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(&extensions),
        None,
        Some(&[CredentialType::X509]),
    );
    let leaf =
        Extensions::<LeafNode>::single(Extension::Unknown(0x4A4A, UnknownExtension(vec![1, 2, 3])))
            .expect("a leaf extension");
    let kp_ext =
        Extensions::<KeyPackage>::single(Extension::Unknown(0x8A8A, UnknownExtension(vec![])))
            .expect("a KeyPackage extension");
    let bundle = KeyPackage::builder()
        .leaf_node_capabilities(capabilities)
        .leaf_node_extensions(leaf)
        .key_package_extensions(kp_ext)
        .mark_as_last_resort()
        .build(
            CIPHERSUITE,
            provider,
            signer,
            CredentialWithKey {
                credential: make_credential(certificate),
                signature_key: signer.public().into(),
            },
        )
        .expect("KeyPackage");
    Bytes::from(
        MlsMessageOut::from(bundle.key_package().clone())
            .tls_serialize_detached()
            .expect("encodes"),
    )
}

#[test]
fn a_peer_that_greases_can_be_added() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("keys");
    signer.store(provider.storage()).expect("stored");
    let (peer, cert) = sim.foreign_device("peer@north", signer.public().to_vec());
    let kp = greasing_key_package(&provider, &signer, &cert, true);
    sim.put_key_packages(peer, vec![kp]);
    let g = sim.group(a, "Mixed", &[]);
    sim.events(a);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![UserId::new("peer@north").expect("valid")], now)
        .expect("queued");
    sim.settle();
    assert!(
        failures(&sim.events(a)).is_empty(),
        "the GREASE KeyPackage is accepted"
    );
    assert!(sim.roster(g).contains(&peer));
    assert!(sim
        .engine(a)
        .members(&g)
        .expect("members")
        .iter()
        .any(|m| m.device_id == peer));
    // The peer joins from the Welcome queued for it.
    let welcome = sim
        .queued_for(peer)
        .into_iter()
        .find(|i| i.kind == ItemKind::Welcome)
        .expect("a Welcome for the peer");
    let MlsMessageBodyIn::Welcome(w) =
        MlsMessageIn::tls_deserialize_exact(welcome.payload.as_slice())
            .expect("decodes")
            .extract()
    else {
        panic!("not a Welcome");
    };
    let joined = StagedWelcome::new_from_welcome(
        &provider,
        &MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .build(),
        w,
        None,
    )
    .expect("the peer processes the Welcome")
    .into_group(&provider)
    .expect("joined");
    assert_eq!(joined.epoch().as_u64(), sim.epoch(a, g));
}

/// A peer that does not advertise the room extension (an older Cascade,
/// or a client without MIMI content) is not added to a conversation with
/// a room, and the add says why; MLS would refuse the whole commit
/// otherwise.
#[test]
fn a_peer_that_cannot_read_the_room_is_refused_with_a_reason() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("keys");
    signer.store(provider.storage()).expect("stored");
    let (peer, cert) = sim.foreign_device("peer@north", signer.public().to_vec());
    sim.put_key_packages(
        peer,
        vec![greasing_key_package(&provider, &signer, &cert, false)],
    );
    let g = sim.group(a, "Mixed", &[]);
    sim.events(a);
    let now = sim.now;
    sim.engine(a)
        .add_members(
            &g,
            vec![
                UserId::new("peer@north").expect("valid"),
                UserId::new("bob@north").expect("valid"),
            ],
            now,
        )
        .expect("queued");
    sim.settle();
    let failed = failures(&sim.events(a));
    assert!(
        failed
            .iter()
            .any(|f| f.contains("peer@north") && f.contains("older version")),
        "{failed:?}"
    );
    assert!(!sim.roster(g).contains(&peer));
    assert!(sim.roster(g).contains(&sim.id(b)), "the others are added");
}

/// Every GroupInfo a device gives the relay carries the ratchet tree and the
/// external public key (what a new or rejoining device needs to join by
/// external commit from the relay's copy alone), for the epoch the relay is
/// at: the group's creation and each commit.
#[test]
fn the_relays_group_info_carries_the_tree_and_the_external_key() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let check = |sim: &Sim, g: GroupId| {
        let info = sim.group_info(g);
        let MlsMessageBodyIn::GroupInfo(gi) = MlsMessageIn::tls_deserialize_exact(info.as_slice())
            .expect("decodes")
            .extract()
        else {
            panic!("not a GroupInfo");
        };
        assert!(gi.extensions().ratchet_tree().is_some(), "ratchet_tree");
        assert!(gi.extensions().external_pub().is_some(), "external_pub");
        assert_eq!(gi.epoch().as_u64(), sim.relay.groups[&g].epoch);
    };
    let g = sim.group(a, "Ward", &[]);
    check(&sim, g);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![UserId::new("bob@north").expect("valid")], now)
        .expect("queued");
    sim.settle();
    assert_eq!(sim.relay.groups[&g].epoch, 1);
    check(&sim, g);
    // A room change (Bob made an admin) and a removal by the new admin:
    // the relay's GroupInfo follows both.
    let now = sim.now;
    sim.engine(a)
        .set_role(
            &g,
            &UserId::new("bob@north").expect("valid"),
            cascade_core::Role::Admin,
            now,
        )
        .expect("queued");
    sim.settle();
    check(&sim, g);
    let now = sim.now;
    sim.engine(b)
        .remove_members(&g, vec![UserId::new("alice@north").expect("valid")], now)
        .expect("queued");
    sim.settle();
    check(&sim, g);
}

/// RFC 9420 §7.2 (valn0104): a newcomer whose credential type the members
/// do not support is refused. The vendored openmls gathers the credential
/// types in use once per validation (`vendor/openmls/large-join.patch`);
/// this checks the patch keeps the refusal for a type nobody uses yet.
#[test]
fn a_newcomer_with_a_credential_type_members_do_not_support_is_refused() {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("keys");
    signer.store(provider.storage()).expect("stored");
    let mut group = MlsGroup::new(
        &provider,
        &signer,
        &cascade_core::engine::create_config(),
        CredentialWithKey {
            credential: make_credential(&[0x30; 64]),
            signature_key: signer.public().into(),
        },
    )
    .expect("group");

    let peer = OpenMlsRustCrypto::default();
    let peer_signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("keys");
    peer_signer.store(peer.storage()).expect("stored");
    // The newcomer supports the X.509 credentials in use, but its own
    // credential is of a type no member supports.
    let basic_and_x509 = Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        None,
        None,
        Some(&[CredentialType::Basic, CredentialType::X509]),
    );
    let kp = KeyPackage::builder()
        .leaf_node_capabilities(basic_and_x509)
        .build(
            CIPHERSUITE,
            &peer,
            &peer_signer,
            CredentialWithKey {
                credential: BasicCredential::new(b"peer".to_vec()).into(),
                signature_key: peer_signer.public().into(),
            },
        )
        .expect("KeyPackage")
        .key_package()
        .clone();
    assert!(
        group.add_members(&provider, &signer, &[kp]).is_err(),
        "members support X.509 credentials only"
    );
    assert_eq!(group.members().count(), 1);
}

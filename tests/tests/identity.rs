//! Identity end to end: organisation CAs, certificates, explicit trust.

use anyhow::Result;
use cascade_core::identity::{verify_device_cert, TrustAnchor};
use cascade_core::{Client, CoreError, Event};
use cascade_protocol::enrolment_code;
use cascade_tests::*;

/// A cross-organisation conversation needs each organisation to pin the
/// other's CA: refused before, with a clear reason; accepted after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_org_members_need_pinned_trust() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    let mut alice = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol Hughes", "Paramedic")
        .await?;
    let group = alice.client.create_group("Transfer").await?;

    alice.client.add_members(group, vec![carol.user()]).await?;
    let ev = alice
        .wait_event("the refusal", |e| {
            matches!(e, Event::OperationFailed { .. })
        })
        .await?;
    let Event::OperationFailed { reason, .. } = ev else {
        unreachable!()
    };
    assert!(reason.contains("east-ambulance is not trusted"), "{reason}");
    alice.sync().await?;
    assert_eq!(alice.member_users(group).await?, vec![alice.user()]);

    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    alice.client.add_members(group, vec![carol.user()]).await?;
    alice.sync().await?;
    carol.joined(group).await?;
    // Both sides show the other with verified organisation, name and role.
    let members = carol.client.members(group).await?;
    let a = members
        .iter()
        .find(|m| m.user_id == alice.user())
        .expect("alice is a member");
    assert_eq!(
        (a.display_name.as_str(), a.role.as_str(), a.org_id.as_str()),
        ("Alice Okafor", "Ward Sister", "north-trust")
    );
    carol.client.send_text(group, "crew on the way").await?;
    carol.sync().await?;
    alice.messages(group, 1).await?;
    Ok(())
}

/// A device waits for its certificate: until its organisation issues it, it
/// cannot be added; once issued (pushed live), it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_without_a_certificate_cannot_join_until_issued() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let mut alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    relay.add_user("bob@north-trust", "Bob", "Doctor").await?;
    let code = relay.enrolment_code("bob@north-trust").await?;
    let dir = tempfile::tempdir()?;
    Client::enrol(dir.path(), &relay.url, &code, "bob's laptop", &store_key()).await?;
    let mut bob = Peer::open(dir.path().to_path_buf()).await?;
    bob.wait_event("pending", |e| matches!(e, Event::CertificatePending))
        .await?;
    assert!(matches!(
        bob.client.create_group("Mine").await,
        Err(CoreError::CertificatePending)
    ));
    let group = alice.client.create_group("Ward").await?;
    alice
        .client
        .add_members(group, vec![uid("bob@north-trust")])
        .await?;
    alice
        .wait_event("bob cannot be added", |e| {
            matches!(e, Event::OperationFailed { .. })
        })
        .await?;

    assert_eq!(relay.issue_pending("north-trust").await?, 1);
    bob.wait_event("the certificate", |e| {
        matches!(e, Event::CertificateReceived)
    })
    .await?;
    bob.sync().await?;
    alice
        .client
        .add_members(group, vec![uid("bob@north-trust")])
        .await?;
    alice.sync().await?;
    bob.joined(group).await?;
    Ok(())
}

/// An enrolment code whose fingerprint is not the organisation's CA is
/// refused: the device does not take the relay's word for the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_checks_the_ca_fingerprint() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.add_user("bob@north-trust", "Bob", "Doctor").await?;
    let code = relay.enrolment_code("bob@north-trust").await?;
    let token = enrolment_code::parse(&code).expect("a code").token;
    // The same token with another CA's fingerprint (in both forms).
    let wrong = format!("{token}{}", "0".repeat(enrolment_code::FINGERPRINT_CHARS));
    let dir = tempfile::tempdir()?;
    let err = Client::enrol(dir.path(), &relay.url, &wrong, "laptop", &store_key())
        .await
        .expect_err("a wrong fingerprint is refused");
    assert!(
        matches!(
            err,
            CoreError::Enrolment(cascade_core::EnrolmentError::FingerprintMismatch)
        ),
        "{err}"
    );
    let wrong = format!("{token}.{}", "ab".repeat(32));
    let dir = tempfile::tempdir()?;
    let err = Client::enrol(dir.path(), &relay.url, &wrong, "laptop", &store_key())
        .await
        .expect_err("a wrong fingerprint is refused");
    assert!(
        matches!(
            err,
            CoreError::Enrolment(cascade_core::EnrolmentError::FingerprintMismatch)
        ),
        "{err}"
    );
    // The relay refused it before spending the token: no device waits for
    // a certificate, and the right code still works.
    assert_eq!(relay.issue_pending("north-trust").await?, 0);
    let first = tempfile::tempdir()?;
    Client::enrol(first.path(), &relay.url, &code, "phone", &store_key()).await?;
    // A fresh, unspent token without the fingerprint is refused too, before
    // the token is spent: the same token with the fingerprint then enrols.
    let code = relay.enrolment_code("bob@north-trust").await?;
    let token = enrolment_code::parse(&code).expect("a code").token;
    let dir = tempfile::tempdir()?;
    let bare = Client::enrol(dir.path(), &relay.url, &token, "laptop", &store_key()).await;
    assert!(
        matches!(
            &bare,
            Err(CoreError::Enrolment(cascade_core::EnrolmentError::BadCode))
        ),
        "no fingerprint, no enrolment: {bare:?}"
    );
    // Typed as a person might from a phone call: lower case, spaces, and
    // an `o` for a zero or an `l` for a one.
    let typed = code
        .to_lowercase()
        .replace('-', " ")
        .replace('0', "o")
        .replace('1', "l");
    Client::enrol(dir.path(), &relay.url, &typed, "laptop", &store_key()).await?;
    Ok(())
}

/// The code as a `cascade://enrol` link (what the QR code holds) enrols
/// with no relay address given: the link carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_enrols_without_a_relay_address() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.add_user("bob@north-trust", "Bob", "Doctor").await?;
    let link = relay.enrolment_link("bob@north-trust").await?;
    assert!(link.starts_with("cascade://enrol?server=http%3A%2F%2F127.0.0.1%3A"));
    let dir = tempfile::tempdir()?;
    let id = Client::enrol(dir.path(), "", &link, "phone", &store_key()).await?;
    assert_eq!(id.user_id, uid("bob@north-trust"));
    assert_eq!(id.server_url, relay.url);
    Ok(())
}

/// Unpinning a partner: its members are removed from our conversations,
/// and new members from that organisation are refused again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpinning_a_partner_removes_and_refuses_its_members() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let mut alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol", "Paramedic")
        .await?;
    let group = alice.create_group_with("Transfer", &[&bob, &carol]).await?;

    relay.distrust("north-trust", "east-ambulance").await?;
    for p in [&alice, &bob] {
        p.until("Carol's removal", || async {
            Ok(p.member_users(group).await? == vec![alice.user(), bob.user()])
        })
        .await?;
    }
    carol
        .until("Carol sees she was removed", || async {
            Ok(carol.client.conversation(group).await?.state
                == cascade_core::ConversationState::Left)
        })
        .await?;

    let group2 = alice.client.create_group("Ward").await?;
    alice.client.add_members(group2, vec![carol.user()]).await?;
    alice
        .wait_event("the refusal", |e| {
            matches!(e, Event::OperationFailed { group_id: Some(g), reason } if *g == group2 && reason.contains("east-ambulance is not trusted"))
        })
        .await?;
    alice.sync().await?;
    assert_eq!(
        alice.member_users(group2).await?,
        vec![alice.user()],
        "Carol was not added"
    );
    Ok(())
}

/// A lost phone is revoked: the relay refuses its login at once; the phone,
/// when it next runs, finds itself in its organisation's signed revocation
/// list and erases everything it kept; the remaining members remove it from
/// the conversation (one commit wins), the user's other device stays, and
/// the phone's keys cannot read what follows: given its removal commit and
/// the next message, a copy of the phone's storage taken before it erased
/// itself (a thief's) learns it was removed and reads nothing, while Bob's
/// desk, offline just as long, reads the message from the same queue
/// items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_removed_and_cannot_read_what_follows() -> Result<()> {
    use cascade_core::engine::Engine;
    use cascade_core::{ConversationState, SqliteStore};
    use cascade_protocol::*;
    use cascade_tests::proxy::Proxy;
    use cascade_tests::raw::RawConn;

    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob_desk = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let bob_phone = relay.device("bob@north-trust", "phone").await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol", "Paramedic")
        .await?;
    let group = alice
        .create_group_with("Theatre", &[&bob_desk, &carol])
        .await?;
    bob_phone.joined(group).await?;
    assert_eq!(alice.client.members(group).await?.len(), 4);
    const SECRET: &str = "bed 14: penicillin allergy";
    alice.client.send_text(group, SECRET).await?;
    bob_phone
        .until("the message", || async {
            Ok(bob_phone.texts(group).await? == [SECRET])
        })
        .await?;
    let phone_id = bob_phone.client.identity().device_id;
    let phone_dir = bob_phone.close().await;
    assert!(
        !dir_contains(&phone_dir, SECRET.as_bytes())?,
        "the phone keeps the message encrypted (the erasure below is checked by reading the store)"
    );
    // The phone's own login (its engine signs the relay's challenge) is
    // accepted while it is enrolled.
    let (_, login) = RawConn::login_as(&relay.url, &phone_dir).await?;
    assert!(
        matches!(login, Ok(Response::Authenticated { .. })),
        "{login:?}"
    );
    // Bob's desk is closed while the phone is lost, as the phone is.
    bob_desk.sync().await?;
    let desk_dir = bob_desk.close().await;

    relay.revoke("north-trust", phone_id).await?;
    // The phone cannot connect any more: the relay refuses the same login
    // as before, and the phone's app is told.
    let (_, login) = RawConn::login_as(&relay.url, &phone_dir).await?;
    assert_eq!(login, Err(ProtocolError::AuthenticationFailed));
    // What a thief copies off the phone before it runs again.
    let stolen = tempfile::tempdir()?;
    copy_dir(&phone_dir, stolen.path())?;
    let mut phone = Peer::open(phone_dir.clone()).await?;
    phone
        .wait_event("the relay's refusal", |e| {
            matches!(e, Event::AuthenticationRefused)
        })
        .await?;
    phone
        .wait_event("erasing itself", |e| matches!(e, Event::Erased))
        .await?;
    assert!(
        matches!(phone.client.is_online().await, Err(CoreError::Erased)),
        "the client says why it stopped"
    );
    phone.close().await;
    assert!(
        !dir_contains(&phone_dir, SECRET.as_bytes())?,
        "nothing of the message is left on the phone"
    );
    assert_eq!(
        std::fs::read_dir(&phone_dir)?.count(),
        0,
        "nor anything else"
    );
    assert!(matches!(
        Client::open(&phone_dir, &store_key()).await,
        Err(CoreError::NotEnrolled)
    ));

    for p in [&alice, &carol] {
        p.until("the phone's removal", || async {
            Ok(!p
                .client
                .members(group)
                .await?
                .iter()
                .any(|m| m.device_id == phone_id))
        })
        .await?;
        assert_eq!(p.client.members(group).await?.len(), 3, "Bob's desk stays");
    }
    alice
        .client
        .send_text(group, "after the phone was lost")
        .await?;
    alice.sync().await?;

    // Bob's desk comes back, through a proxy that records what the relay
    // delivers to it: it processes the phone's removal and reads the message.
    let proxy = Proxy::start(&relay.url).await?;
    let bob_desk = Peer::open_via(desk_dir, Some(&proxy.url)).await?;
    bob_desk.sync().await?;
    bob_desk
        .until("the message after the removal", || async {
            Ok(bob_desk.texts(group).await? == [SECRET, "after the phone was lost"])
        })
        .await?;
    let e = alice.client.epoch(group).await?;
    for p in [&bob_desk, &carol] {
        p.until("the same epoch", || async {
            Ok(p.client.epoch(group).await? == e)
        })
        .await?;
    }
    let items: Vec<QueueItem> = proxy
        .deliveries()
        .await
        .into_iter()
        .filter(|i| i.group_id == group)
        .collect();
    assert!(
        items.iter().any(|i| i.kind == ItemKind::Commit)
            && items.iter().any(|i| i.kind == ItemKind::Application),
        "the desk got the removal and the message: {items:?}"
    );

    // The phone's saved state, given the very same items in the same order.
    let mut engine = Engine::new(SqliteStore::open(
        &stolen.path().join(cascade_core::client::DB_FILE),
        &store_key(),
    )?)?;
    let before = engine.history(&group, None, 100)?.len();
    engine.handle_connected();
    for item in items {
        let frame = encode_server_frame(&ServerFrame::Push(Push::Deliver(item)));
        engine.handle_frame(&frame, cascade_core::client::now_ms())?;
    }
    assert_eq!(
        engine.conversation(&group)?.state,
        ConversationState::Left,
        "the phone processed its removal"
    );
    let texts: Vec<_> = engine
        .history(&group, None, 100)?
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    assert_eq!(texts.len(), before, "nothing new was decrypted: {texts:?}");
    Ok(())
}

/// Both sides see the same safety number; it changes when a key changes
/// (here: Bob enrols another device).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_numbers_match_and_change_with_keys() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let group = alice.create_group_with("Ward", &[&bob]).await?;
    let a = alice.client.safety_number(group, bob.user()).await?;
    let b = bob.client.safety_number(group, alice.user()).await?;
    assert_eq!(a, b);
    let phone = relay.device("bob@north-trust", "phone").await?;
    let mut mine = bob.client.my_devices().await?;
    mine.sort();
    let mut want = vec![
        bob.client.identity().device_id,
        phone.client.identity().device_id,
    ];
    want.sort();
    assert_eq!(mine, want, "the devices screen lists both");
    let other = relay.user("carol@north-trust", "Carol", "Porter").await?;
    // Adding Carol re-adds nobody, but Bob's new phone joins when Bob is
    // added to a new conversation.
    let group2 = alice.create_group_with("Ward 2", &[&bob, &other]).await?;
    phone.joined(group2).await?;
    let a2 = alice.client.safety_number(group2, bob.user()).await?;
    assert_ne!(a, a2, "a new device key changes the number");
    assert_eq!(a2, phone.client.safety_number(group2, alice.user()).await?);
    Ok(())
}

/// The directory finds colleagues in the own and trusted organisations by
/// name or role, verified from their certificates, not in untrusted ones,
/// and still answers from the local cache when the relay is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_search_is_verified_and_works_offline() -> Result<()> {
    let mut relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay.org("west-pharmacy").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let _bob = relay
        .user("bob@north-trust", "Bob Singh", "Junior Doctor")
        .await?;
    let _carol = relay
        .user("carol@east-ambulance", "Carol Hughes", "Paramedic")
        .await?;
    let _wendy = relay
        .user("wendy@west-pharmacy", "Wendy Paramedic-Smith", "Pharmacist")
        .await?;
    alice.sync().await?;

    let found = alice.client.search_directory("paramedic").await?;
    let ids: Vec<_> = found.iter().map(|p| p.user_id.as_str()).collect();
    assert_eq!(
        ids,
        ["carol@east-ambulance"],
        "not the untrusted organisation"
    );
    assert_eq!(found[0].display_name, "Carol Hughes");
    assert_eq!(found[0].org_id.as_str(), "east-ambulance");
    let everyone = alice.client.search_directory("").await?;
    assert_eq!(everyone.len(), 3, "alice, bob, carol");

    relay.kill9().await?;
    let offline = alice.client.search_directory("doctor").await?;
    assert_eq!(
        offline
            .iter()
            .map(|p| p.display_name.as_str())
            .collect::<Vec<_>>(),
        ["Bob Singh"],
        "answered from the local cache"
    );
    Ok(())
}

/// A member offline while its organisation pins a partner, and a partner's
/// user is added meanwhile: on reconnect it first fetches the new trust
/// list, then processes the queued commit, and stays in step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_pinned_while_offline_applies_before_the_backlog() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol", "Paramedic")
        .await?;
    let group = alice.create_group_with("Ward", &[&bob]).await?;
    bob.sync().await?;
    let bob_dir = bob.close().await;

    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    alice.client.add_members(group, vec![carol.user()]).await?;
    alice.sync().await?;
    carol.joined(group).await?;

    let bob = Peer::open(bob_dir).await?;
    bob.sync().await?;
    let e = alice.client.epoch(group).await?;
    bob.until("the current epoch", || async {
        Ok(bob.client.epoch(group).await? == e)
    })
    .await?;
    assert_eq!(bob.member_users(group).await?.len(), 3);
    carol.client.send_text(group, "hello from the crew").await?;
    carol.sync().await?;
    bob.messages(group, 1).await?;
    Ok(())
}

/// A certificate close to expiry is renewed: the relay lists the device as
/// due, the admin issues a new certificate for the same key, the relay
/// withdraws KeyPackages carrying the old one, and the device updates its
/// credential in its conversations; everyone stays in step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_renewed_before_expiry() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    relay.add_user("bob@north-trust", "Bob", "Doctor").await?;
    let mut bob = relay
        .device_valid_for("bob@north-trust", "laptop", 10)
        .await?;
    let group = alice.create_group_with("Ward", &[&bob]).await?;
    let old_expiry = alice
        .client
        .members(group)
        .await?
        .into_iter()
        .find(|m| m.user_id == bob.user())
        .expect("bob")
        .certificate_expires;

    // 10 days left is inside the renewal window: the admin's next run
    // renews it (the first connection brought the first certificate).
    bob.forget_events();
    assert_eq!(relay.issue_pending("north-trust").await?, 1);
    bob.wait_event("the new certificate", |e| {
        matches!(e, Event::CertificateReceived)
    })
    .await?;
    bob.sync().await?;
    alice
        .until("Bob's renewed credential", || async {
            Ok(alice.client.members(group).await?.iter().any(|m| {
                m.user_id == bob.user() && m.certificate_expires > old_expiry + 300 * 86_400
            }))
        })
        .await?;
    let e = alice.client.epoch(group).await?;
    bob.until("the same epoch", || async {
        Ok(bob.client.epoch(group).await? == e)
    })
    .await?;
    // New conversations get Bob's renewed KeyPackages only.
    let carol = relay.user("carol@north-trust", "Carol", "Porter").await?;
    let group2 = carol.create_group_with("Porters", &[&bob]).await?;
    let bob_in_2 = carol
        .client
        .members(group2)
        .await?
        .into_iter()
        .find(|m| m.user_id == bob.user())
        .expect("bob");
    assert!(bob_in_2.certificate_expires > old_expiry + 300 * 86_400);
    bob.client.send_text(group, "renewed").await?;
    bob.sync().await?;
    alice.messages(group, 1).await?;
    Ok(())
}

/// Rotating an organisation's CA: the old CA vouches for the new one,
/// partners pin both, every device is re-issued by the new CA and moves to
/// it without re-enrolling, and conversations across organisations carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisation_rotates_its_ca_without_re_enrolling() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let mut alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol", "Paramedic")
        .await?;
    let group = alice.create_group_with("Transfer", &[&carol]).await?;
    let old_ca = relay.ca("north-trust").cert_der().to_vec();
    let before = alice.client.epoch(group).await?;

    relay.rotate_ca("north-trust").await?;
    let new_ca = relay.ca("north-trust").cert_der().to_vec();
    // East pins north's new CA next to the old one before north re-issues.
    relay.trust("east-ambulance", "north-trust").await?;
    carol.sync().await?;
    alice.sync().await?;
    // Alice's first connection brought a certificate too; wait for this one.
    alice.forget_events();
    assert_eq!(
        relay.issue_pending("north-trust").await?,
        1,
        "alice is re-issued"
    );
    alice
        .wait_event("the new certificate", |e| {
            matches!(e, Event::CertificateReceived)
        })
        .await?;
    alice.sync().await?;
    let e = alice.client.epoch(group).await?;
    assert_eq!(e, before + 1, "alice's credential update was committed");
    carol
        .until("alice's credential update", || async {
            Ok(carol.client.epoch(group).await? == e)
        })
        .await?;
    assert_eq!(
        carol.member_users(group).await?.len(),
        2,
        "nobody was dropped"
    );
    // Alice's device moved to the new CA: it is her anchor (as the app
    // loads it on its next start), and her certificate is the new CA's.
    let alice = Peer::open(alice.close().await).await?;
    let me = alice.client.identity().clone();
    assert!(me.anchor == new_ca, "the new CA is alice's anchor");
    let cert = me.certificate.expect("alice has a certificate");
    let verified_by = |ca: &[u8]| -> Result<bool> {
        Ok(
            verify_device_cert(&cert, &[TrustAnchor::from_der(ca)?], unix_now(), &|_, _| {
                false
            })
            .is_ok(),
        )
    };
    assert!(verified_by(&new_ca)?, "issued by the new CA");
    assert!(!verified_by(&old_ca)?, "not by the old one");
    alice.sync().await?;

    // A colleague enrolled under the new CA joins, and both sides accept.
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    alice.client.add_members(group, vec![bob.user()]).await?;
    alice.sync().await?;
    bob.joined(group).await?;
    carol
        .until("bob", || async {
            Ok(carol.member_users(group).await?.len() == 3)
        })
        .await?;
    bob.client
        .send_text(group, "new CA, same conversation")
        .await?;
    bob.sync().await?;
    carol.messages(group, 1).await?;
    alice.messages(group, 1).await?;
    Ok(())
}

/// An admin wipes two lost devices (`cascade admin wipe`): Alice's phone,
/// running, and Bob's tablet, switched off. The phone erases everything at
/// once and confirms; the tablet does the same when it is switched on. The
/// admin sees both confirmations, checked against the keys their CA
/// certified; the remaining members remove both devices, and the users'
/// other devices and the partner organisation carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_wipe_erases_lost_devices_and_they_confirm() -> Result<()> {
    use cascade_admin::WipeState;
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let mut phone = relay.device("alice@north-trust", "phone").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let tablet = relay.device("bob@north-trust", "tablet").await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol", "Paramedic")
        .await?;
    let group = carol.create_group_with("Handover", &[&alice, &bob]).await?;
    phone.joined(group).await?;
    tablet.joined(group).await?;
    const SECRET: &str = "bay 3: query sepsis, lactate 4.1";
    carol.client.send_text(group, SECRET).await?;
    for p in [&phone, &tablet] {
        p.until("the message", || async {
            Ok(p.texts(group).await? == [SECRET])
        })
        .await?;
    }
    let phone_id = phone.client.identity().device_id;
    let tablet_id = tablet.client.identity().device_id;
    let phone_dir = phone.dir.clone();
    let tablet_dir = tablet.close().await;

    let ca = relay.ca_dir("north-trust");
    ca.wipe(relay.admin(), phone_id, unix_now()).await?;
    ca.wipe(relay.admin(), tablet_id, unix_now()).await?;
    // The running phone is cut off, finds the order and erases itself.
    phone
        .wait_event("erasing itself", |e| matches!(e, Event::Erased))
        .await?;
    assert!(matches!(
        phone.client.is_online().await,
        Err(CoreError::Erased)
    ));
    phone.close().await;
    // The tablet does when it is switched on.
    let mut tablet = Peer::open(tablet_dir.clone()).await?;
    tablet
        .wait_event("erasing itself", |e| matches!(e, Event::Erased))
        .await?;
    tablet.close().await;
    for dir in [&phone_dir, &tablet_dir] {
        assert!(!dir_contains(dir, SECRET.as_bytes())?);
        assert_eq!(std::fs::read_dir(dir)?.count(), 0, "nothing is left");
        assert!(matches!(
            Client::open(dir, &store_key()).await,
            Err(CoreError::NotEnrolled)
        ));
    }
    // The admin sees both confirmed, with the devices' own signatures.
    let wipes = ca.wipes(relay.admin()).await?;
    let mut confirmed: Vec<_> = wipes
        .iter()
        .filter(|w| w.state == WipeState::Confirmed)
        .map(|w| w.device)
        .collect();
    confirmed.sort();
    let mut expected = vec![phone_id, tablet_id];
    expected.sort();
    assert_eq!(confirmed, expected, "{wipes:?}");

    for p in [&alice, &bob, &carol] {
        p.until("both devices' removal", || async {
            Ok(p.client.members(group).await?.len() == 3)
        })
        .await?;
    }
    alice
        .client
        .send_text(group, "both lost devices wiped")
        .await?;
    for p in [&bob, &carol] {
        p.until("the next message", || async {
            Ok(p.texts(group).await?.last().map(String::as_str) == Some("both lost devices wiped"))
        })
        .await?;
    }

    // A device believes only its own organisation's CA, about itself.
    let alice_dir = alice.close().await;
    let engine = cascade_core::engine::Engine::new(cascade_core::SqliteStore::open(
        &alice_dir.join(cascade_core::client::DB_FILE),
        &store_key(),
    )?)?;
    let laptop = engine
        .identity()
        .ok_or_else(|| anyhow::anyhow!("not enrolled"))?
        .device_id;
    let north = relay.ca("north-trust");
    let east = relay.ca("east-ambulance");
    let impostor_dir = tempfile::tempdir()?;
    let impostor = cascade_admin::CaDir::create(
        impostor_dir.path().join("ca"),
        &cascade_core::OrgId::new("north-trust")?,
        "North (impostor)",
        unix_now(),
        30,
    )?
    .ca()?;
    for (why, doc) in [
        ("a partner's CA", east.sign_wipe_order(laptop, unix_now())?),
        (
            "an impostor CA of its organisation",
            impostor.sign_wipe_order(laptop, unix_now())?,
        ),
        (
            "another device",
            north.sign_wipe_order(phone_id, unix_now())?,
        ),
        (
            "a revocation list",
            north.sign_revocations(&[laptop], 9, unix_now())?,
        ),
    ] {
        assert_eq!(engine.wipe_confirmation(&doc), None, "{why}");
    }
    assert!(engine
        .wipe_confirmation(&north.sign_wipe_order(laptop, unix_now())?)
        .is_some());
    Ok(())
}

/// The relay cannot make a device erase itself: a relay that lost its data
/// (or lies) refuses the device's login, and even serves a revocation list
/// naming the device, signed by a CA its operator made for the device's
/// organisation; the device checks the list against its own organisation's
/// CA, pinned at enrolment, and keeps everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_refuses_a_device_cannot_make_it_erase_itself() -> Result<()> {
    let mut relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let group = alice.create_group_with("Ward", &[&bob]).await?;
    bob.joined(group).await?;
    alice.client.send_text(group, "kept").await?;
    bob.until("the message", || async {
        Ok(bob.texts(group).await? == ["kept"])
    })
    .await?;
    let bob_dir = bob.close().await;
    // The relay forgets Bob's device: it refuses his login from now on.
    relay.kill9().await?;
    std::fs::remove_dir_all(relay.data_dir().join("db"))?;
    relay.start_again().await?;
    let token = std::fs::read_to_string(relay.data_dir().join("admin-token"))?;
    let operator = cascade_admin::AdminClient::new(&relay.url, token.trim())?;
    // Worse, its operator registers a CA of their own for Bob's
    // organisation and publishes a revocation list naming Bob's device,
    // signed by that CA.
    let org = cascade_core::OrgId::new("north-trust")?;
    let impostor = tempfile::tempdir()?;
    let ca = cascade_admin::CaDir::create(
        impostor.path().join("ca"),
        &org,
        "North (impostor)",
        unix_now(),
        30,
    )?;
    ca.register(&operator, &org, "North (impostor)").await?;
    let impostor_ca = std::sync::Arc::new(ca.ca()?);
    let forged = impostor_ca.sign_revocations(&[bob_dir_device(&bob_dir)?], 99, unix_now())?;
    operator
        .as_org(impostor_ca)
        .put_revocations(&org, &forged)
        .await?;
    let mut bob = Peer::open(bob_dir.clone()).await?;
    bob.wait_event("the relay's refusal", |e| {
        matches!(e, Event::AuthenticationRefused)
    })
    .await?;
    // Give the check time to run (it happens right after the refusal).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(bob.texts(group).await?, ["kept"], "nothing was erased");
    // Nor on disk: the store reopens with it (read through the store: its
    // files are encrypted).
    let bob_dir = bob.close().await;
    let engine = cascade_core::engine::Engine::new(cascade_core::SqliteStore::open(
        &bob_dir.join(cascade_core::client::DB_FILE),
        &store_key(),
    )?)?;
    let kept: Vec<_> = engine
        .history(&group, None, 10)?
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    assert_eq!(kept, ["kept"]);
    Ok(())
}

/// The device id kept in a closed device directory.
fn bob_dir_device(dir: &std::path::Path) -> Result<cascade_core::DeviceId> {
    let engine = cascade_core::engine::Engine::new(cascade_core::SqliteStore::open(
        &dir.join(cascade_core::client::DB_FILE),
        &store_key(),
    )?)?;
    Ok(engine
        .identity()
        .ok_or_else(|| anyhow::anyhow!("not enrolled"))?
        .device_id)
}

/// The idle lock an organisation's admins set reaches its staff's running
/// devices at once, through the relay, and a device offline meanwhile when
/// it comes back; a partner organisation's policy is not theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisations_idle_lock_reaches_its_devices() -> Result<()> {
    use cascade_core::identity::{DevicePolicy, DEFAULT_IDLE_LOCK_SECS};
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    let mut alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol", "Paramedic")
        .await?;
    assert_eq!(
        alice.client.device_policy().await?.idle_lock_secs,
        DEFAULT_IDLE_LOCK_SECS
    );
    let bob_dir = bob.close().await;
    relay.set_idle_lock("north-trust", 2).await?;
    let two_minutes = DevicePolicy {
        idle_lock_secs: 120,
        max_retention_days: None,
    };
    alice
        .wait_event("the new policy", |e| {
            *e == Event::PolicyUpdated(two_minutes)
        })
        .await?;
    assert_eq!(alice.client.device_policy().await?, two_minutes);
    // Bob's device was off: it takes the policy when it connects.
    let bob = Peer::open(bob_dir).await?;
    bob.until("Bob's policy", || async {
        Ok(bob.client.device_policy().await? == two_minutes)
    })
    .await?;
    // Carol is in another organisation.
    relay.set_idle_lock("east-ambulance", 30).await?;
    carol
        .until("Carol's policy", || async {
            Ok(carol.client.device_policy().await?.idle_lock_secs == 1800)
        })
        .await?;
    assert_eq!(alice.client.device_policy().await?, two_minutes);
    Ok(())
}

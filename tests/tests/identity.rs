//! Identity end to end: organisation CAs, certificates, explicit trust.

use anyhow::Result;
use cascade_core::{Client, CoreError, Event};
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
    relay
        .admin()
        .create_user(&uid("bob@north-trust"), "Bob", "Doctor")
        .await?;
    let code = relay.enrolment_code("bob@north-trust").await?;
    let dir = tempfile::tempdir()?;
    Client::enrol(dir.path(), &relay.url, &code, "bob's laptop").await?;
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
    relay
        .admin()
        .create_user(&uid("bob@north-trust"), "Bob", "Doctor")
        .await?;
    let code = relay.enrolment_code("bob@north-trust").await?;
    let (token, _) = code.rsplit_once('.').expect("token.fingerprint");
    let wrong = format!("{token}.{}", "ab".repeat(32));
    let dir = tempfile::tempdir()?;
    let err = Client::enrol(dir.path(), &relay.url, &wrong, "laptop")
        .await
        .expect_err("a wrong fingerprint is refused");
    assert!(
        err.to_string().contains("does not match the fingerprint"),
        "{err}"
    );
    let bare = Client::enrol(dir.path(), &relay.url, token, "laptop").await;
    assert!(
        matches!(bare, Err(CoreError::Enrolment(_))),
        "no fingerprint, no enrolment"
    );
    Ok(())
}

/// Unpinning a partner: new members from that organisation are refused
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpinning_a_partner_refuses_its_members_again() -> Result<()> {
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
    relay.distrust("north-trust", "east-ambulance").await?;
    let group = alice.client.create_group("Ward").await?;
    alice.client.add_members(group, vec![carol.user()]).await?;
    let ev = alice
        .wait_event("the refusal", |e| {
            matches!(e, Event::OperationFailed { .. })
        })
        .await?;
    assert!(matches!(ev, Event::OperationFailed { reason, .. } if reason.contains("not trusted")));
    Ok(())
}

//! Bad input gets its typed error and nothing else breaks.

use anyhow::Result;
use cascade_protocol::limits::MAX_FRAME_BYTES;
use cascade_protocol::*;
use cascade_tests::raw::{mls, RawConn, RawDevice};
use cascade_tests::*;

fn b(v: Vec<u8>) -> Bytes {
    Bytes::from(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_refused_and_the_connection_lives() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let device = RawDevice::enrol(&relay, "alice@north-trust").await?;
    let mut c = RawConn::connect(&relay).await?;
    let r = c
        .call(Request::SendMessage {
            group_id: GroupId::random(),
            message: b(mls::application(&GroupId::random(), 0)),
            to: vec![],
        })
        .await?;
    assert_eq!(r, Err(ProtocolError::Unauthenticated));
    let r = c
        .call(Request::GetUser {
            user_id: uid("alice@north-trust"),
        })
        .await?;
    assert_eq!(r, Err(ProtocolError::Unauthenticated));
    // The same connection can still authenticate and work.
    c.authenticate(&device).await?;
    assert_eq!(c.call(Request::Ping).await?, Ok(Response::Pong));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_authentication_is_refused() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let device = RawDevice::enrol(&relay, "mallory@north-trust").await?;
    let mut c = RawConn::connect(&relay).await?;
    // A signature by some other key, over the right payload.
    let forged = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let sig = ed25519_dalek::Signer::sign(
        &forged,
        &auth::challenge_payload(c.nonce(), &device.device_id),
    );
    let r = c
        .call(Request::Authenticate {
            device_id: device.device_id,
            signature: b(sig.to_bytes().to_vec()),
        })
        .await?;
    assert_eq!(r, Err(ProtocolError::AuthenticationFailed));
    assert!(
        c.is_closed().await,
        "the relay closes after a failed authentication"
    );
    // An unknown device fares no better.
    let mut c = RawConn::connect(&relay).await?;
    let r = c
        .call(Request::Authenticate {
            device_id: DeviceId::random(),
            signature: b(vec![0; 64]),
        })
        .await?;
    assert_eq!(r, Err(ProtocolError::AuthenticationFailed));
    // The real device still gets in.
    RawConn::authenticated(&relay, &device).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_get_typed_errors() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let device = RawDevice::enrol(&relay, "mallory@north-trust").await?;
    let mut c = RawConn::authenticated(&relay, &device).await?;

    c.send_raw(vec![0xff, 0x00, 0x13]).await?;
    assert!(matches!(
        c.next_reply().await?,
        ServerFrame::Rejected(ProtocolError::Malformed { .. })
    ));
    c.send_text("hello?").await?;
    assert!(matches!(
        c.next_reply().await?,
        ServerFrame::Rejected(ProtocolError::Malformed { .. })
    ));
    c.send_raw(vec![0u8; MAX_FRAME_BYTES + 1]).await?;
    assert_eq!(
        c.next_reply().await?,
        ServerFrame::Rejected(ProtocolError::TooLarge {
            limit: MAX_FRAME_BYTES as u64
        })
    );
    // A message inside a valid frame that is not MLS at all.
    let g = GroupId::random();
    let r = c
        .call(Request::CreateGroup {
            group_id: g,
            group_info: b(vec![1, 2, 3]),
        })
        .await?;
    assert!(matches!(r, Err(ProtocolError::Malformed { .. })), "{r:?}");
    // The connection carries on.
    assert_eq!(c.call(Request::Ping).await?, Ok(Response::Pong));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_cannot_post_and_stale_epochs_are_refused() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let owner = RawDevice::enrol_certified(&relay, "alice@north-trust").await?;
    let outsider = RawDevice::enrol(&relay, "mallory@north-trust").await?;
    let mut a = RawConn::authenticated(&relay, &owner).await?;
    let mut m = RawConn::authenticated(&relay, &outsider).await?;
    let g = GroupId::random();
    assert_eq!(
        a.call(Request::CreateGroup {
            group_id: g,
            group_info: b(mls::group_info()),
        })
        .await?,
        Ok(Response::GroupCreated)
    );

    // An outsider cannot post, commit, or read the GroupInfo.
    let r = m
        .call(Request::SendMessage {
            group_id: g,
            message: b(mls::application(&g, 0)),
            to: vec![],
        })
        .await?;
    assert_eq!(r, Err(ProtocolError::NotMember));
    let bundle = |epoch| CommitBundle {
        group_id: g,
        epoch,
        commit: b(mls::commit(&g, epoch)),
        welcome: None,
        group_info: b(mls::group_info()),
        added: vec![],
        removed: vec![],
    };
    assert_eq!(
        m.call(Request::Commit(bundle(0))).await?,
        Err(ProtocolError::NotMember)
    );

    // The owner commits epoch 0; a second commit for epoch 0 is stale.
    assert_eq!(
        a.call(Request::Commit(bundle(0))).await?,
        Ok(Response::CommitAccepted { epoch: 1, seq: 1 })
    );
    assert_eq!(
        a.call(Request::Commit(bundle(0))).await?,
        Err(ProtocolError::WrongEpoch { current: 1 })
    );
    // A commit whose header disagrees with the request is malformed.
    let mut lying = bundle(1);
    lying.commit = b(mls::commit(&g, 7));
    assert!(matches!(
        a.call(Request::Commit(lying)).await?,
        Err(ProtocolError::Malformed { .. })
    ));
    // Unknown group.
    let other = GroupId::random();
    assert_eq!(
        a.call(Request::SendMessage {
            group_id: other,
            message: b(mls::application(&other, 0)),
            to: vec![],
        })
        .await?,
        Err(ProtocolError::UnknownGroup)
    );
    // Everything still works for the member.
    assert_eq!(
        a.call(Request::Commit(bundle(1))).await?,
        Ok(Response::CommitAccepted { epoch: 2, seq: 2 })
    );
    assert_eq!(m.call(Request::Ping).await?, Ok(Response::Pong));
    Ok(())
}

//! Push notifications: an offline device's gateway hears that it has new
//! messages, and nothing else.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::{routing::post, Json, Router};
use cascade_protocol::http::PushNotification;
use cascade_tests::proxy::Proxy;
use cascade_tests::*;

/// A stand-in push gateway on loopback that records what it receives.
async fn gateway() -> Result<(String, Arc<Mutex<Vec<serde_json::Value>>>)> {
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/notify",
        post(move |Json(body): Json<serde_json::Value>| {
            let s = s.clone();
            async move {
                s.lock().expect("not poisoned").push(body);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/notify", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, seen))
}

/// Reopens `peer` through a proxy of its own, which shows when the relay has
/// let go of its connection (so the relay sees it offline).
async fn through_proxy(relay: &Relay, peer: Peer) -> Result<(Peer, Proxy)> {
    let proxy = Proxy::start(&relay.url).await?;
    let peer = Peer::open_via(peer.close().await, Some(&proxy.url)).await?;
    peer.sync().await?;
    Ok((peer, proxy))
}

/// Bob's phone, registered for push, is woken once for a burst of messages
/// while it is offline, with nothing in the notification but its token; not
/// while it is online. Dave, who switched notifications off, is never woken.
/// Carol's phone is the control: woken by a message sent after all the
/// others, it shows that every notification they caused has been sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_is_woken_without_content_or_sender() -> Result<()> {
    let (url, seen) = gateway().await?;
    let relay = Relay::start_with(&["--push-gateway", &url]).await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let (bob, bob_link) = through_proxy(
        &relay,
        relay.user("bob@north-trust", "Bob", "Doctor").await?,
    )
    .await?;
    let (dave, dave_link) = through_proxy(
        &relay,
        relay.user("dave@north-trust", "Dave", "Porter").await?,
    )
    .await?;
    let (carol, carol_link) = through_proxy(
        &relay,
        relay
            .user("carol@north-trust", "Carol", "Pharmacist")
            .await?,
    )
    .await?;
    let ward = alice.create_group_with("Ward", &[&bob, &dave]).await?;
    let pharmacy = alice.create_group_with("Pharmacy", &[&carol]).await?;
    for (p, token) in [
        (&bob, "apns:bob-phone-token"),
        (&dave, "apns:dave-phone-token"),
        (&carol, "fcm:carol-phone-token"),
    ] {
        assert!(
            p.client.register_push(Some(token.into()), WAIT).await?,
            "{token} registered"
        );
    }

    // Online: no notification, token or not.
    alice
        .client
        .send_text(ward, "while everyone is here")
        .await?;
    alice.sync().await?;
    bob.messages(ward, 1).await?;
    dave.messages(ward, 1).await?;

    // Dave switches notifications off.
    assert!(
        dave.client.register_push(None, WAIT).await?,
        "dave's token removed"
    );

    // Offline (the apps went to the background): a burst of messages wakes
    // Bob's phone once, and Dave's not at all.
    for (p, link) in [
        (&bob, &bob_link),
        (&dave, &dave_link),
        (&carol, &carol_link),
    ] {
        p.client.pause()?;
        link.relay_let_go().await?;
    }
    for i in 0..5 {
        alice
            .client
            .send_text(ward, &format!("PUSH-SECRET-{i} bed 12"))
            .await?;
    }
    alice.sync().await?;
    // The relay sends notifications one at a time, in the order it queued
    // the items: once Carol's (for a later message) is in, so is every one
    // the burst caused.
    alice.client.send_text(pharmacy, "for Carol").await?;
    alice.sync().await?;
    let got = poll_until(|| async {
        let got = seen.lock().expect("not poisoned").clone();
        Ok(
            if got.iter().any(|n| n["token"] == "fcm:carol-phone-token") {
                Ok(got)
            } else {
                Err(format!("no notification for Carol's phone: {got:?}"))
            },
        )
    })
    .await?;
    let tokens = got
        .iter()
        .map(|n| Ok(serde_json::from_value::<PushNotification>(n.clone())?.token))
        .collect::<Result<Vec<_>>>()?;
    assert_eq!(
        tokens,
        ["apns:bob-phone-token", "fcm:carol-phone-token"],
        "Bob's phone once (coalesced), Dave's never, Carol's once"
    );
    let raw = got[0].to_string();
    for leak in ["PUSH-SECRET", "alice", "Ward", &ward.to_string()] {
        assert!(!raw.contains(leak), "{leak} leaked into {raw}");
    }
    assert_eq!(
        got[0].as_object().map(|o| o.len()),
        Some(1),
        "the token only"
    );

    // The phone wakes, connects and gets everything.
    bob.client.resume()?;
    bob.messages(ward, 6).await?;
    Ok(())
}

//! Push notifications: an offline device's gateway hears that it has new
//! messages, and nothing else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::{routing::post, Json, Router};
use cascade_protocol::http::PushNotification;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_is_woken_without_content_or_sender() -> Result<()> {
    let (url, seen) = gateway().await?;
    let relay = Relay::start_with(&["--push-gateway", &url]).await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let group = alice.create_group_with("Ward", &[&bob]).await?;
    assert!(
        bob.client
            .register_push(Some("apns:bob-phone-token".into()), WAIT)
            .await?
    );

    // Online: no notification.
    alice.client.send_text(group, "while bob is here").await?;
    alice.sync().await?;
    bob.messages(group, 1).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        seen.lock().expect("not poisoned").is_empty(),
        "no push while connected"
    );

    // Offline (the app went to the background): a burst of messages wakes
    // the phone once, with nothing in the notification but its token.
    bob.client.pause()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..5 {
        alice
            .client
            .send_text(group, &format!("PUSH-SECRET-{i} bed 12"))
            .await?;
    }
    alice.sync().await?;
    bob.until("a push notification", || async {
        Ok(!seen.lock().expect("not poisoned").is_empty())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = seen.lock().expect("not poisoned").clone();
    assert_eq!(got.len(), 1, "coalesced: {got:?}");
    let n: PushNotification = serde_json::from_value(got[0].clone())?;
    assert_eq!(n.token, "apns:bob-phone-token");
    let raw = got[0].to_string();
    for leak in ["PUSH-SECRET", "alice", "Ward", &group.to_string()] {
        assert!(!raw.contains(leak), "{leak} leaked into {raw}");
    }
    assert_eq!(
        got[0].as_object().map(|o| o.len()),
        Some(1),
        "the token only"
    );

    // The phone wakes, connects and gets everything.
    bob.client.resume()?;
    bob.messages(group, 6).await?;

    // Unregistering stops notifications.
    bob.client.register_push(None, WAIT).await?;
    bob.client.pause()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    seen.lock().expect("not poisoned").clear();
    alice.client.send_text(group, "no push now").await?;
    alice.sync().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(seen.lock().expect("not poisoned").is_empty());
    Ok(())
}

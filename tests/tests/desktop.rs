//! The desktop app end to end: the real `cascade-desktop` binary driven
//! through WebDriver (tauri-driver + WebKitWebDriver) under Xvfb, against a
//! real relay, with a second party on cascade-core.
//!
//! A second test checks desktop notifications with the window in the
//! background, on a D-Bus session of its own watched by `dbus-monitor`.
//!
//! Needs a display, tauri-driver, WebKitWebDriver, dbus-daemon and xdotool,
//! so both are ignored in a plain `cargo test`; `cargo xtask test` installs
//! those and runs them with `--ignored` under `xvfb-run`, one at a time.
//! Screenshots of each main screen go to `$CASCADE_SCREENSHOT_DIR` (default
//! `<target>/desktop-screenshots`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use cascade_core::GroupId;
use cascade_tests::webdriver::{Driver, CONTROL, ENTER, SHIFT};
use cascade_tests::*;

fn screenshot_dir() -> PathBuf {
    std::env::var_os("CASCADE_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_dir().join("desktop-screenshots"))
}

/// The one conversation Bob has, once it appears.
async fn only_conversation(peer: &Peer) -> Result<GroupId> {
    peer.until("a conversation", || async {
        Ok(!peer.client.conversations().await?.is_empty())
    })
    .await?;
    Ok(peer.client.conversations().await?[0].group_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a display, tauri-driver and WebKitWebDriver: run by `cargo xtask test`"]
async fn a_nurse_enrols_chats_across_organisations_and_rides_out_a_relay_outage() -> Result<()> {
    let mut relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let bob = relay
        .user("bob@east-ambulance", "Bob Jones", "Paramedic")
        .await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol Hughes", "Dispatcher")
        .await?;
    let alice_id = uid("alice@north-trust");
    relay
        .add_user("alice@north-trust", "Alice Smith", "Charge Nurse")
        .await?;
    let code = relay.enrolment_code("alice@north-trust").await?;

    let data = tempfile::tempdir()?;
    let shots = screenshot_dir();
    let app = Driver::start(
        &bin_dir().join("cascade-desktop"),
        &[
            (
                "CASCADE_DATA_DIR",
                data.path().to_str().context("utf-8 path")?,
            ),
            ("CASCADE_RELAY", &relay.url),
            // Xvfb has no Secret Service: the passphrase path.
            ("CASCADE_PASSPHRASE", PASSPHRASE),
        ],
        &shots,
    )
    .await?;

    let story: Result<()> = async {
        // First run: the enrolment screen, with the relay address suggested.
        let relay_field = app.find("[data-testid=enrol-relay]").await?;
        assert_eq!(
            app.attr(&relay_field, "value").await?.as_deref(),
            Some(relay.url.as_str())
        );
        let code_field = app.find("[data-testid=enrol-code]").await?;
        app.send_keys(&code_field, &code).await?;
        app.screenshot("01-enrol").await?;
        assert_accessible(&app, "enrolment").await?;
        app.click(&app.find("[data-testid=enrol-submit]").await?)
            .await?;

        // The verified identity the organisation vouched for, and the wait for
        // the certificate, which the admins then issue.
        app.wait_for_text("[data-testid=enrolled] [data-testid=identity-name]", |t| {
            t == "Alice Smith"
        })
            .await?;
        app.screenshot("02-enrolled").await?;
        relay.issue_pending("north-trust").await?;
        app.click(&app.find("[data-testid=enrol-continue]").await?)
            .await?;
        app.wait_for_text("[data-testid=me-name]", |t| t == "Alice Smith")
            .await?;
        let dot = app.find("[data-testid=connection]").await?;
        wait_attr(&app, &dot, "data-state", "online").await?;

        // A 1:1 chat with Bob, found in the directory of a trusted
        // organisation. Ctrl+N opens the dialog from the keyboard.
        let body = app.find("body").await?;
        app.send_keys(&body, &format!("{CONTROL}n")).await?;
        app.find("[data-testid=new-conversation]").await?;
        let search = app.find("[data-testid=directory-search]").await?;
        app.send_keys(&search, "Bob").await?;
        let result = app
            .wait_for_text("[data-testid=directory-result]", |t| {
                t.contains("Bob Jones") && t.contains("east-ambulance")
            })
            .await?;
        app.click(&result).await?;
        app.wait_for_text("[data-testid=create-conversation]", |t| {
            t.contains("Start chat")
        })
        .await?;
        app.screenshot("03-new-conversation").await?;
        app.click(&app.find("[data-testid=create-conversation]").await?)
            .await?;
        app.wait_for_text("[data-testid=chat-title]", |t| t == "Bob Jones")
            .await?;

        // Alice writes; Enter sends, Shift+Enter breaks the line.
        let composer = app.find("[data-testid=composer]").await?;
        app.send_keys(
            &composer,
            &format!("Handover at 19:00{SHIFT}{ENTER}{SHIFT}Bay 3 needs a porter"),
        )
        .await?;
        app.send_keys(&composer, ENTER).await?;
        let group = only_conversation(&bob).await?;
        bob.joined(group).await?;
        let got = bob.messages(group, 1).await?;
        assert_eq!(
            got.last().and_then(|m| m.text.as_deref()),
            Some("Handover at 19:00\nBay 3 needs a porter")
        );
        // The sent message's state moves on; Bob's device confirms delivery.
        app.wait_for("[data-testid=message][data-state=delivered]", |_| true)
            .await?;

        // Bob answers; it shows up live, under his verified name.
        bob.client
            .send_text(group, "On my way, ETA 10 minutes")
            .await?;
        app.wait_for_text("[data-testid=message-text]", |t| {
            t == "On my way, ETA 10 minutes"
        })
        .await?;
        app.wait_for_text("[data-testid=chat-title]", |t| t == "Bob Jones")
            .await?;
        // Bob's message carries his organisation (once the member list,
        // which the badge comes from, has loaded).
        app.wait_for_text("[data-testid=message] [data-testid=org-badge]", |t| {
            t == "east-ambulance"
        })
        .await?;
        // The conversation is marked as crossing organisations.
        app.find("[data-testid=conversation] [data-testid=cross-org]")
            .await?;
        assert_layout(&app).await?;
        app.screenshot("04-chat").await?;
        assert_accessible(&app, "chat").await?;

        // The member list: verified names, roles and organisations; a safety
        // number Alice can compare with Bob's.
        app.click(&app.find("[data-testid=toggle-members]").await?)
            .await?;
        app.wait_for("[data-testid=member]", |n| n == 2).await?;
        let names: Vec<String> = futures_util::future::try_join_all(
            app.find_all("[data-testid=member-name]")
                .await?
                .iter()
                .map(|e| app.text(e)),
        )
        .await?;
        assert_eq!(names, ["Alice Smith (you)", "Bob Jones"]);
        app.click(&app.find("[data-testid=safety-number-button]").await?)
            .await?;
        let shown = app.find("[data-testid=safety-number] code").await?;
        let shown: String = app.text(&shown).await?.split_whitespace().collect();
        let bobs: String = bob
            .client
            .safety_number(group, alice_id.clone())
            .await?
            .split_whitespace()
            .collect();
        assert_eq!(shown, bobs, "both sides compute the same number");
        app.screenshot("05-members").await?;
        assert_accessible(&app, "member panel").await?;
        app.click(&app.find("[data-testid=toggle-members]").await?)
            .await?;

        // The relay goes down: the app says so, keeps the message, and sends
        // it when the relay is back.
        relay.kill9().await?;
        wait_attr(&app, &dot, "data-state", "offline").await?;
        app.find("[data-testid=offline-banner]").await?;
        let composer = app.find("[data-testid=composer]").await?;
        app.send_keys(&composer, &format!("Sent while the relay was down{ENTER}"))
            .await?;
        app.wait_for("[data-testid=message][data-state=sending]", |_| true)
            .await?;
        app.screenshot("06-offline").await?;
        relay.restart().await?;
        wait_attr(&app, &dot, "data-state", "online").await?;
        app.wait_gone("[data-testid=offline-banner]").await?;
        // Both of Alice's messages end delivered (not failed).
        app.wait_for("[data-testid=message][data-state=delivered]", |n| n == 2)
            .await?;
        let got = bob.messages(group, 3).await?;
        assert_eq!(
            got.iter()
                .filter_map(|m| m.text.as_deref())
                .collect::<Vec<_>>(),
            [
                "Handover at 19:00\nBay 3 needs a porter",
                "On my way, ETA 10 minutes",
                "Sent while the relay was down"
            ],
            "each message once, in order"
        );
        // Nothing more turns up once Bob is idle.
        bob.sync().await?;
        assert_eq!(bob.texts(group).await?.len(), 3, "no late duplicate");

        // A long conversation opens at its newest page; scrolling up loads
        // the older ones, each message once, in order.
        for i in 0..60 {
            bob.client.send_text(group, &format!("Obs update {i}")).await?;
        }
        bob.sync().await?;
        app.wait_for_text("[data-testid=message-text]", |t| t == "Obs update 59")
            .await?;
        let other = bob.client.create_group("Regional on-call").await?;
        bob.client.add_members(other, vec![alice_id.clone()]).await?;
        // Bob created it; he makes Alice an admin too, so she may remove
        // people from it below.
        bob.sync().await?;
        bob.client
            .set_role(other, alice_id.clone(), cascade_core::Role::Admin)
            .await?;
        bob.sync().await?;
        open_conversation(&app, "Regional on-call").await?;
        open_conversation(&app, "Bob Jones").await?;
        app.wait_for("[data-testid=message]", |n| n == 50).await?;
        app.execute(
            "const log = document.querySelector('[data-testid=message-list]'); log.scrollTop = 0; log.dispatchEvent(new Event('scroll'));",
            vec![],
        )
        .await?;
        app.wait_for("[data-testid=message]", |n| n == 63).await?;
        let first = app.find("[data-testid=message-text]").await?;
        assert_eq!(
            app.text(&first).await?,
            "Handover at 19:00\nBay 3 needs a porter"
        );

        // Managing a group from the member panel: Alice adds Carol from the
        // directory, then removes her again; Bob's device sees both.
        open_conversation(&app, "Regional on-call").await?;
        app.click(&app.find("[data-testid=toggle-members]").await?)
            .await?;
        app.wait_for_text("[data-testid=my-role]", |t| t.contains("You are an admin"))
            .await?;
        app.click(&app.find("[data-testid=add-people]").await?)
            .await?;
        let search = app.find("[data-testid=member-panel] [data-testid=directory-search]").await?;
        app.send_keys(&search, "Dispatcher").await?;
        let result = app
            .wait_for_text("[data-testid=directory-result]", |t| t.contains("Carol Hughes"))
            .await?;
        app.click(&result).await?;
        app.click(&app.find("[data-testid=add-members]").await?)
            .await?;
        app.wait_for("[data-testid=member]", |n| n == 3).await?;
        bob.until("Carol to be a member", || async {
            Ok(bob.member_users(other).await?.contains(&carol.user()))
        })
        .await?;
        carol.joined(other).await?;
        app.screenshot("09-group-members").await?;
        let remove = app.find("[aria-label='Remove Carol Hughes']").await?;
        app.click(&remove).await?;
        app.wait_for("[data-testid=member]", |n| n == 2).await?;
        bob.until("Carol to be removed", || async {
            Ok(!bob.member_users(other).await?.contains(&carol.user()))
        })
        .await?;
        app.click(&app.find("[data-testid=toggle-members]").await?)
            .await?;

        // Readable in a small window too: no sideways overflow.
        app.set_window_size(800, 600).await?;
        poll_until(|| async {
            let width = app.execute("return window.innerWidth;", vec![]).await?;
            Ok(if width.as_f64() > Some(800.0) {
                Err("the window did not shrink".to_owned())
            } else {
                Ok(())
            })
        })
        .await?;
        assert_layout(&app).await?;
        app.screenshot("08-small-window").await?;
        app.set_window_size(1280, 800).await?;

        // Devices and notification settings.
        app.click(&app.find("[data-testid=devices-button]").await?)
            .await?;
        app.wait_for_text("[data-testid=device-list]", |t| t.contains("(this device)"))
            .await?;
        app.screenshot("07-devices").await?;
        assert_accessible(&app, "devices dialog").await?;
        Ok(())
    }
    .await;
    if story.is_err() {
        // What the window showed when it went wrong, for the artefacts.
        let _ = app.screenshot("failure").await;
    }
    story?;
    app.quit().await?;
    println!("screenshots in {}", shots.display());
    Ok(())
}

/// A private deployment: the relay serves TLS with a certificate from the
/// organisation's own CA, and the nurse enrols with the `cascade://enrol`
/// link alone (no relay address typed) and the relay's CA pasted into the
/// form; the app then connects over WSS with that pin, and a code without
/// the pin is refused with a message naming TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a display, tauri-driver and WebKitWebDriver: run by `cargo xtask test`"]
async fn tls_a_nurse_enrols_with_a_link_on_a_private_relay() -> Result<()> {
    let relay = Relay::start_tls().await?;
    relay.org("north-trust").await?;
    let bob = relay.user("bob@north-trust", "Bob Jones", "Porter").await?;
    relay
        .add_user("alice@north-trust", "Alice Smith", "Charge Nurse")
        .await?;
    let link = relay.enrolment_link("alice@north-trust").await?;
    assert!(link.starts_with("cascade://enrol?"), "{link}");
    let server_ca = relay.server_ca().context("a TLS relay")?.to_owned();

    let data = tempfile::tempdir()?;
    let shots = screenshot_dir().join("tls");
    let app = Driver::start(
        &bin_dir().join("cascade-desktop"),
        &[
            (
                "CASCADE_DATA_DIR",
                data.path().to_str().context("utf-8 path")?,
            ),
            ("CASCADE_PASSPHRASE", PASSPHRASE),
        ],
        &shots,
    )
    .await?;
    let story: Result<()> = async {
        // No relay address: the link names it (the suggested address no
        // longer applies). Without the pin, TLS refuses the relay, and the
        // form says so.
        app.send_keys(&app.find("[data-testid=enrol-code]").await?, &link)
            .await?;
        app.wait_for_text("[data-testid=enrol-link-relay]", |t| t.contains(&relay.url))
            .await?;
        app.wait_gone("[data-testid=enrol-relay]").await?;
        app.click(&app.find("[data-testid=enrol-submit]").await?)
            .await?;
        app.wait_for_text("[data-testid=enrol-error]", |t| t.contains("TLS"))
            .await?;
        app.screenshot("01-unpinned-refused").await?;

        // With the relay's CA pasted in, the same link enrols.
        app.click(&app.find("[data-testid=enrol-private] summary").await?)
            .await?;
        app.find("[data-testid=enrol-server-ca]").await?;
        // Pasted, as a person would (typing 600 characters of PEM key by
        // key is what nobody does).
        app.execute(
            "const f = document.querySelector('[data-testid=enrol-server-ca]'); \
             f.value = arguments[0]; \
             f.dispatchEvent(new Event('input', { bubbles: true }));",
            vec![serde_json::Value::String(server_ca.clone())],
        )
        .await?;
        app.screenshot("02-pinned").await?;
        assert_accessible(&app, "enrolment with a private relay").await?;
        app.click(&app.find("[data-testid=enrol-submit]").await?)
            .await?;
        app.wait_for_text("[data-testid=enrolled] [data-testid=identity-name]", |t| {
            t == "Alice Smith"
        })
        .await?;
        relay.issue_pending("north-trust").await?;
        app.click(&app.find("[data-testid=enrol-continue]").await?)
            .await?;
        let dot = app.find("[data-testid=connection]").await?;
        wait_attr(&app, &dot, "data-state", "online").await?;

        // Over WSS: Bob's message reaches the app.
        let group = bob.client.create_group("Theatre 2").await?;
        bob.client
            .add_members(group, vec![uid("alice@north-trust")])
            .await?;
        bob.client.send_text(group, "Over TLS").await?;
        open_conversation(&app, "Theatre 2").await?;
        app.wait_for_text("[data-testid=message-text]", |t| t == "Over TLS")
            .await?;
        app.screenshot("03-online-over-tls").await?;
        Ok(())
    }
    .await;
    if story.is_err() {
        let _ = app.screenshot("failure").await;
    }
    story?;
    app.quit().await?;
    Ok(())
}

/// Without an OS keystore (no Secret Service on the session bus) the app
/// asks for a passphrase: twice at enrolment; then, each time it opens,
/// once, and a wrong one is refused with nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a display, tauri-driver and WebKitWebDriver: run by `cargo xtask test`"]
async fn without_a_keystore_the_app_asks_for_a_passphrase_and_locks_when_idle() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay
        .add_user("alice@north-trust", "Alice Smith", "Charge Nurse")
        .await?;
    let bob = relay.user("bob@north-trust", "Bob Jones", "Doctor").await?;
    let code = relay.enrolment_code("alice@north-trust").await?;
    let data = tempfile::tempdir()?;
    let dir = data.path().to_str().context("utf-8 path")?;
    let shots = screenshot_dir().join("passphrase");
    let env = [
        ("CASCADE_DATA_DIR", dir),
        ("CASCADE_RELAY", relay.url.as_str()),
        // A session bus nobody listens on: no Secret Service.
        (
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/cascade-test",
        ),
    ];
    const PASS: &str = "ward seven night shift";
    const NEW_PASS: &str = "ward seven handover";

    let app = Driver::start(&bin_dir().join("cascade-desktop"), &env, &shots).await?;
    let story: Result<()> = async {
        app.send_keys(&app.find("[data-testid=enrol-code]").await?, &code)
            .await?;
        app.send_keys(&app.find("[data-testid=enrol-passphrase]").await?, PASS)
            .await?;
        app.send_keys(
            &app.find("[data-testid=enrol-passphrase-again]").await?,
            PASS,
        )
        .await?;
        app.screenshot("01-enrol-with-passphrase").await?;
        assert_accessible(&app, "enrolment with a passphrase").await?;
        app.click(&app.find("[data-testid=enrol-submit]").await?)
            .await?;
        app.wait_for_text("[data-testid=enrolled] [data-testid=identity-name]", |t| {
            t == "Alice Smith"
        })
        .await?;
        Ok(())
    }
    .await;
    if story.is_err() {
        let _ = app.screenshot("failure").await;
    }
    story?;
    app.quit().await?;
    relay.issue_pending("north-trust").await?;
    assert_eq!(
        cascade_core::Client::protection(data.path())?,
        cascade_core::Protection::Passphrase
    );

    let app = Driver::start(&bin_dir().join("cascade-desktop"), &env, &shots).await?;
    let story: Result<()> = async {
        app.find("[data-testid=unlock-passphrase]").await?;
        app.screenshot("02-unlock").await?;
        assert_accessible(&app, "unlock").await?;
        unlock_after_a_wrong_passphrase(&app, PASS, "03-wrong-passphrase").await?;
        app.wait_for_text("[data-testid=me-name]", |t| t == "Alice Smith")
            .await?;
        let dot = app.find("[data-testid=connection]").await?;
        wait_attr(&app, &dot, "data-state", "online").await?;

        // Bob writes; Alice reads it.
        let group = bob.client.create_group("Bay 4").await?;
        bob.client
            .add_members(group, vec![uid("alice@north-trust")])
            .await?;
        bob.client.send_text(group, "Obs due in bay 4").await?;
        open_conversation(&app, "Bay 4").await?;
        app.wait_for_text("[data-testid=message-text]", |t| t == "Obs due in bay 4")
            .await?;

        // She steps away and locks it: nothing of the conversation stays
        // in the window, and what arrives meanwhile is not shown.
        app.click(&app.find("[data-testid=lock-button]").await?)
            .await?;
        app.find("[data-testid=lock-screen]").await?;
        bob.client.send_text(group, "Bed 9 needs a review").await?;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let page = window_html(&app).await?;
        for secret in ["Obs due", "Bed 9", "Bay 4", "Bob Jones"] {
            assert!(!page.contains(secret), "{secret:?} shown while locked");
        }
        app.screenshot("04-locked").await?;
        assert_accessible(&app, "lock screen").await?;
        unlock_after_a_wrong_passphrase(&app, PASS, "05-locked-wrong-passphrase").await?;
        open_conversation(&app, "Bay 4").await?;
        app.wait_for_text("[data-testid=message-text]", |t| {
            t == "Bed 9 needs a review"
        })
        .await?;

        // Someone saw her type it: she changes it. A wrong current one is
        // refused; then only the new one unlocks.
        app.click(&app.find("[data-testid=devices-button]").await?)
            .await?;
        let change = |current: &'static str| {
            let app = &app;
            async move {
                for (field, text) in [
                    ("passphrase-current", current),
                    ("passphrase-new", NEW_PASS),
                    ("passphrase-again", NEW_PASS),
                ] {
                    let input = app.find(&format!("[data-testid={field}]")).await?;
                    app.clear(&input).await?;
                    app.send_keys(&input, text).await?;
                }
                app.click(&app.find("[data-testid=passphrase-submit]").await?)
                    .await
            }
        };
        change("ward seven day shift").await?;
        app.wait_for_text("[data-testid=passphrase-error]", |t| {
            t.contains("does not unlock this device's data")
        })
        .await?;
        change(PASS).await?;
        app.wait_for_text("[data-testid=passphrase-changed]", |t| {
            t.contains("Passphrase changed")
        })
        .await?;
        app.screenshot("06-passphrase-changed").await?;
        assert_accessible(&app, "passphrase change").await?;
        app.click(
            &app.find("[data-testid=devices-dialog] button[aria-label=Close]")
                .await?,
        )
        .await?;
        app.click(&app.find("[data-testid=lock-button]").await?)
            .await?;
        let field = app.find("[data-testid=unlock-passphrase]").await?;
        app.send_keys(&field, PASS).await?;
        app.click(&app.find("[data-testid=unlock-submit]").await?)
            .await?;
        app.wait_for_text("[data-testid=unlock-error]", |t| {
            t.contains("does not unlock this device's data")
        })
        .await?;
        app.clear(&field).await?;
        app.send_keys(&field, NEW_PASS).await?;
        app.click(&app.find("[data-testid=unlock-submit]").await?)
            .await?;
        app.wait_for_text("[data-testid=me-name]", |t| t == "Alice Smith")
            .await?;

        // Her organisation sets a one-minute idle lock: without input the
        // app locks by itself.
        relay.set_idle_lock("north-trust", 1).await?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        while app.find_all("[data-testid=lock-screen]").await?.is_empty() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the app did not lock after its idle minute"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let page = window_html(&app).await?;
        assert!(!page.contains("Bed 9"), "content shown while locked");
        app.screenshot("07-idle-locked").await?;
        Ok(())
    }
    .await;
    if story.is_err() {
        let _ = app.screenshot("failure").await;
    }
    story?;
    app.quit().await?;
    Ok(())
}

/// Types another passphrase on the unlock screen (refused, the screen
/// stays), then `right`.
/// Alice, in the app, and Bob (another organisation, on cascade-core) in
/// a conversation Bob started: she answers, reacts, edits and deletes
/// from each message's actions; he sees each change, and his own changes
/// show in the app (the quote of his edited message, his reaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a display, tauri-driver and WebKitWebDriver: run by `cargo xtask test`"]
async fn a_nurse_replies_reacts_edits_and_deletes() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let bob = relay
        .user("bob@east-ambulance", "Bob Jones", "Paramedic")
        .await?;
    relay
        .add_user("alice@north-trust", "Alice Smith", "Charge Nurse")
        .await?;
    let code = relay.enrolment_code("alice@north-trust").await?;
    let data = tempfile::tempdir()?;
    let shots = screenshot_dir();
    let app = Driver::start(
        &bin_dir().join("cascade-desktop"),
        &[
            (
                "CASCADE_DATA_DIR",
                data.path().to_str().context("utf-8 path")?,
            ),
            ("CASCADE_RELAY", &relay.url),
            ("CASCADE_PASSPHRASE", PASSPHRASE),
        ],
        &shots,
    )
    .await?;

    let story: Result<()> = async {
        app.send_keys(&app.find("[data-testid=enrol-code]").await?, &code)
            .await?;
        app.click(&app.find("[data-testid=enrol-submit]").await?)
            .await?;
        app.find("[data-testid=enrolled]").await?;
        relay.issue_pending("north-trust").await?;
        app.click(&app.find("[data-testid=enrol-continue]").await?)
            .await?;
        let dot = app.find("[data-testid=connection]").await?;
        wait_attr(&app, &dot, "data-state", "online").await?;

        let group = bob.client.create_group("Bay 3 transfer").await?;
        bob.client
            .add_members(group, vec![uid("alice@north-trust")])
            .await?;
        let handover = bob
            .client
            .send_text(group, "Patient in bay 3 ready at 14:00")
            .await?;
        bob.sync().await?;
        open_conversation(&app, "Bay 3 transfer").await?;
        let original = app
            .wait_for_text("[data-testid=message-text]", |t| {
                t == "Patient in bay 3 ready at 14:00"
            })
            .await?;
        drop(original);

        // Reply: the composer says to what; the reply shows the quote.
        app.click(&app.find("[data-testid=reply]").await?).await?;
        app.wait_for_text("[data-testid=composer-banner]", |t| {
            t.contains("Replying to Bob Jones: Patient in bay 3")
        })
        .await?;
        let composer = app.find("[data-testid=composer]").await?;
        app.send_keys(&composer, &format!("On it{ENTER}")).await?;
        app.wait_gone("[data-testid=composer-banner]").await?;
        let reply = poll_until(|| async {
            let h = bob.client.history(group, None, 10).await?;
            Ok(
                match h.into_iter().find(|m| m.text.as_deref() == Some("On it")) {
                    Some(m) => Ok(m),
                    None => Err("Bob never got the reply".to_owned()),
                },
            )
        })
        .await?;
        anyhow::ensure!(reply.reply_to.as_ref().map(|q| q.id) == Some(handover));
        app.wait_for_text("[data-testid=quote]", |t| {
            t.contains("Bob Jones: Patient in bay 3 ready at 14:00")
        })
        .await?;

        // Read receipts both ways: the open conversation is read, so Bob's
        // message counts Alice; Bob reads, and Alice's reply says so, with
        // who on demand.
        bob.until("Alice's read report", || async {
            Ok(bob.client.message(group, handover).await?.read_by == 1)
        })
        .await?;
        bob.client.mark_read(group).await?;
        bob.sync().await?;
        let read_by = app
            .wait_for_text(
                &format!("[data-id='{}'] [data-testid=read-by]", reply.id),
                |t| t == "Read by 1",
            )
            .await?;
        app.click(&read_by).await?;
        app.wait_for_text("[data-testid=receipts-summary]", |t| {
            t == "Delivered to 1 of 1, read by 1"
        })
        .await?;
        app.wait_for_text("[data-testid=receipt]", |t| t.contains("Bob Jones — read"))
            .await?;
        app.screenshot("10a-read-by").await?;
        assert_accessible(&app, "read by").await?;
        app.click(&read_by).await?;
        app.wait_gone("[data-testid=receipts]").await?;

        // Muting the conversation: the header and the list say so, and the
        // device's own list (from the core) agrees; then unmuted.
        let mute = app.find("[data-testid=toggle-mute]").await?;
        app.click(&mute).await?;
        wait_attr(&app, &mute, "aria-pressed", "true").await?;
        app.find("[data-testid=muted]").await?;
        app.click(&mute).await?;
        wait_attr(&app, &mute, "aria-pressed", "false").await?;
        app.wait_gone("[data-testid=muted]").await?;

        // Bob types: the line under the conversation says so, and clears
        // when his message mentioning Alice arrives, highlighted as her.
        bob.client.set_typing(group, true).await?;
        app.wait_for_text("[data-testid=typing]", |t| t == "Bob Jones is typing…")
            .await?;
        app.screenshot("10b-typing").await?;
        bob.client
            .send_text(group, "@alice@north-trust can you take the handover?")
            .await?;
        bob.sync().await?;
        app.wait_for_text("[data-testid=mention-me]", |t| t == "@Alice Smith")
            .await?;
        app.wait_for_text("[data-testid=typing]", |t| t.is_empty())
            .await?;

        // Alice mentions Bob from the list: `@bo`, Enter picks him, Enter
        // sends; Bob's device shows his certified name.
        let composer = app.find("[data-testid=composer]").await?;
        app.send_keys(&composer, "Yes, @bo").await?;
        app.wait_for_text("[data-testid=mention-option]", |t| {
            t.contains("Bob Jones") && t.contains("@bob@east-ambulance")
        })
        .await?;
        app.screenshot("10c-mention-list").await?;
        assert_accessible(&app, "mention list").await?;
        app.send_keys(&composer, ENTER).await?;
        app.wait_gone("[data-testid=mention-list]").await?;
        app.send_keys(&composer, &format!("will do{ENTER}")).await?;
        let mention = poll_until(|| async {
            let h = bob.client.history(group, None, 20).await?;
            Ok(
                match h.into_iter().find(|m| m.text.as_deref() == Some("Yes, @Bob Jones will do")) {
                    Some(m) => Ok(m),
                    None => Err("Bob never got the mention".to_owned()),
                },
            )
        })
        .await?;
        anyhow::ensure!(mention.mentions(&uid("bob@east-ambulance")));
        app.wait_for_text("[data-testid=mention]", |t| t == "@Bob Jones")
            .await?;
        app.screenshot("10d-mentions").await?;

        // React to Bob's message from the picker.
        let first_react = app.find("[data-testid=react]").await?;
        app.click(&first_react).await?;
        app.click(&app.find("[data-testid=pick-reaction]").await?)
            .await?;
        bob.until("Alice's reaction", || async {
            Ok(!bob
                .client
                .message(group, handover)
                .await?
                .reactions
                .is_empty())
        })
        .await?;
        app.wait_for_text("[data-testid=reaction]", |t| t.contains("👍 1"))
            .await?;

        // Bob edits his message: the app shows it, and the quote follows.
        bob.client
            .edit_message(group, handover, "Patient in bay 3 ready at 15:00")
            .await?;
        bob.client.react(group, reply.id, "🙏").await?;
        bob.sync().await?;
        app.wait_for_text("[data-testid=quote]", |t| t.contains("ready at 15:00"))
            .await?;
        app.wait_for_text("[data-testid=reaction]", |t| t.contains("🙏 1"))
            .await?;
        let edited = app.find("[data-testid=edited]").await?;
        app.click(&edited).await?;
        app.wait_for_text("[data-testid=versions]", |t| t.contains("ready at 14:00"))
            .await?;
        app.screenshot("10-reply-react-edit").await?;
        assert_accessible(&app, "message actions").await?;

        // The quote leads to the original.
        app.click(&app.find("[data-testid=quote]").await?).await?;
        wait_focused(&app, &handover.to_string(), "the original never took the focus").await?;

        // Alice edits her reply: the composer holds it; Enter saves.
        let mine = app
            .wait_for_text("[data-testid=message]", |t| t.contains("On it"))
            .await?;
        let edit = app
            .find(&format!("[data-id='{}'] [data-testid=edit]", reply.id))
            .await?;
        drop(mine);
        app.click(&edit).await?;
        app.wait_for_text("[data-testid=composer-banner]", |t| t.contains("Editing"))
            .await?;
        let composer = app.find("[data-testid=composer]").await?;
        app.send_keys(&composer, &format!("{CONTROL}a")).await?;
        app.send_keys(&composer, &format!("On it, 5 minutes{ENTER}"))
            .await?;
        bob.until("the edit", || async {
            Ok(bob.client.message(group, reply.id).await?.text.as_deref()
                == Some("On it, 5 minutes"))
        })
        .await?;

        // And deletes it, after saying yes.
        app.click(
            &app.find(&format!("[data-id='{}'] [data-testid=delete]", reply.id))
                .await?,
        )
        .await?;
        app.screenshot("11-delete-confirm").await?;
        app.click(&app.find("[data-testid=confirm-delete]").await?)
            .await?;
        app.wait_for_text("[data-testid=tombstone]", |t| t == "Deleted by Alice Smith")
            .await?;
        bob.until("the delete", || async {
            let m = bob.client.message(group, reply.id).await?;
            Ok(m.text.is_none() && m.deleted_by == Some(uid("alice@north-trust")))
        })
        .await?;
        app.screenshot("12-deleted").await?;
        assert_accessible(&app, "deleted message").await?;

        // Search: Bob starts a pharmacy chat whose first message is more
        // than a page back. Ctrl+K finds it by part of a word, in any
        // case; choosing it opens the conversation at that message.
        let pharmacy = bob.client.create_group("Pharmacy").await?;
        bob.client
            .add_members(pharmacy, vec![uid("alice@north-trust")])
            .await?;
        let stock = bob
            .client
            .send_text(pharmacy, "Co-Amoxiclav 625 mg back in stock")
            .await?;
        for n in 0..60 {
            bob.client
                .send_text(pharmacy, &format!("Stock check {n}"))
                .await?;
        }
        bob.sync().await?;
        app.wait_for_text("[data-testid=conversation]", |t| t.contains("Stock check 59"))
            .await?;
        let body = app.find("body").await?;
        app.send_keys(&body, &format!("{CONTROL}k")).await?;
        let search = app.find("[data-testid=search-input]").await?;
        app.send_keys(&search, "AMOX").await?;
        app.wait_for_text("[data-testid=search-summary]", |t| t.starts_with("1 message"))
            .await?;
        let found = app
            .wait_for_text("[data-testid=search-result]", |t| {
                t.contains("Pharmacy") && t.contains("Co-Amoxiclav 625 mg")
            })
            .await?;
        let marked = app
            .execute(
                "return [...document.querySelectorAll('[data-testid=search-result] mark')].map(m => m.textContent);",
                vec![],
            )
            .await?;
        anyhow::ensure!(marked == serde_json::json!(["Amox"]), "highlighted: {marked}");
        app.screenshot("13-search").await?;
        assert_accessible(&app, "search").await?;
        // The deleted reply is not found.
        app.clear(&search).await?;
        app.send_keys(&search, "minutes").await?;
        app.wait_for_text("[data-testid=search-summary]", |t| t == "No messages found.")
            .await?;
        app.clear(&search).await?;
        app.send_keys(&search, "amoxiclav").await?;
        app.wait_for_text("[data-testid=search-summary]", |t| t.starts_with("1 message"))
            .await?;
        drop(found);
        app.send_keys(&search, ENTER).await?;
        app.wait_gone("[data-testid=search-dialog]").await?;
        app.wait_for_text("[data-testid=chat-title]", |t| t == "Pharmacy")
            .await?;
        wait_focused(&app, &stock.to_string(), "the found message never took the focus").await?;
        app.screenshot("14-search-opened").await?;

        // Roles: Bob created "Bay 3 transfer" and is its admin; Alice, a
        // member, sees his badge and the policy, and may not change it.
        open_conversation(&app, "Bay 3 transfer").await?;
        app.click(&app.find("[data-testid=toggle-members]").await?)
            .await?;
        app.wait_for_text("[data-testid=my-role]", |t| {
            t.contains("You are a member")
        })
        .await?;
        app.wait_for_text("[data-testid=member]", |t| {
            t.contains("Bob Jones") && t.contains("Admin")
        })
        .await?;
        anyhow::ensure!(app.find_all("[data-testid=make-admin]").await?.is_empty());
        anyhow::ensure!(app.find_all("[data-testid=policy-select]").await?.is_empty());
        app.wait_for_text("[data-action=remove]", |t| t.contains("Admins"))
            .await?;
        // Bob makes her an admin: the panel follows.
        bob.client
            .set_role(group, uid("alice@north-trust"), cascade_core::Role::Admin)
            .await?;
        bob.sync().await?;
        app.wait_for_text("[data-testid=my-role]", |t| t.contains("You are an admin"))
            .await?;
        app.wait_for("[data-testid=admin-badge]", |n| n == 2).await?;
        // She renames it and lets everyone remove others.
        let name = app.find("[data-testid=rename-input]").await?;
        app.clear(&name).await?;
        app.send_keys(&name, "Bay 3 transfer (crew)").await?;
        app.click(&app.find("[data-testid=rename-button]").await?)
            .await?;
        app.wait_for_text("[data-testid=chat-title]", |t| t == "Bay 3 transfer (crew)")
            .await?;
        app.click(&app.find("#policy-remove option[value=member]").await?)
            .await?;
        bob.until("the new name and policy", || async {
            let name = bob.client.conversation(group).await?.name;
            let details = bob.client.room_details(group).await?;
            Ok(name == "Bay 3 transfer (crew)"
                && details.is_some_and(|d| d.policy.remove == cascade_core::Role::Member))
        })
        .await?;
        app.wait_for_text("[data-testid=notice]", |t| {
            t == "Alice Smith let every member remove others"
        })
        .await?;
        app.wait_for_text("[data-testid=notice]", |t| t == "Bob Jones made Alice Smith an admin")
            .await?;
        // Messages disappear after a day from now on: Bob's next one
        // shows when.
        app.click(&app.find("#timer-select option[value='86400']").await?)
            .await?;
        bob.until("the timer", || async {
            Ok(bob
                .client
                .room_details(group)
                .await?
                .is_some_and(|d| d.disappear_after == Some(86_400)))
        })
        .await?;
        app.wait_for_text("[data-testid=notice]", |t| {
            t == "Alice Smith set messages to disappear 1 day after they are sent"
        })
        .await?;
        bob.client.send_text(group, "Crew at the doors").await?;
        bob.sync().await?;
        let fleeting = app
            .wait_for_text("[data-testid=message]", |t| t.contains("Crew at the doors"))
            .await?;
        drop(fleeting);
        app.wait_for("[data-testid=expires]", |n| n == 1).await?;
        app.screenshot("15-roles").await?;
        assert_accessible(&app, "roles").await?;
        Ok(())
    }
    .await;
    if story.is_err() {
        let _ = app.screenshot("features-failure").await;
    }
    story?;
    app.quit().await?;
    Ok(())
}

async fn unlock_after_a_wrong_passphrase(app: &Driver, right: &str, shot: &str) -> Result<()> {
    let field = app.find("[data-testid=unlock-passphrase]").await?;
    app.send_keys(&field, "ward seven day shift").await?;
    app.click(&app.find("[data-testid=unlock-submit]").await?)
        .await?;
    app.wait_for_text("[data-testid=unlock-error]", |t| {
        t.contains("does not unlock this device's data")
    })
    .await?;
    app.screenshot(shot).await?;
    app.find("[data-testid=unlock-passphrase]").await?;
    app.clear(&field).await?;
    app.send_keys(&field, right).await?;
    app.click(&app.find("[data-testid=unlock-submit]").await?)
        .await
}

/// The window's whole document, as the WebView holds it.
async fn window_html(app: &Driver) -> Result<String> {
    Ok(app
        .execute("return document.documentElement.outerHTML;", vec![])
        .await?
        .as_str()
        .context("the document as text")?
        .to_owned())
}

/// Runs axe-core (the accessibility rules engine, from the front end's npm
/// packages) on the current screen and fails on any violation it reports:
/// missing labels, contrast, invalid roles, content outside landmarks.
async fn assert_accessible(app: &Driver, screen: &str) -> Result<()> {
    let axe = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../desktop-app/ui/node_modules/axe-core/axe.min.js");
    let source = std::fs::read_to_string(&axe)
        .with_context(|| format!("{} (npm install in desktop-app/ui)", axe.display()))?;
    // WebDriver scripts are not subject to the page's CSP; the app's own
    // CSP would refuse an injected <script>.
    app.execute(&format!("{source}\nreturn typeof axe;"), vec![])
        .await?;
    let violations = app
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then(r => done(r.violations.map(v => ({
                 id: v.id, impact: v.impact, help: v.help,
                 nodes: v.nodes.map(n => n.target.join(' ')) }))))
               .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));",
            vec![],
        )
        .await?;
    let violations = violations.as_array().cloned().unwrap_or_default();
    anyhow::ensure!(
        violations.is_empty(),
        "accessibility violations on the {screen} screen: {violations:#?}"
    );
    Ok(())
}

/// Clicks a conversation in the list and waits for its chat to show.
async fn open_conversation(app: &Driver, name: &str) -> Result<()> {
    let row = app
        .wait_for_text("[data-testid=conversation]", |t| t.contains(name))
        .await?;
    app.click(&row).await?;
    app.wait_for_text("[data-testid=chat-title]", |t| t == name)
        .await?;
    Ok(())
}

/// Waits until the message `id` has the keyboard focus; `what` says what
/// never happened.
async fn wait_focused(app: &Driver, id: &str, what: &str) -> Result<()> {
    poll_until(|| async {
        let focused = app
            .execute(
                "return document.activeElement?.dataset?.id ?? null;",
                vec![],
            )
            .await?;
        Ok(if focused.as_str() == Some(id) {
            Ok(())
        } else {
            Err(format!("{what}: {focused}"))
        })
    })
    .await
}

async fn wait_attr(
    app: &Driver,
    e: &cascade_tests::webdriver::Element,
    name: &str,
    want: &str,
) -> Result<()> {
    poll_until(|| async {
        Ok(if app.attr(e, name).await?.as_deref() == Some(want) {
            Ok(())
        } else {
            Err(format!("{name} never became {want}"))
        })
    })
    .await
}

/// The layout holds at the default 1280×800 window: the sidebar, the chat
/// and the composer are side by side and inside the window, nothing
/// overflows sideways.
async fn assert_layout(app: &Driver) -> Result<()> {
    let (w, h) = {
        let v = app
            .execute("return [window.innerWidth, window.innerHeight, document.documentElement.scrollWidth];", vec![])
            .await?;
        let width = v[0].as_f64().unwrap_or_default();
        let scroll = v[2].as_f64().unwrap_or_default();
        assert!(
            scroll <= width + 1.0,
            "no horizontal overflow ({scroll} > {width})"
        );
        (width, v[1].as_f64().unwrap_or_default())
    };
    let list = app
        .rect(&app.find("[data-testid=conversation-list]").await?)
        .await?;
    let log = app
        .rect(&app.find("[data-testid=message-list]").await?)
        .await?;
    let composer = app.rect(&app.find("[data-testid=composer]").await?).await?;
    assert!(
        list.0 + list.2 <= log.0 + 1.0,
        "the list is left of the chat"
    );
    assert!(
        log.1 + log.3 <= composer.1 + 1.0,
        "the composer is below the messages"
    );
    assert!(
        composer.1 + composer.3 <= h,
        "the composer is inside the window"
    );
    assert!(log.2 > w / 2.0, "the chat takes most of the width");
    Ok(())
}

/// A session D-Bus of the test's own, with `dbus-monitor` recording the
/// desktop notifications the app asks for.
struct NotificationBus {
    daemon: tokio::process::Child,
    monitor: tokio::process::Child,
    address: String,
    log: PathBuf,
}

impl NotificationBus {
    async fn start(dir: &std::path::Path) -> Result<NotificationBus> {
        use tokio::io::AsyncBufReadExt;
        // A bus with no services to activate: the standard session bus
        // would start accessibility and desktop-portal services on the
        // app's behalf, which fail on a bare display and can hold up its
        // start for the D-Bus timeout.
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                "<busconfig><type>session</type><listen>unix:dir={}</listen>\
                 <auth>EXTERNAL</auth><policy context=\"default\">\
                 <allow send_destination=\"*\" eavesdrop=\"true\"/>\
                 <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>",
                dir.display()
            ),
        )?;
        let mut daemon = tokio::process::Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting dbus-daemon")?;
        let mut lines = tokio::io::BufReader::new(daemon.stdout.take().context("piped")?).lines();
        let address = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .context("dbus-daemon gave no address")??
            .context("dbus-daemon exited")?;
        let log = dir.join("notifications.log");
        let monitor = tokio::process::Command::new("dbus-monitor")
            .args([
                "--address",
                &address,
                "interface='org.freedesktop.Notifications',member='Notify'",
            ])
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting dbus-monitor")?;
        Ok(NotificationBus {
            daemon,
            monitor,
            address,
            log,
        })
    }

    /// The (title, body) of each notification asked for so far: in a
    /// `Notify` call they are the 4th and 5th arguments.
    fn notifications(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.split("member=Notify")
            .skip(1)
            .filter_map(|call| {
                let strings: Vec<&str> = call
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("string \""))
                    .map(|s| s.trim_end_matches('"'))
                    .collect();
                Some((strings.get(2)?.to_string(), strings.get(3)?.to_string()))
            })
            .collect()
    }

    async fn wait_for(&self, n: usize) -> Result<Vec<(String, String)>> {
        poll_until(|| async {
            let got = self.notifications();
            Ok(if got.len() >= n {
                Ok(got)
            } else {
                Err(format!("{n} notifications expected, got {got:?}"))
            })
        })
        .await
    }

    async fn stop(mut self) {
        let _ = self.monitor.kill().await;
        let _ = self.daemon.kill().await;
    }
}

/// Puts another window in front of Alice's, as a user working in another
/// program would: a second, unenrolled instance of the app, focused with
/// xdotool once Alice's window is up. Returns it (killed on drop).
async fn focus_elsewhere(scratch: &std::path::Path) -> Result<tokio::process::Child> {
    let xdotool = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new("xdotool").args(args).output()?;
        anyhow::ensure!(out.status.success(), "xdotool {args:?} failed");
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let wait = |name: &'static str| {
        poll_until(move || async move {
            let found = xdotool(&["search", "--name", name])
                .ok()
                .and_then(|ids| ids.lines().next().map(str::to_owned));
            Ok(found.ok_or_else(|| format!("no window {name}")))
        })
    };
    wait("Alice Smith").await?;
    let other = scratch.join(format!("other-{}", rand::random::<u32>()));
    let child = tokio::process::Command::new(bin_dir().join("cascade-desktop"))
        .arg("--data-dir")
        .arg(&other)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    // The search can still list a window that is going away (the previous
    // decoy's) or not yet mapped: try each until one takes the focus.
    poll_until(|| async {
        let ids = xdotool(&["search", "--name", "^Cascade$"]).unwrap_or_default();
        let focused = ids
            .lines()
            .rev()
            .any(|id| xdotool(&["windowfocus", "--sync", id]).is_ok());
        Ok(if focused {
            Ok(())
        } else {
            Err("no window of the second instance took the focus".to_owned())
        })
    })
    .await?;
    Ok(child)
}

/// Desktop notifications, with the window in the background (no WebDriver
/// session focusing it): by default they say only "New message"; with the
/// user's setting on, who wrote and what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a display and D-Bus: run by `cargo xtask test`"]
async fn notifications_hide_content_until_the_user_allows_it() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay
        .user("alice@north-trust", "Alice Smith", "Charge Nurse")
        .await?;
    let bob = relay.user("bob@north-trust", "Bob Jones", "Porter").await?;
    let group = bob.create_group_with("Bay 3", &[&alice]).await?;
    let alice_dir = alice.close().await;
    let scratch = tempfile::tempdir()?;
    let bus = NotificationBus::start(scratch.path()).await?;

    // Each run's log, to say why if its window never comes.
    let log = |run: &str| scratch.path().join(format!("app-{run}.log"));
    let log_tail = |run: &str| {
        let text = std::fs::read_to_string(log(run)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    let app = |settings: Option<&str>| -> Result<tokio::process::Child> {
        if let Some(s) = settings {
            std::fs::write(alice_dir.join("desktop-settings.json"), s)?;
        }
        let run = if settings.is_some() {
            "second"
        } else {
            "first"
        };
        Ok(
            tokio::process::Command::new(bin_dir().join("cascade-desktop"))
                .arg("--data-dir")
                .arg(&alice_dir)
                .env("CASCADE_PASSPHRASE", PASSPHRASE)
                .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
                .env("CASCADE_LOG", "info")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(log(run))?)
                .kill_on_drop(true)
                .spawn()?,
        )
    };
    // Once the app has raised a notification for a first message (as a
    // live message, or in the summary of what it caught up on), it is
    // online: the next message is a live one.
    let warm_up = |n: usize| {
        let (bob, bus) = (&bob, &bus);
        async move {
            bob.client.send_text(group, "Shift starts").await?;
            bus.wait_for(n + 1).await
        }
    };

    // Default settings: nothing about the message.
    let mut first = app(None)?;
    let decoy = focus_elsewhere(scratch.path())
        .await
        .with_context(|| format!("the app's log:\n{}", log_tail("first")))?;
    warm_up(0).await?;
    bob.client
        .send_text(group, "Patient in bay 3 is deteriorating")
        .await?;
    let got = bus.wait_for(2).await?;
    assert_eq!(
        got.last().map(|(t, b)| (t.as_str(), b.as_str())),
        Some(("Cascade", "New message"))
    );
    let _ = first.kill().await;

    // The user allowed content: sender's certified name, conversation, text.
    let mut second = app(Some(r#"{"notifications":true,"notificationContent":true}"#))?;
    drop(decoy);
    let _decoy = focus_elsewhere(scratch.path())
        .await
        .with_context(|| format!("the app's log:\n{}", log_tail("second")))?;
    let before = warm_up(2).await?.len();
    bob.client.send_text(group, "Porter on the way").await?;
    let got = bus.wait_for(before + 1).await?;
    assert_eq!(
        got.last().map(|(t, b)| (t.as_str(), b.as_str())),
        Some(("Bob Jones · Bay 3", "Porter on the way"))
    );
    let _ = second.kill().await;
    bus.stop().await;
    Ok(())
}

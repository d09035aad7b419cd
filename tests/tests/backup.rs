//! Encrypted backups between real clients on a real relay: Alice of one
//! organisation talks with Carol of another (texts, a reply, an edit, a
//! reaction, a file, a message that disappears), backs her history up
//! under a recovery key, and restores it on a freshly enrolled laptop,
//! which then shows the same history and takes part in the conversation.
//! A wrong key, a changed file and another user's backup change nothing.

use anyhow::{ensure, Result};
use cascade_core::backup::{BackupError, RecoveryKey};
use cascade_core::{CoreError, KdfCost, Message};
use cascade_tests::*;

/// What a person sees of a history: who said what, edited or not, with
/// which reactions, and which file.
fn shown(history: &[Message]) -> Vec<String> {
    history
        .iter()
        .map(|m| {
            let reactions: Vec<String> = m
                .reactions
                .iter()
                .map(|r| format!("{}x{}", r.emoji, r.users.len()))
                .collect();
            format!(
                "{}: {}{}{} {}",
                m.sender,
                m.text.as_deref().unwrap_or("-"),
                if m.edited_at.is_some() {
                    " (edited)"
                } else {
                    ""
                },
                m.attachment
                    .as_ref()
                    .map(|a| format!(" [{}]", a.name))
                    .unwrap_or_default(),
                reactions.join(",")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_on_a_new_device_brings_the_history_back() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol Hughes", "Paramedic")
        .await?;
    let group = alice.create_group_with("Transfer", &[&carol]).await?;
    carol.sync().await?;

    let first = alice
        .client
        .send_text(group, "Patient ready at 14:00")
        .await?;
    carol.messages(group, 1).await?;
    let answer = carol
        .client
        .send_reply(group, "Crew on the way", first)
        .await?;
    alice.messages(group, 2).await?;
    alice.client.react(group, answer, "👍").await?;
    alice
        .client
        .edit_message(group, first, "Patient ready at 14:30")
        .await?;
    let dir = tempfile::tempdir()?;
    let letter = dir.path().join("letter.pdf");
    std::fs::write(&letter, b"%PDF-1.7 discharge letter")?;
    alice
        .client
        .send_file(group, &letter, None, "Discharge letter")
        .await?;
    alice.client.set_muted(group, true).await?;
    alice.sync().await?;
    carol.messages(group, 3).await?;
    // A message that disappears stays out of every backup.
    alice.client.set_timer(group, Some(3600)).await?;
    alice.sync().await?;
    carol
        .until("the timer", || async {
            Ok(carol
                .client
                .room_details(group)
                .await?
                .is_some_and(|d| d.disappear_after.is_some()))
        })
        .await?;
    carol
        .client
        .send_text(group, "Gone within the hour")
        .await?;
    carol.sync().await?;
    alice.messages(group, 4).await?;
    alice.client.mark_read(group).await?;
    alice.sync().await?;

    let key = RecoveryKey::generate();
    let file = dir.path().join("alice.cascade-backup");
    let summary = alice
        .client
        .backup(&file, &key, KdfCost::InsecureForTests)
        .await?;
    ensure!(summary.conversations == 1, "{summary:?}");
    let before = alice.client.history(group, None, 100).await?;
    let kept: Vec<Message> = before
        .iter()
        .filter(|m| m.expires_at.is_none())
        .cloned()
        .collect();
    ensure!(kept.len() + 1 == before.len(), "one message disappears");
    ensure!(summary.messages == kept.len(), "{summary:?}");
    ensure!(
        !dir_contains(dir.path(), b"Patient ready")?,
        "the file is sealed"
    );
    use std::os::unix::fs::PermissionsExt as _;
    ensure!(std::fs::metadata(&file)?.permissions().mode() & 0o077 == 0);

    // A new laptop, enrolled with a code of its own; it joins the
    // conversation by itself, and knows nothing from before.
    let laptop = relay.device("alice@north-trust", "laptop").await?;
    laptop.sync().await?;
    laptop.joined(group).await?;
    ensure!(laptop.client.history(group, None, 100).await?.is_empty());

    // A wrong key, a changed file, another user's backup: nothing changes.
    let wrong = RecoveryKey::generate();
    ensure!(matches!(
        laptop.client.restore(&file, &wrong).await,
        Err(CoreError::Backup(BackupError::WrongRecoveryKey))
    ));
    let mut changed = std::fs::read(&file)?;
    let at = changed.len() - 40;
    changed[at] ^= 0x20;
    let tampered = dir.path().join("tampered.cascade-backup");
    std::fs::write(&tampered, &changed)?;
    ensure!(matches!(
        laptop.client.restore(&tampered, &key).await,
        Err(CoreError::Backup(BackupError::Damaged(_)))
    ));
    ensure!(matches!(
        carol.client.restore(&file, &key).await,
        Err(CoreError::Backup(BackupError::OtherUser(u))) if u == alice.user()
    ));
    ensure!(laptop.client.history(group, None, 100).await?.is_empty());

    // The key as written down, typed in lower case with spaces.
    let typed = RecoveryKey::parse(&key.written().to_lowercase().replace('-', " "))?;
    let restored = laptop.client.restore(&file, &typed).await?;
    ensure!(restored.messages == kept.len(), "{restored:?}");
    let after = laptop.client.history(group, None, 100).await?;
    assert_eq!(shown(&after), shown(&kept), "the same history");
    let conversation = laptop.client.conversation(group).await?;
    ensure!(conversation.name == "Transfer" && conversation.muted);
    ensure!(conversation.unread == 0, "{conversation:?}");
    let versions = laptop.client.message_versions(group, first).await?;
    ensure!(versions.len() == 1, "the edit's earlier text: {versions:?}");
    // The file opens on the laptop: the reference and its key came along.
    let out = dir.path().join("saved.pdf");
    let file_message = after
        .iter()
        .find(|m| m.attachment.is_some())
        .expect("the file")
        .id;
    laptop
        .client
        .save_attachment(group, file_message, &out)
        .await?;
    ensure!(std::fs::read(&out)? == b"%PDF-1.7 discharge letter");
    // Restoring twice adds nothing.
    ensure!(laptop.client.restore(&file, &key).await?.messages == 0);
    ensure!(laptop.client.history(group, None, 100).await?.len() == kept.len());

    // The laptop takes part: Carol gets what it sends; it can edit a
    // message Alice sent from her first device.
    laptop
        .client
        .send_text(group, "Sent from my laptop")
        .await?;
    laptop.sync().await?;
    carol
        .until("the laptop's message", || async {
            Ok(carol.texts(group).await?.last().map(String::as_str) == Some("Sent from my laptop"))
        })
        .await?;
    laptop
        .client
        .edit_message(group, first, "Patient ready at 15:00")
        .await?;
    laptop.sync().await?;
    carol
        .until("the edit from the laptop", || async {
            Ok(carol.client.message(group, first).await?.text.as_deref()
                == Some("Patient ready at 15:00"))
        })
        .await?;
    Ok(())
}

/// Runs `cascade` on a device's data directory.
async fn cascade(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<std::process::Output> {
    Ok(tokio::process::Command::new(bin_dir().join("cascade"))
        .envs(CLI_ENV)
        .envs(env.iter().copied())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await?)
}

/// The same through the terminal client, as the user guide has it:
/// `cascade backup` prints a recovery key; `cascade restore` on the new
/// device with it brings the history back and joins the conversation; a
/// wrong key says so and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_backs_up_and_restores() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let group = alice.create_group_with("Ward 7", &[&bob]).await?;
    for text in ["Bed 4 obs due", "Bed 9 discharged"] {
        alice.client.send_text(group, text).await?;
    }
    alice.sync().await?;
    let alice_dir = alice.close().await;
    let laptop = relay.device("alice@north-trust", "laptop").await?;
    laptop.sync().await?;
    let laptop_dir = laptop.close().await;

    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("backup.bin");
    let file_arg = file.to_str().expect("utf-8");
    let made = cascade(&alice_dir, &["backup", file_arg], &[]).await?;
    ensure!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = String::from_utf8(made.stdout)?;
    ensure!(
        out.contains("Backed up 1 conversation and 2 messages"),
        "{out}"
    );
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("Recovery key: "))
        .expect("a recovery key")
        .to_owned();

    let wrong = cascade(
        &laptop_dir,
        &["restore", file_arg],
        &[("CASCADE_RECOVERY_KEY", "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF")],
    )
    .await?;
    ensure!(!wrong.status.success());
    let err = String::from_utf8(wrong.stderr)?;
    ensure!(
        err.contains("the recovery key does not open this backup"),
        "{err}"
    );

    let restored = cascade(
        &laptop_dir,
        &["restore", file_arg],
        &[("CASCADE_RECOVERY_KEY", key.as_str())],
    )
    .await?;
    ensure!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let out = String::from_utf8(restored.stdout)?;
    ensure!(out.starts_with("Restored 2 messages"), "{out}");
    let history = cascade(&laptop_dir, &["history", "Ward 7"], &[]).await?;
    let shown = String::from_utf8(history.stdout)?;
    ensure!(
        shown.contains("Bed 4 obs due") && shown.contains("Bed 9 discharged"),
        "{shown}"
    );
    Ok(())
}

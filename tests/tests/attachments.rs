//! Files between real clients on a real relay: Alice of one organisation
//! sends a file of several upload pieces to a conversation with Carol of
//! another; Carol's device shows it, saves it with progress and the same
//! bytes; deleted for everyone, it can no longer be saved and is gone from
//! the relay's disk. (Who may fetch
//! a blob at all is `blobs.rs`.)

use anyhow::{ensure, Result};
use cascade_core::client::attachments::PIECE;
use cascade_core::{CoreError, Event};
use cascade_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_crosses_organisations_with_progress_and_the_same_bytes() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let mut alice = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let mut carol = relay
        .user("carol@east-ambulance", "Carol Hughes", "Paramedic")
        .await?;
    let group = alice.create_group_with("Transfer", &[&carol]).await?;
    carol.sync().await?;

    // A rota of two and a half upload pieces.
    let dir = tempfile::tempdir()?;
    let rota: Vec<u8> = (0..(PIECE * 5 / 2)).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.path().join("rota.pdf");
    std::fs::write(&path, &rota)?;
    alice.forget_events();
    let id = alice
        .client
        .send_file(group, &path, None, "Rota for next week")
        .await?;
    let mut uploaded = Vec::new();
    alice
        .wait_event("the upload's end", |e| match e {
            Event::Transfer {
                done,
                total,
                upload: true,
                ..
            } => {
                uploaded.push(*done);
                done == total
            }
            _ => false,
        })
        .await?;
    ensure!(uploaded.len() >= 3, "progress in pieces: {uploaded:?}");
    alice.sync().await?;

    carol
        .until("the file's message", || async {
            Ok(carol.client.message(group, id).await.is_ok())
        })
        .await?;
    let m = carol.client.message(group, id).await?;
    ensure!(m.kind == "attachment", "{m:?}");
    let info = m.attachment.clone().expect("a file");
    ensure!(info.name == "rota.pdf" && info.media_type == "application/pdf");
    ensure!(info.size == rota.len() as u64);
    ensure!(m.text.as_deref() == Some("Rota for next week"));

    carol.forget_events();
    let out = dir.path().join("saved.pdf");
    let n = carol.client.save_attachment(group, id, &out).await?;
    ensure!(n == rota.len() as u64);
    ensure!(std::fs::read(&out)? == rota, "the same bytes");
    carol
        .wait_event(
            "download progress",
            |e| matches!(e, Event::Transfer { upload: false, done, total, .. } if done == total),
        )
        .await?;
    // Nothing of it is left in Carol's data directory but the message.
    ensure!(std::fs::read_dir(carol.dir.join("incoming"))?
        .next()
        .is_none());

    // Deleted for everyone: the file can no longer be saved, and its
    // sealed form is gone from the relay's disk.
    let blobs_on_disk = || -> Result<usize> {
        Ok(std::fs::read_dir(relay.data_dir().join("blobs"))?
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().contains('.'))
            .count())
    };
    ensure!(blobs_on_disk()? == 1);
    alice.client.delete_message(group, id).await?;
    alice.sync().await?;
    ensure!(blobs_on_disk()? == 0, "the relay deleted the file");
    carol
        .until("the delete", || async {
            Ok(carol.client.message(group, id).await?.deleted_by.is_some())
        })
        .await?;
    let again = carol
        .client
        .save_attachment(group, id, &dir.path().join("again.pdf"))
        .await;
    ensure!(matches!(again, Err(CoreError::Invalid(_))), "{again:?}");
    Ok(())
}

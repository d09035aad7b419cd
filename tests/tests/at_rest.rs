//! A device's data at rest, as a thief who copies its data directory finds
//! it: after a conversation, no file in either device's directory holds a
//! message's text, the conversation's name or who sent it, whether the
//! store is keyed by a passphrase (the command line's, Alice here) or by a
//! platform keystore's raw key (the desktop's and the mobile apps', Bob
//! here). The same scan finds all of it in a decrypted export of Bob's
//! store, so it would find it on disk. A wrong key or passphrase is a typed
//! error and changes nothing.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use cascade_core::{CoreError, KdfCost, StoreKey};
use cascade_tests::*;

const TEXT: &str = "Bed 9: Mr Pemberton-Whyte, warfarin held until INR is back";
const REPLY: &str = "Seen: INR sent to the lab at 09:40";
const GROUP: &str = "Ward 9 handover";

/// Bob's key, as a keystore would hold it.
const BOB_KEY: [u8; 32] = [0x5a; 32];

/// Every file under `dir`, at any depth, with its bytes.
fn files(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(files(&path)?);
        } else {
            let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            out.push((path, bytes));
        }
    }
    out.sort();
    Ok(out)
}

/// The names of the files under `dir` that hold any of `needles`, with the
/// needle found.
fn holding(dir: &Path, needles: &[&str]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for (path, bytes) in files(dir)? {
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{} holds {needle:?}", path.display()));
            }
        }
    }
    Ok(found)
}

fn names(dir: &Path) -> Result<Vec<String>> {
    Ok(files(dir)?
        .into_iter()
        .map(|(p, _)| {
            p.strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string()
        })
        .collect())
}

/// Bob's store decrypted with his key into a plain SQLite file in `out`
/// (SQLCipher's own export), the control for the scan.
fn decrypted_export(bob_dir: &Path, out: &Path) -> Result<()> {
    // From a copy, which the export can write to: Bob's files stay as
    // they are.
    let copy = tempfile::tempdir()?;
    copy_dir(bob_dir, copy.path())?;
    let conn = rusqlite::Connection::open(copy.path().join(cascade_core::client::DB_FILE))?;
    conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", hex::encode(BOB_KEY)))?;
    let plain = out.join("export.db");
    conn.execute(
        "ATTACH DATABASE ?1 AS plaintext KEY ''",
        [plain.to_str().context("utf-8 path")?],
    )?;
    conn.query_row("SELECT sqlcipher_export('plaintext')", [], |_| Ok(()))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_file_of_a_device_holds_what_it_was_sent() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let bob = relay
        .user_with_key(
            "bob@north-trust",
            "Bob Singh",
            "Junior Doctor",
            &StoreKey::key(BOB_KEY),
        )
        .await?;
    let group = alice.create_group_with(GROUP, &[&bob]).await?;
    alice.client.send_text(group, TEXT).await?;
    bob.until("Alice's message", || async {
        Ok(bob.texts(group).await? == [TEXT])
    })
    .await?;
    bob.client.send_text(group, REPLY).await?;
    alice
        .until("Bob's reply", || async {
            Ok(alice.texts(group).await? == [TEXT, REPLY])
        })
        .await?;

    // What was said, what about, and who said it.
    let secrets = [
        TEXT,
        REPLY,
        GROUP,
        "Alice Okafor",
        "alice@north-trust",
        "Bob Singh",
    ];
    // While the apps run: the write-ahead log and its index are there too.
    for dir in [&alice.dir, &bob.dir] {
        let here = names(dir)?;
        ensure!(
            ["cascade.db", "cascade.db-wal", "cascade.db-shm"]
                .iter()
                .all(|f| here.iter().any(|h| h == f)),
            "the scan sees the database, its WAL and its index: {here:?}"
        );
        let found = holding(dir, &secrets)?;
        ensure!(found.is_empty(), "while open: {found:#?}");
    }
    let (alice_dir, bob_dir) = (alice.close().await, bob.close().await);
    for dir in [&alice_dir, &bob_dir] {
        let found = holding(dir, &secrets)?;
        ensure!(found.is_empty(), "after closing: {found:#?}");
        println!("scanned {}: {:?}", dir.display(), names(dir)?);
    }
    ensure!(
        names(&alice_dir)?.contains(&"store-key.json".to_owned()),
        "Alice's passphrase has its KDF's salt beside the store"
    );
    ensure!(
        !names(&bob_dir)?.contains(&"store-key.json".to_owned()),
        "Bob's keystore key needs none"
    );

    // The control: the same scan finds them in Bob's store once it is
    // decrypted.
    let export = tempfile::tempdir()?;
    decrypted_export(&bob_dir, export.path())?;
    let found = holding(export.path(), &secrets)?;
    // All but Alice's display name, which Bob's store keeps only inside
    // her certificate in the MLS state (JSON-encoded bytes); the sender's
    // name the control does find is Bob's, who sent the reply.
    for s in [TEXT, REPLY, GROUP, "alice@north-trust", "Bob Singh"] {
        ensure!(
            found.iter().any(|f| f.ends_with(&format!("{s:?}"))),
            "the decrypted store holds {s:?}: {found:#?}"
        );
    }

    // The wrong key, or the wrong passphrase: a typed error, and not a byte
    // changed.
    let (alice_before, bob_before) = (files(&alice_dir)?, files(&bob_dir)?);
    let wrong = Peer::open_with(bob_dir.clone(), None, &StoreKey::key([0x5b; 32])).await;
    ensure!(
        matches!(
            wrong.err().and_then(|e| e.downcast::<CoreError>().ok()),
            Some(CoreError::WrongKey)
        ),
        "a wrong key is WrongKey"
    );
    let wrong = Peer::open_with(
        alice_dir.clone(),
        None,
        &StoreKey::passphrase_with("correct horse battery stable", KdfCost::InsecureForTests),
    )
    .await;
    ensure!(
        matches!(
            wrong.err().and_then(|e| e.downcast::<CoreError>().ok()),
            Some(CoreError::WrongKey)
        ),
        "a wrong passphrase is WrongKey"
    );
    // The command line says so and fails, and does not take a passphrase
    // for a store a keystore's key unlocks.
    let cli = |dir: &Path, passphrase: &str| {
        std::process::Command::new(bin_dir().join("cascade"))
            .envs(CLI_ENV)
            .env("CASCADE_PASSPHRASE", passphrase)
            .arg("--data-dir")
            .arg(dir)
            .arg("whoami")
            .output()
    };
    let out = cli(&alice_dir, "correct horse battery stable")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && stderr.contains("does not unlock this device's data"),
        "{:?}: {stderr}",
        out.status
    );
    let out = cli(&bob_dir, PASSPHRASE)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && stderr.contains("platform keystore"),
        "{:?}: {stderr}",
        out.status
    );
    ensure!(files(&alice_dir)? == alice_before, "Alice's files changed");
    ensure!(files(&bob_dir)? == bob_before, "Bob's files changed");

    // The right ones open them, with everything there.
    let out = cli(&alice_dir, PASSPHRASE)?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Alice Okafor"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bob = Peer::open_with(bob_dir, None, &StoreKey::key(BOB_KEY)).await?;
    ensure!(bob.texts(group).await? == [TEXT, REPLY]);
    bob.close().await;
    Ok(())
}

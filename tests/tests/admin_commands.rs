//! The `cascade admin` commands that publish signed lists, run as separate
//! processes of the real binary against a real relay, the way an admin
//! runs them over weeks: what they refuse, and what the relay ends up
//! serving to devices.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use cascade_admin::CaDir;
use cascade_core::identity::{verify_revocations, verify_trust_list, TrustAnchor};
use cascade_protocol::{OrgId, Request, Response, SignedDocument};
use cascade_tests::raw::{RawConn, RawDevice};
use cascade_tests::{bin_dir, Relay};

/// What one run of `cascade` did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The JSON it printed, if it succeeded.
    fn json(&self) -> Result<serde_json::Value> {
        ensure!(
            self.code == Some(0),
            "cascade failed ({:?}): {}",
            self.code,
            self.stderr
        );
        serde_json::from_str(&self.stdout).with_context(|| format!("not JSON: {}", self.stdout))
    }
}

/// An organisation's admin: a CA directory on their machine, and the
/// relay's address and admin token.
struct Admin<'a> {
    relay: &'a Relay,
    home: tempfile::TempDir,
}

impl<'a> Admin<'a> {
    /// `cascade admin org init` and `create-org` for `org`.
    async fn new(relay: &'a Relay, org: &str) -> Result<Admin<'a>> {
        let admin = Admin {
            relay,
            home: tempfile::tempdir()?,
        };
        let dir = admin.ca_dir(org);
        let dir = dir.to_str().expect("utf-8");
        admin
            .cascade(&[
                "admin", "org", "init", "--org", org, "--name", org, "--dir", dir,
            ])
            .await?
            .json()?;
        admin
            .cascade(&["admin", "create-org", org, "--name", org, "--ca-dir", dir])
            .await?
            .json()?;
        Ok(admin)
    }

    fn ca_dir(&self, org: &str) -> PathBuf {
        self.home.path().join(org)
    }

    /// Runs `cascade --json <args>`, with the relay and token options after
    /// `admin`.
    async fn cascade(&self, args: &[&str]) -> Result<Run> {
        let token_file = self.relay.data_dir().join("admin-token");
        let mut all: Vec<&str> = vec!["--json"];
        for a in args {
            all.push(a);
            if *a == "admin" && args.get(1) != Some(&"org") {
                all.extend([
                    "--server",
                    &self.relay.url,
                    "--token-file",
                    token_file.to_str().expect("utf-8"),
                ]);
            }
        }
        let out = tokio::process::Command::new(bin_dir().join("cascade"))
            .args(&all)
            .env_remove("CASCADE_SERVER")
            .env_remove("CASCADE_ADMIN_TOKEN")
            .env_remove("CASCADE_ADMIN_TOKEN_FILE")
            .output()
            .await
            .context("running cascade")?;
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        ensure!(
            !run.stderr.contains("panicked") && !run.stdout.contains("panicked"),
            "cascade {args:?} panicked: {}",
            run.stderr
        );
        Ok(run)
    }

    /// The organisation's CA, as devices hold it.
    fn anchor(&self, org: &str) -> Result<TrustAnchor> {
        let pem = std::fs::read_to_string(self.ca_dir(org).join("ca-cert.pem"))?;
        Ok(TrustAnchor::from_der(&cascade_core::identity::pem_to_der(
            &pem,
        )?)?)
    }

    /// Enrols a raw device for `user` (created if needed), as this
    /// organisation's admins.
    async fn enrol(&self, user: &str) -> Result<RawDevice> {
        let org = cascade_protocol::UserId::new(user)?.org();
        let ca = std::sync::Arc::new(CaDir::new(self.ca_dir(org.as_str())).ca()?);
        let signed = cascade_admin::AdminClient::without_token(&self.relay.url, None)?.as_org(ca);
        RawDevice::enrol_by(self.relay, &signed, user).await
    }

    fn fingerprint(&self, org: &str) -> Result<String> {
        Ok(self.anchor(org)?.fingerprint())
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// What a device of `org` fetches from the relay: the signed trust list
/// and revocation list.
async fn published(
    admin: &Admin<'_>,
    org: &str,
) -> Result<(Option<SignedDocument>, Option<SignedDocument>)> {
    let relay = admin.relay;
    let reader = admin.enrol(&format!("reader@{org}")).await?;
    let mut conn = RawConn::authenticated(relay, &reader).await?;
    let org_id = OrgId::new(org)?;
    let trust = match conn
        .call(Request::GetTrustList {
            org_id: org_id.clone(),
        })
        .await?
    {
        Ok(Response::TrustList { document }) => document,
        other => anyhow::bail!("unexpected answer {other:?}"),
    };
    let revocations = match conn.call(Request::GetRevocations { org_id }).await? {
        Ok(Response::Revocations { document }) => document,
        other => anyhow::bail!("unexpected answer {other:?}"),
    };
    Ok((trust, revocations))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_add_with_a_wrong_fingerprint_pins_and_publishes_nothing() -> Result<()> {
    let relay = Relay::start().await?;
    let north = Admin::new(&relay, "north-trust").await?;
    let east = Admin::new(&relay, "east-ambulance").await?;
    let ca = north.ca_dir("north-trust");
    let east_cert = east.ca_dir("east-ambulance").join("ca-cert.pem");

    // The file is east's, but the fingerprint read out was another one
    // (here: north's own).
    let wrong = north.fingerprint("north-trust")?;
    let run = north
        .cascade(&[
            "admin",
            "trust",
            "add",
            "--ca-dir",
            path(&ca),
            "--cert",
            path(&east_cert),
            "--fingerprint",
            &wrong,
        ])
        .await?;
    assert_eq!(run.code, Some(1), "refused: {}", run.stdout);
    let error: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(
        error["error"],
        format!(
            "the certificate's fingerprint is {}, not the one confirmed out of band",
            east.fingerprint("east-ambulance")?
        )
    );
    // Nothing pinned, no serial used, nothing published.
    assert!(!ca.join("trusted").exists() || std::fs::read_dir(ca.join("trusted"))?.count() == 0);
    assert!(!ca.join("trust-serial").exists());
    let list = north
        .cascade(&["admin", "trust", "list", "--ca-dir", path(&ca)])
        .await?
        .json()?;
    assert_eq!(list, serde_json::json!([]));
    let (trust, _) = published(&north, "north-trust").await?;
    assert!(trust.is_none(), "no trust list on the relay");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serials_keep_increasing_across_runs() -> Result<()> {
    let relay = Relay::start().await?;
    let north = Admin::new(&relay, "north-trust").await?;
    let east = Admin::new(&relay, "east-ambulance").await?;
    let ca = north.ca_dir("north-trust");
    let east_cert = east.ca_dir("east-ambulance").join("ca-cert.pem");
    let east_fp = east.fingerprint("east-ambulance")?;
    let add = [
        "admin",
        "trust",
        "add",
        "--ca-dir",
        path(&ca),
        "--cert",
        path(&east_cert),
        "--fingerprint",
        &east_fp,
    ];
    let remove = [
        "admin",
        "trust",
        "remove",
        "--ca-dir",
        path(&ca),
        "east-ambulance",
    ];

    // Each a separate run of the command, as an admin runs them.
    assert_eq!(north.cascade(&add).await?.json()?["serial"], 1);
    assert_eq!(north.cascade(&remove).await?.json()?["serial"], 2);
    assert_eq!(north.cascade(&add).await?.json()?["serial"], 3);
    // Removing what is not pinned is refused without using a serial.
    north.cascade(&remove).await?.json()?;
    let not_pinned = north.cascade(&remove).await?;
    assert_eq!(not_pinned.code, Some(1));
    assert!(not_pinned.stdout.contains("east-ambulance is not pinned"));
    assert_eq!(north.cascade(&add).await?.json()?["serial"], 5);

    let (trust, _) = published(&north, "north-trust").await?;
    let (list, anchors) = verify_trust_list(
        &trust.context("a trust list")?,
        &north.anchor("north-trust")?,
    )?;
    assert_eq!(list.serial, 5);
    assert_eq!(anchors, vec![east.anchor("east-ambulance")?]);

    // Revocation lists likewise.
    let a = north.enrol("a@north-trust").await?.device_id;
    let b = north.enrol("b@north-trust").await?.device_id;
    for (device, serial) in [(a, 1), (b, 2)] {
        let run = north
            .cascade(&[
                "admin",
                "revoke",
                "--ca-dir",
                path(&ca),
                "--device",
                &device.to_string(),
            ])
            .await?
            .json()?;
        assert_eq!(run["serial"], serial);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_revocation_keeps_the_earlier_ones_in_the_published_list() -> Result<()> {
    let relay = Relay::start().await?;
    let north = Admin::new(&relay, "north-trust").await?;
    let ca = north.ca_dir("north-trust");
    let lost = north.enrol("alice@north-trust").await?.device_id;
    let stolen = north.enrol("bob@north-trust").await?.device_id;
    let leaver = north.enrol("carol@north-trust").await?.device_id;

    for device in [lost, stolen] {
        north
            .cascade(&[
                "admin",
                "revoke",
                "--ca-dir",
                path(&ca),
                "--device",
                &device.to_string(),
            ])
            .await?
            .json()?;
    }
    let (_, revocations) = published(&north, "north-trust").await?;
    let list = verify_revocations(
        &revocations.context("a revocation list")?,
        &north.anchor("north-trust")?,
    )?;
    assert_eq!(list.serial, 2);
    assert_eq!(
        list.devices,
        vec![lost, stolen],
        "the first is still revoked"
    );

    // A user who leaves: every device of theirs, and the others stay.
    let run = north
        .cascade(&[
            "admin",
            "revoke",
            "--ca-dir",
            path(&ca),
            "--user",
            "carol@north-trust",
        ])
        .await?
        .json()?;
    assert_eq!(run["revoked"], serde_json::json!([leaver.to_string()]));
    let (_, revocations) = published(&north, "north-trust").await?;
    let list = verify_revocations(
        &revocations.context("a revocation list")?,
        &north.anchor("north-trust")?,
    )?;
    assert_eq!(list.serial, 3);
    assert_eq!(list.devices, vec![lost, stolen, leaver]);

    // An unknown device is refused by the relay and nothing is published.
    let unknown = north
        .cascade(&[
            "admin",
            "revoke",
            "--ca-dir",
            path(&ca),
            "--device",
            &cascade_core::DeviceId([0xab; 16]).to_string(),
        ])
        .await?;
    assert_eq!(unknown.code, Some(1));
    assert!(unknown.stdout.contains("not_found"), "{}", unknown.stdout);
    let (_, revocations) = published(&north, "north-trust").await?;
    let list = verify_revocations(
        &revocations.context("a revocation list")?,
        &north.anchor("north-trust")?,
    )?;
    assert_eq!(list.devices, vec![lost, stolen, leaver]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_ca_directory_stops_the_command_before_anything_is_published() -> Result<()> {
    let relay = Relay::start().await?;
    let north = Admin::new(&relay, "north-trust").await?;
    let ca = north.ca_dir("north-trust");
    let alice = north.enrol("alice@north-trust").await?;
    let device = alice.device_id;
    let revoke = |d: String| {
        let ca = ca.clone();
        let north = &north;
        async move {
            north
                .cascade(&["admin", "revoke", "--ca-dir", path(&ca), "--device", &d])
                .await
        }
    };
    std::fs::write(ca.join("revocation-serial"), "")?;
    let run = revoke(device.to_string()).await?;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout
            .contains("revocation-serial does not hold a serial number"),
        "{}",
        run.stdout
    );
    std::fs::write(ca.join("revocation-serial"), "4\n")?;
    std::fs::write(ca.join("revoked.txt"), "garbage\n")?;
    let run = revoke(device.to_string()).await?;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains("revoked.txt, line 1: not a device id"),
        "{}",
        run.stdout
    );
    // Neither run reached the relay: the device still connects, and no
    // list was published.
    RawConn::authenticated(&relay, &alice).await?;
    let (_, revocations) = published(&north, "north-trust").await?;
    assert!(revocations.is_none());
    // Repaired, it carries on from the serial in the file.
    std::fs::write(ca.join("revoked.txt"), "")?;
    assert_eq!(revoke(device.to_string()).await?.json()?["serial"], 5);
    Ok(())
}

/// `create-org` of an organisation that has its CA already changes
/// nothing, even with another CA of the same organisation: the operator
/// cannot swap an organisation's CA (only an older relay's organisation
/// without one gets a CA this way, `admin/tests/register.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_org_again_cannot_replace_an_organisations_ca() -> Result<()> {
    let relay = Relay::start().await?;
    let north = Admin::new(&relay, "north-trust").await?;
    let before = north.fingerprint("north-trust")?;
    let other_dir = north.home.path().join("other");
    let other = path(&other_dir);
    north
        .cascade(&[
            "admin",
            "org",
            "init",
            "--org",
            "north-trust",
            "--name",
            "North",
            "--dir",
            other,
        ])
        .await?
        .json()?;
    for dir in [path(&north.ca_dir("north-trust")), other] {
        let run = north
            .cascade(&[
                "admin",
                "create-org",
                "north-trust",
                "--name",
                "North",
                "--ca-dir",
                dir,
            ])
            .await?;
        assert_eq!(run.code, Some(1), "refused: {}", run.stdout);
        let error: serde_json::Value = serde_json::from_str(&run.stdout)?;
        assert_eq!(
            error["error"],
            "the organisation exists already, with its CA (conflict)"
        );
    }
    let info: serde_json::Value = reqwest::get(format!("{}/v1/orgs/north-trust", relay.url))
        .await?
        .json()
        .await?;
    let pem = info["ca_certificate"].as_str().expect("a CA");
    let served = TrustAnchor::from_der(&cascade_core::identity::pem_to_der(pem)?)?;
    assert_eq!(served.fingerprint(), before);
    Ok(())
}

/// An appointed admin (admin guide §3.5) works from their own directory:
/// they cut a lost device off at the relay at once, but what devices
/// believe (the signed revocation list, a wipe order, the policy, an
/// appointment) still takes the CA's directory, which says so without
/// changing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointed_admin_cuts_a_device_off_and_the_ca_publishes_the_list() -> Result<()> {
    let relay = Relay::start().await?;
    let north = Admin::new(&relay, "north-trust").await?;
    let ca = north.ca_dir("north-trust");
    let dana = north.home.path().join("dana");
    let made = north
        .cascade(&[
            "admin",
            "key",
            "init",
            "--dir",
            path(&dana),
            "--ca-cert",
            path(&ca.join("ca-cert.pem")),
            "--id",
            "dana",
        ])
        .await?
        .json()?;
    let key = made["key"].as_str().context("key")?.to_owned();
    north
        .cascade(&[
            "admin",
            "appoint",
            "--ca-dir",
            path(&ca),
            "--id",
            "dana",
            "--name",
            "Dana Price",
            "--key",
            &key,
            "--days",
            "30",
        ])
        .await?
        .json()?;
    let listed = north
        .cascade(&["admin", "admins", "--ca-dir", path(&dana)])
        .await?
        .json()?;
    assert_eq!(listed[0]["id"], "dana");
    assert_eq!(listed[0]["key"], key);

    // Dana cuts Alice's lost phone off: the relay refuses it now, and no
    // list is published yet.
    let lost = north.enrol("alice@north-trust").await?;
    let run = north
        .cascade(&[
            "admin",
            "revoke",
            "--ca-dir",
            path(&dana),
            "--device",
            &lost.device_id.to_string(),
        ])
        .await?
        .json()?;
    assert_eq!(run["serial"], serde_json::Value::Null);
    assert!(
        RawConn::authenticated(&relay, &lost).await.is_err(),
        "the relay refuses the device"
    );
    let (_, revocations) = published(&north, "north-trust").await?;
    assert!(revocations.is_none(), "only the CA publishes the list");

    // What takes the CA key, her directory refuses, changing nothing.
    let device = lost.device_id.to_string();
    for args in [
        vec![
            "admin",
            "wipe",
            "--ca-dir",
            path(&dana),
            "--device",
            &device,
        ],
        vec![
            "admin",
            "policy",
            "--ca-dir",
            path(&dana),
            "--idle-lock-minutes",
            "3",
        ],
        vec!["admin", "issue", "--ca-dir", path(&dana)],
        vec![
            "admin",
            "appoint",
            "--ca-dir",
            path(&dana),
            "--id",
            "eve",
            "--name",
            "Eve",
            "--key",
            &key,
        ],
        vec!["admin", "dismiss", "--ca-dir", path(&dana), "--id", "dana"],
    ] {
        let run = north.cascade(&args).await?;
        assert_eq!(run.code, Some(1), "{args:?}");
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(
            said.contains("holds an admin's key, not the CA key"),
            "{args:?}: {said}"
        );
    }
    assert!(!dana.join("policy.json").exists());
    assert!(!dana.join("admins.json").exists());

    // The CA's directory publishes the list, and Dana is still appointed.
    let run = north
        .cascade(&[
            "admin",
            "revoke",
            "--ca-dir",
            path(&ca),
            "--device",
            &device,
        ])
        .await?
        .json()?;
    assert_eq!(run["serial"], 1);
    let (_, revocations) = published(&north, "north-trust").await?;
    let list = verify_revocations(
        &revocations.context("a revocation list")?,
        &north.anchor("north-trust")?,
    )?;
    assert_eq!(list.devices, vec![lost.device_id]);
    north
        .cascade(&["admin", "users", "--ca-dir", path(&dana)])
        .await?
        .json()?;
    Ok(())
}

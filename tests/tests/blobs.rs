//! The relay's attachment store against a real relay: a sealed file posted
//! by a member of one organisation, uploaded over HTTP in two pieces (the
//! second resuming where the first broke off), fetched and opened by a
//! member of another organisation (whole, and from an offset), kept across
//! a restart; and everything a client can get wrong or try: no ticket, a
//! wrong offset, a digest that does not match, a file over the limit, an
//! organisation past its quota, and a device outside the group.

use anyhow::{ensure, Context, Result};
use cascade_core::attachments;
use cascade_protocol::*;
use cascade_tests::raw::{mls, RawConn, RawDevice};
use cascade_tests::*;
use sha2::Digest as _;

fn b(v: Vec<u8>) -> Bytes {
    Bytes::from(v)
}

/// A group of `owner` with `others` added (synthetic MLS: the relay sees
/// only framing).
async fn group_with(owner: &mut RawConn, others: &[&RawDevice]) -> Result<GroupId> {
    let g = GroupId::random();
    ensure!(
        owner
            .call(Request::CreateGroup {
                group_id: g,
                group_info: b(mls::group_info()),
            })
            .await?
            == Ok(Response::GroupCreated)
    );
    if others.is_empty() {
        return Ok(g);
    }
    let r = owner
        .call(Request::Commit(CommitBundle {
            group_id: g,
            epoch: 0,
            commit: b(mls::commit(&g, 0)),
            welcome: Some(b(vec![0, 1, 0, 3, 1, 2, 3])),
            group_info: b(mls::group_info()),
            added: others.iter().map(|d| d.device_id).collect(),
            removed: vec![],
        }))
        .await?;
    ensure!(matches!(r, Ok(Response::CommitAccepted { .. })), "{r:?}");
    Ok(g)
}

/// The ticket in a `BlobTicket` answer, as the `Authorization` header.
fn bearer(answer: &Result<Response, ProtocolError>) -> Result<(String, u64)> {
    match answer {
        Ok(Response::BlobTicket { token, offset, .. }) => {
            Ok((format!("Bearer {}", hex::encode(token)), *offset))
        }
        other => anyhow::bail!("expected a ticket, got {other:?}"),
    }
}

async fn put(
    http: &reqwest::Client,
    relay: &Relay,
    digest: &[u8; 32],
    auth: &str,
    offset: u64,
    body: Vec<u8>,
) -> Result<(u16, serde_json::Value)> {
    let r = http
        .put(format!(
            "{}/v1/blobs/{}?offset={offset}",
            relay.url,
            hex::encode(digest)
        ))
        .header("Authorization", auth)
        .body(body)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_crosses_organisations_resumes_and_survives_a_restart() -> Result<()> {
    let mut relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = RawDevice::enrol_certified(&relay, "alice@north-trust").await?;
    let bob = RawDevice::enrol_certified(&relay, "bob@east-ambulance").await?;
    let mallory = RawDevice::enrol_certified(&relay, "mallory@north-trust").await?;
    let mut a = RawConn::authenticated(&relay, &alice).await?;
    let g = group_with(&mut a, &[&bob]).await?;

    // A 300 KiB chart photo, sealed on Alice's device.
    let chart: Vec<u8> = (0..300 * 1024).map(|i| (i % 253) as u8).collect();
    let mut sealed = Vec::new();
    let s = attachments::seal(chart.as_slice(), &mut sealed, |_| {})?;
    let (digest, size) = (s.digest, s.size);

    let http = reqwest::Client::new();
    let post = Request::PostBlob {
        group_id: g,
        digest: b(digest.to_vec()),
        size,
    };
    let (auth, offset) = bearer(&a.call(post.clone()).await?)?;
    ensure!(offset == 0);
    // The first piece arrives; the connection breaks.
    let half = sealed.len() / 2;
    let (status, answer) = put(&http, &relay, &digest, &auth, 0, sealed[..half].to_vec()).await?;
    ensure!(
        status == 200 && answer["offset"] == half && answer["complete"] == false,
        "{answer}"
    );
    // Nothing for Bob yet.
    let mut bconn = RawConn::authenticated(&relay, &bob).await?;
    let get = Request::GetBlob {
        digest: b(digest.to_vec()),
    };
    ensure!(matches!(
        bconn.call(get.clone()).await?,
        Err(ProtocolError::Unavailable { .. })
    ));
    // Alice's device asks again where to go on, and finishes.
    let (auth, offset) = bearer(&a.call(post.clone()).await?)?;
    ensure!(offset == half as u64, "resumes at {offset}");
    let (status, answer) = put(&http, &relay, &digest, &auth, 0, sealed[half..].to_vec()).await?;
    ensure!(
        status == 409 && answer["code"] == "wrong_offset",
        "{status} {answer}"
    );
    let (status, answer) = put(
        &http,
        &relay,
        &digest,
        &auth,
        half as u64,
        sealed[half..].to_vec(),
    )
    .await?;
    ensure!(status == 200 && answer["complete"] == true, "{answer}");
    let stored = relay.data_dir().join("blobs").join(hex::encode(digest));
    ensure!(
        std::fs::read(&stored)? == sealed,
        "the file on disk is the ciphertext"
    );

    // Bob, of the other organisation, fetches and opens it.
    let (bauth, _) = bearer(&bconn.call(get.clone()).await?)?;
    let url = format!("{}/v1/blobs/{}", relay.url, hex::encode(digest));
    let fetched = http
        .get(&url)
        .header("Authorization", &bauth)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let mut opened = Vec::new();
    attachments::open(fetched.as_ref(), &mut opened, &s.key, &s.digest, |_| {})?;
    ensure!(opened == chart);
    // A download broken off resumes from an offset.
    let tail = http
        .get(&url)
        .header("Authorization", &bauth)
        .header("Range", "bytes=1000-")
        .send()
        .await?;
    ensure!(tail.status().as_u16() == 206);
    ensure!(tail.bytes().await?.as_ref() == &sealed[1000..]);

    // No ticket, or Alice's upload ticket used to download: refused.
    for auth in [None, Some(auth.as_str())] {
        let mut r = http.get(&url);
        if let Some(auth) = auth {
            r = r.header("Authorization", auth);
        }
        let r = r.send().await?;
        ensure!(r.status().as_u16() == 401, "{}", r.status());
    }
    // Mallory, of Alice's organisation but not in the group, can neither
    // fetch it nor post to the group.
    let mut m = RawConn::authenticated(&relay, &mallory).await?;
    ensure!(m.call(get.clone()).await? == Err(ProtocolError::NotMember));
    ensure!(m.call(post.clone()).await? == Err(ProtocolError::NotMember));

    // After a restart the blob is still there, and still only for members.
    relay.restart().await?;
    let mut bconn = RawConn::authenticated(&relay, &bob).await?;
    let (bauth, offset) = bearer(&bconn.call(get).await?)?;
    ensure!(offset == size);
    let again = http
        .get(format!("{}/v1/blobs/{}", relay.url, hex::encode(digest)))
        .header("Authorization", &bauth)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    ensure!(again.as_ref() == sealed.as_slice());

    // Only Alice (who posted it) may delete it; then it is gone for all.
    let delete = Request::DeleteBlob {
        digest: b(digest.to_vec()),
    };
    ensure!(bconn.call(delete.clone()).await? == Err(ProtocolError::NotMember));
    let mut a = RawConn::authenticated(&relay, &alice).await?;
    ensure!(a.call(delete.clone()).await? == Ok(Response::BlobDeleted));
    ensure!(!stored.exists(), "gone from the relay's disk");
    ensure!(
        bconn
            .call(Request::GetBlob {
                digest: b(digest.to_vec())
            })
            .await?
            == Err(ProtocolError::NotMember)
    );
    ensure!(
        a.call(delete).await? == Ok(Response::BlobDeleted),
        "again: done"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_quotas_and_a_wrong_digest_are_typed_refusals() -> Result<()> {
    let relay = Relay::start_with(&["--max-blob-mib", "1", "--blob-quota-mib", "2"]).await?;
    relay.org("north-trust").await?;
    let alice = RawDevice::enrol_certified(&relay, "alice@north-trust").await?;
    let mut a = RawConn::authenticated(&relay, &alice).await?;
    let g = group_with(&mut a, &[]).await?;
    let mib = 1024 * 1024;
    let post = |digest: [u8; 32], size: u64| Request::PostBlob {
        group_id: g,
        digest: b(digest.to_vec()),
        size,
    };
    ensure!(a.call(post([1; 32], mib + 1)).await? == Err(ProtocolError::TooLarge { limit: mib }));
    ensure!(matches!(
        a.call(Request::PostBlob {
            group_id: g,
            digest: b(vec![1; 5]),
            size: 5
        })
        .await?,
        Err(ProtocolError::Malformed { .. })
    ));
    // An upload whose content is not what was posted is thrown away; one
    // longer than posted is refused.
    let http = reqwest::Client::new();
    let content = b"not what was posted".to_vec();
    let digest: [u8; 32] = sha2::Sha256::digest(b"something else").into();
    let (auth, _) = bearer(&a.call(post(digest, content.len() as u64)).await?)?;
    let (status, answer) = put(&http, &relay, &digest, &auth, 0, content.clone()).await?;
    ensure!(
        status == 400 && answer["code"] == "bad_request",
        "{status} {answer}"
    );
    let (auth, offset) = bearer(&a.call(post(digest, content.len() as u64)).await?)?;
    ensure!(offset == 0, "thrown away");
    let mut longer = content.clone();
    longer.push(b'!');
    let (status, answer) = put(&http, &relay, &digest, &auth, 0, longer).await?;
    ensure!(status == 413, "{status} {answer}");
    // With that posted, one MiB more fits the organisation's 2 MiB; a
    // second does not.
    ensure!(a.call(post([1; 32], mib)).await?.is_ok());
    ensure!(
        a.call(post([2; 32], mib)).await? == Err(ProtocolError::QuotaExceeded { limit: 2 * mib })
    );
    // The connection carries on.
    ensure!(a.call(Request::Ping).await? == Ok(Response::Pong));
    let _ = relay
        .data_dir()
        .join("blobs")
        .read_dir()
        .context("the blob directory")?;
    Ok(())
}

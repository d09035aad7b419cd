//! Organisations that do not trust each other cannot reach each other's
//! staff through the relay: no KeyPackage claims, no directory, no adding
//! to groups, unless each organisation's signed trust list pins the other's
//! CA (as their clients require). Only certified devices take part in
//! groups. Issue 11: "one organisation must never be able to hurt
//! another's users".

mod common;

use cascade_protocol::frames::{Request, Response};
use cascade_protocol::{GroupId, OrgId, ProtocolError, RateScope, UserId};
use common::*;

fn user(id: &str) -> UserId {
    UserId::new(id).expect("valid")
}

async fn upload(client: &mut Client, n: u8) {
    let answer = client
        .request(Request::UploadKeyPackages {
            key_packages: (0..n).map(key_package).collect(),
            last_resort: None,
        })
        .await;
    assert!(
        matches!(answer, Ok(Response::KeyPackagesStored { .. })),
        "{answer:?}"
    );
}

fn claimed(answer: Result<Response, ProtocolError>) -> usize {
    match answer {
        Ok(Response::KeyPackages { devices }) => devices.len(),
        other => panic!("not KeyPackages: {other:?}"),
    }
}

#[tokio::test]
async fn an_organisation_nobody_trusts_cannot_reach_anothers_staff() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let mallory = relay.device("mallory@hostile");
    let (mut a, _) = relay.online(&alice).await;
    upload(&mut a, 20).await;
    let (mut b, _) = relay.online(&bob).await;
    let (mut m, _) = relay.online(&mallory).await;

    // KeyPackages: none for Mallory, however often she asks; a colleague
    // claims as before.
    for _ in 0..25 {
        assert_eq!(
            m.request(Request::ClaimKeyPackages {
                user_id: user("alice@north")
            })
            .await,
            Err(ProtocolError::UnknownUser)
        );
    }
    assert_eq!(
        claimed(
            b.request(Request::ClaimKeyPackages {
                user_id: user("alice@north")
            })
            .await
        ),
        1
    );
    // The directory: as if nobody were there.
    assert_eq!(
        m.request(Request::GetUser {
            user_id: user("alice@north")
        })
        .await,
        Err(ProtocolError::UnknownUser)
    );
    let search = |orgs: &[&str]| Request::SearchDirectory {
        orgs: orgs.iter().map(|o| OrgId::new(*o).expect("org")).collect(),
        query: String::new(),
    };
    assert_eq!(
        m.request(search(&["north"])).await,
        Ok(Response::Directory { entries: vec![] })
    );
    let Ok(Response::Directory { entries }) = b.request(search(&["north"])).await else {
        panic!("a directory");
    };
    assert_eq!(entries.len(), 2, "colleagues find each other");
    // Groups: Mallory cannot add Alice.
    let spam = GroupId([7; 16]);
    m.create_group(spam).await;
    assert_eq!(
        m.commit(bundle(spam, 0, &[&alice], &[])).await,
        Err(ProtocolError::UnknownDevice)
    );

    // North pinning hostile is not enough: hostile's clients would refuse
    // north's members, so the relay still refuses.
    relay.pin("north", "hostile");
    assert_eq!(
        m.request(Request::ClaimKeyPackages {
            user_id: user("alice@north")
        })
        .await,
        Err(ProtocolError::UnknownUser)
    );
    assert_eq!(
        m.commit(bundle(spam, 0, &[&alice], &[])).await,
        Err(ProtocolError::UnknownDevice)
    );
    // Both ways: they are partners now.
    relay.pin("hostile", "north");
    assert_eq!(
        claimed(
            m.request(Request::ClaimKeyPackages {
                user_id: user("alice@north")
            })
            .await
        ),
        1
    );
    assert!(matches!(
        m.request(Request::GetUser {
            user_id: user("alice@north")
        })
        .await,
        Ok(Response::User(_))
    ));
    assert_eq!(
        m.commit(bundle(spam, 0, &[&alice], &[])).await,
        Ok(Response::CommitAccepted { epoch: 1, seq: 1 })
    );
}

/// A newcomer must be trusted by every organisation in the group, not just
/// by the one adding it.
#[tokio::test]
async fn every_organisation_in_a_group_must_trust_a_newcomers() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let eve = relay.device("eve@south");
    let mallory = relay.device("mallory@hostile");
    relay.trust("north", "south");
    relay.trust("north", "hostile");
    let (mut a, _) = relay.online(&alice).await;
    let group = GroupId([3; 16]);
    a.create_group(group).await;
    assert_eq!(
        a.commit(bundle(group, 0, &[&eve], &[])).await,
        Ok(Response::CommitAccepted { epoch: 1, seq: 1 })
    );
    // South does not trust hostile.
    assert_eq!(
        a.commit(bundle(group, 1, &[&mallory], &[])).await,
        Err(ProtocolError::UnknownDevice)
    );
    // Without south's device in it, the group may take hostile's.
    assert_eq!(
        a.commit(bundle(group, 1, &[&mallory], &[&eve])).await,
        Ok(Response::CommitAccepted { epoch: 2, seq: 2 })
    );
}

#[tokio::test]
async fn only_certified_devices_take_part_in_groups() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let pending = relay.device_uncertified("dan@north");
    let (mut a, _) = relay.online(&alice).await;
    let group = GroupId([4; 16]);
    a.create_group(group).await;
    assert_eq!(
        a.commit(bundle(group, 0, &[&pending], &[])).await,
        Err(ProtocolError::UnknownDevice)
    );
    let (mut d, _) = relay.online(&pending).await;
    assert_eq!(
        d.request(Request::CreateGroup {
            group_id: GroupId([5; 16]),
            group_info: group_info(),
        })
        .await,
        Err(ProtocolError::UnknownDevice)
    );
}

/// Even a trusted colleague's device cannot drain someone's KeyPackages:
/// past `CLAIMS_PER_USER` claims of one user in the window it is told to
/// wait, and the rest of the stock stays.
#[tokio::test]
async fn claiming_one_persons_key_packages_over_and_over_is_rate_limited() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let carol = relay.device("carol@north");
    let bob = relay.device("bob@north");
    let (mut a, _) = relay.online(&alice).await;
    upload(&mut a, 20).await;
    let (mut c, _) = relay.online(&carol).await;
    upload(&mut c, 1).await;
    let (mut b, _) = relay.online(&bob).await;
    let claim = |id: &str| Request::ClaimKeyPackages { user_id: user(id) };
    for _ in 0..cascade_server::CLAIMS_PER_USER {
        assert_eq!(claimed(b.request(claim("alice@north")).await), 1);
    }
    match b.request(claim("alice@north")).await {
        Err(ProtocolError::RateLimited {
            retry_after_ms,
            scope,
        }) => {
            assert!(
                retry_after_ms > 0 && retry_after_ms <= 600_000,
                "{retry_after_ms}"
            );
            assert_eq!(scope, Some(RateScope::User), "this person, not all claims");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // Another person is claimed as usual, and Alice's stock kept the rest.
    assert_eq!(claimed(b.request(claim("carol@north")).await), 1);
    let stock = relay
        .server
        .state()
        .store()
        .key_package_stock(&alice.device_id)
        .expect("stock");
    assert_eq!(stock.stock, 20 - cascade_server::CLAIMS_PER_USER);
    let limited = relay
        .server
        .state()
        .metrics()
        .rate_limited
        .get_or_create(&cascade_server::metrics::Kind { kind: "claims" })
        .get();
    assert_eq!(limited, 1, "counted in the metrics");

    // Past the limit on all of the device's claims, the answer says so
    // (a client then knows it is not about one person).
    let device_limit = &relay.server.state().limits().claims_per_device;
    while device_limit.attempt(&bob.device_id).is_ok() {}
    assert!(matches!(
        b.request(claim("carol@north")).await,
        Err(ProtocolError::RateLimited {
            scope: Some(RateScope::Device),
            ..
        })
    ));
}

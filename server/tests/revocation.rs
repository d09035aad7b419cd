//! Revocation and signed-document fan-out: an admin revokes a device at the
//! relay (which then refuses it and drops its connection), publishes an
//! organisation's signed revocation list (pushed to every connected device)
//! and its trust list (pushed to the organisation's own devices only).
//!
//! The signed documents' bodies are opaque to the relay: any bytes do, as
//! long as the organisation's CA key signed them.

mod common;

use std::time::Duration;

use base64::Engine as _;
use cascade_protocol::frames::{Push, Request, Response, SignedDocument};
use cascade_protocol::{DeviceId, OrgId, ProtocolError};
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SigningKey as _, PKCS_ED25519,
};
use serde_json::{json, Value};

/// How long a revoked device's connection may stay open.
const PROMPTLY: Duration = Duration::from_secs(2);

/// How long to listen for a push that must not come. Absence has no event
/// to wait for; the relay pushes to connected devices before it answers the
/// admin request that caused the push, so one that was coming is already
/// on its way over loopback when the listening starts.
const QUIET: Duration = Duration::from_millis(300);

/// An organisation CA as its admin holds it (Ed25519, self-signed, the
/// Cascade profile, as in `certificates.rs`).
struct Ca {
    key: KeyPair,
    der: Vec<u8>,
    pem: String,
}

impl Ca {
    fn new(org: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, org);
        dn.push(DnType::CommonName, format!("{org} CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed");
        Ca {
            key,
            der: cert.der().to_vec(),
            pem: cert.pem(),
        }
    }

    /// An Ed25519 signature over `body` with the CA key.
    fn sign(&self, body: &[u8]) -> Vec<u8> {
        self.key.sign(body).expect("sign")
    }

    /// The upload of `body` signed by this CA.
    fn signed(&self, body: &[u8]) -> Value {
        json!({"body": b64(body), "signature": b64(&self.sign(body))})
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn org(org: &str) -> OrgId {
    OrgId::new(org).expect("valid org id")
}

/// Creates `org` with `ca` through the admin API, and makes `ca` the key
/// its admins sign with; without a CA, as older relays allowed (straight
/// into the store: the admin API refuses that now).
async fn create_org(relay: &Relay, org: &str, ca: Option<&Ca>) {
    let Some(ca) = ca else {
        relay.legacy_org(org);
        return;
    };
    let (status, body) = admin(
        relay,
        "/v1/admin/orgs",
        json!({"org_id": org, "display_name": format!("{org} Trust"),
               "ca_certificate": ca.pem}),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    relay.set_ca(org, &ca.key.serialize_der(), &ca.der, &ca.pem);
}

/// A revocation signed by `org`'s admins.
async fn revoke(relay: &Relay, org: &str, device: &str) -> (u16, Vec<u8>) {
    let path = format!("/v1/admin/devices/{device}/revoke");
    org_request(relay, org, "POST", &path, None).await
}

/// A revocation by the device's own organisation.
async fn revoke_as_admin(relay: &Relay, device: DeviceId) -> (u16, Vec<u8>) {
    let path = format!("/v1/admin/devices/{device}/revoke");
    admin_request(relay, "POST", &path, None).await
}

async fn put_revocations(relay: &Relay, org: &str, body: Value) -> (u16, Vec<u8>) {
    put_revocations_as(relay, org, org, body).await
}

/// `signer`'s admins publish a revocation list for `org`.
async fn put_revocations_as(relay: &Relay, signer: &str, org: &str, body: Value) -> (u16, Vec<u8>) {
    let path = format!("/v1/admin/orgs/{org}/revocations");
    let bytes = serde_json::to_vec(&body).expect("json");
    org_request(relay, signer, "PUT", &path, Some(&bytes)).await
}

async fn put_trust_list(relay: &Relay, org: &str, body: Value) -> (u16, Vec<u8>) {
    let path = format!("/v1/admin/orgs/{org}/trust-list");
    let bytes = serde_json::to_vec(&body).expect("json");
    org_request(relay, org, "PUT", &path, Some(&bytes)).await
}

/// Asserts an HTTP answer is the error `status` with `code`.
#[track_caller]
fn refused(answer: (u16, Vec<u8>), status: u16, code: &str) {
    let (got, body) = answer;
    assert_eq!(
        (got, error_code(&body).as_str()),
        (status, code),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[track_caller]
fn no_content(answer: (u16, Vec<u8>)) {
    let (status, body) = answer;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
}

/// Whether `device` can still authenticate on a fresh connection.
async fn authenticates(relay: &Relay, device: &TestDevice) -> Result<Response, ProtocolError> {
    let mut client = Client::connect(&relay.server.ws_url()).await;
    client.authenticate(device).await
}

async fn revocations(client: &mut Client, org_id: &str) -> Option<SignedDocument> {
    match client
        .request(Request::GetRevocations {
            org_id: org(org_id),
        })
        .await
    {
        Ok(Response::Revocations { document }) => document,
        other => panic!("expected Revocations, got {other:?}"),
    }
}

async fn trust_list(client: &mut Client, org_id: &str) -> Option<SignedDocument> {
    match client
        .request(Request::GetTrustList {
            org_id: org(org_id),
        })
        .await
    {
        Ok(Response::TrustList { document }) => document,
        other => panic!("expected TrustList, got {other:?}"),
    }
}

// --- POST /v1/admin/devices/{device}/revoke ---

#[tokio::test]
async fn revoking_needs_the_organisations_signature_and_a_known_device() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let id = alice.device_id.to_string();
    let path = format!("/v1/admin/devices/{id}/revoke");

    // Not without a signature, not with the relay operator's token, and
    // not by another organisation (to which the device is unknown).
    for bearer in [
        None,
        Some("not-the-admin-token"),
        Some(relay.admin_token.as_str()),
    ] {
        refused(
            http(relay.server.addr(), "POST", &path, bearer, None).await,
            401,
            "unauthorized",
        );
    }
    relay.device("eve@south");
    refused(revoke(&relay, "south", &id).await, 404, "not_found");
    // Nothing was revoked by the refusals.
    assert!(
        matches!(
            authenticates(&relay, &alice).await,
            Ok(Response::Authenticated { .. })
        ),
        "still enrolled"
    );

    let malformed = [
        "xyz".to_string(),
        "0102".to_string(),
        format!("{id}00"),
        id[..id.len() - 1].to_string(),
        "z".repeat(id.len()),
    ];
    for bad in &malformed {
        refused(revoke(&relay, "north", bad).await, 400, "bad_request");
    }
    refused(
        revoke(&relay, "north", &DeviceId([7; 16]).to_string()).await,
        404,
        "not_found",
    );

    no_content(revoke_as_admin(&relay, alice.device_id).await);
    // Idempotent.
    no_content(revoke_as_admin(&relay, alice.device_id).await);
    let device = relay
        .server
        .state()
        .store()
        .get_device(&alice.device_id)
        .expect("read")
        .expect("a revoked device is kept");
    assert!(device.revoked);
}

#[tokio::test]
async fn a_revoked_device_can_no_longer_authenticate() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let alice_phone = relay.device("alice@north");
    drop(relay.online_idle(&alice).await);

    no_content(revoke_as_admin(&relay, alice.device_id).await);

    let mut client = Client::connect(&relay.server.ws_url()).await;
    assert_eq!(
        client.authenticate(&alice).await,
        Err(ProtocolError::AuthenticationFailed)
    );
    assert_eq!(client.closed().await, Some(1008));
    // Another device of the same user is not affected.
    let mut phone = relay.online_idle(&alice_phone).await;
    assert_eq!(phone.request(Request::Ping).await, Ok(Response::Pong));
    // The directory no longer lists the revoked device.
    let answer = phone
        .request(Request::GetUser {
            user_id: alice.user_id.clone(),
        })
        .await;
    let Ok(Response::User(entry)) = answer else {
        panic!("expected the user, got {answer:?}");
    };
    assert_eq!(entry.devices, vec![alice_phone.device_id]);
}

#[tokio::test]
async fn revoking_a_connected_device_ends_its_connection_at_once() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let alice_phone = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let mut a = relay.online_idle(&alice).await;
    let mut phone = relay.online_idle(&alice_phone).await;
    let mut b = relay.online_idle(&bob).await;
    assert_eq!(a.request(Request::Ping).await, Ok(Response::Pong));

    no_content(revoke_as_admin(&relay, alice.device_id).await);
    a.ends_within(PROMPTLY).await;
    assert!(
        !relay
            .server
            .state()
            .registry()
            .is_connected(&alice.device_id),
        "no longer registered for live delivery"
    );

    // The user's other device and other users stay connected.
    assert_eq!(phone.request(Request::Ping).await, Ok(Response::Pong));
    assert_eq!(b.request(Request::Ping).await, Ok(Response::Pong));
    phone.assert_quiet_for(QUIET).await;
    b.assert_quiet_for(QUIET).await;

    // Revoking again, with the device offline, changes nothing.
    no_content(revoke_as_admin(&relay, alice.device_id).await);
    assert_eq!(
        authenticates(&relay, &alice).await,
        Err(ProtocolError::AuthenticationFailed)
    );
    assert_eq!(phone.request(Request::Ping).await, Ok(Response::Pong));
}

#[tokio::test]
async fn a_revoked_device_is_no_longer_offered_for_adding() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let carol_desk = relay.device("carol@north");
    let carol_phone = relay.device("carol@north");
    for device in [&bob, &carol_desk, &carol_phone] {
        let mut client = relay.online_idle(device).await;
        let n = device.device_id.0[0];
        let answer = client
            .request(Request::UploadKeyPackages {
                key_packages: vec![key_package(n), key_package(n.wrapping_add(1))],
                last_resort: Some(key_package(n.wrapping_add(2))),
            })
            .await;
        assert_eq!(answer, Ok(Response::KeyPackagesStored { stock: 2 }));
    }
    let mut a = relay.online_idle(&alice).await;
    let claim = |user: &TestDevice| Request::ClaimKeyPackages {
        user_id: user.user_id.clone(),
    };

    // Bob's only device: offered before, not after.
    let Ok(Response::KeyPackages { devices }) = a.request(claim(&bob)).await else {
        panic!("expected bob's KeyPackage");
    };
    assert_eq!(
        devices.iter().map(|d| d.device_id).collect::<Vec<_>>(),
        vec![bob.device_id]
    );
    no_content(revoke_as_admin(&relay, bob.device_id).await);
    assert_eq!(
        a.request(claim(&bob)).await,
        Err(ProtocolError::NoKeyPackages),
        "neither single-use nor last-resort KeyPackages of a revoked device"
    );

    // Carol keeps her other device.
    no_content(revoke_as_admin(&relay, carol_phone.device_id).await);
    for _ in 0..4 {
        let Ok(Response::KeyPackages { devices }) = a.request(claim(&carol_desk)).await else {
            panic!("expected carol's KeyPackages");
        };
        assert_eq!(
            devices.iter().map(|d| d.device_id).collect::<Vec<_>>(),
            vec![carol_desk.device_id],
            "only the unrevoked device"
        );
    }
    // Revoked devices' stock was not touched by the claims.
    let stock = relay
        .server
        .state()
        .store()
        .key_package_stock(&carol_phone.device_id)
        .expect("stock");
    assert_eq!((stock.stock, stock.has_last_resort), (2, true));
}

// --- PUT /v1/admin/orgs/{org}/revocations ---

#[tokio::test]
async fn a_revocation_list_must_be_signed_by_the_org_ca() {
    let relay = start().await;
    let north = Ca::new("north");
    create_org(&relay, "north", Some(&north)).await;
    create_org(&relay, "plain", None).await;
    let alice = relay.device("alice@north");
    let mut a = relay.online_idle(&alice).await;
    assert_eq!(
        revocations(&mut a, "north").await,
        None,
        "none uploaded yet"
    );

    // Signed by another key (even a CA calling itself north), tampered
    // with, or not a signature at all.
    let forger = Ca::new("north");
    let refusals = [
        forger.signed(b"revoked: mallory"),
        json!({"body": b64(b"revoked: nobody"), "signature": b64(&north.sign(b"revoked: mallory"))}),
        json!({"body": b64(b"revoked: mallory"), "signature": b64(b"short")}),
        json!({"body": b64(b"revoked: mallory"), "signature": ""}),
    ];
    for upload in refusals {
        refused(
            put_revocations(&relay, "north", upload).await,
            400,
            "bad_signature",
        );
    }
    refused(
        put_revocations(
            &relay,
            "north",
            json!({"body": "not base64!", "signature": ""}),
        )
        .await,
        400,
        "bad_request",
    );
    // North's admins publish for north only.
    for other in ["plain", "east"] {
        refused(
            put_revocations_as(&relay, "north", other, north.signed(b"list")).await,
            403,
            "forbidden",
        );
    }
    refused(
        put_revocations_as(&relay, "north", "NOT-AN-ORG", north.signed(b"list")).await,
        400,
        "bad_request",
    );
    let path = "/v1/admin/orgs/north/revocations";
    let (status, _) = put_json(&relay, path, None, north.signed(b"list")).await;
    assert_eq!(status, 401);
    refused(
        put_json(&relay, path, Some("wrong"), north.signed(b"list")).await,
        401,
        "unauthorized",
    );
    // Refusals store nothing and push nothing.
    a.assert_quiet_for(QUIET).await;
    assert_eq!(revocations(&mut a, "north").await, None);

    // Opaque bytes, not UTF-8, not CBOR: fine once signed.
    let body: Vec<u8> = (0..=255u8).rev().cycle().take(3000).collect();
    no_content(put_revocations(&relay, "north", north.signed(&body)).await);
    assert_eq!(
        a.push().await,
        Push::RevocationsUpdated {
            org_id: org("north")
        }
    );
    assert_eq!(
        revocations(&mut a, "north").await,
        Some(SignedDocument {
            body: body.clone().into(),
            signature: north.sign(&body).into(),
            co_signature: None,
        }),
        "exactly the stored body and signature"
    );
    // A separate document from the trust list; other organisations have none.
    assert_eq!(trust_list(&mut a, "north").await, None);
    for other in ["plain", "east"] {
        assert_eq!(revocations(&mut a, other).await, None, "{other}");
    }

    // A refused upload leaves the stored list alone; a new one replaces it.
    refused(
        put_revocations(&relay, "north", forger.signed(b"forged")).await,
        400,
        "bad_signature",
    );
    assert_eq!(
        revocations(&mut a, "north")
            .await
            .map(|d| d.body.into_vec()),
        Some(body)
    );
    no_content(put_revocations(&relay, "north", north.signed(b"list 2")).await);
    assert_eq!(
        a.push().await,
        Push::RevocationsUpdated {
            org_id: org("north")
        }
    );
    assert_eq!(
        revocations(&mut a, "north").await,
        Some(SignedDocument {
            body: b"list 2".to_vec().into(),
            signature: north.sign(b"list 2").into(),
            co_signature: None,
        })
    );

    // A device connecting later fetches it too.
    let alice_phone = relay.device("alice@north");
    let mut phone = relay.online_idle(&alice_phone).await;
    assert_eq!(
        revocations(&mut phone, "north")
            .await
            .map(|d| d.body.into_vec()),
        Some(b"list 2".to_vec())
    );
}

#[tokio::test]
async fn every_connected_device_hears_of_a_new_revocation_list() {
    let relay = start().await;
    let north = Ca::new("north");
    let south = Ca::new("south");
    create_org(&relay, "north", Some(&north)).await;
    create_org(&relay, "south", Some(&south)).await;
    create_org(&relay, "plain", None).await;
    let devices = [
        relay.device("alice@north"),
        relay.device("alice@north"),
        relay.device("bob@south"),
        relay.device("carol@plain"),
    ];
    let offline = relay.device("dave@north");
    let mut clients = Vec::new();
    for device in &devices {
        clients.push(relay.online_idle(device).await);
    }

    no_content(put_revocations(&relay, "north", north.signed(b"north list")).await);
    for client in &mut clients {
        assert_eq!(
            client.push().await,
            Push::RevocationsUpdated {
                org_id: org("north")
            }
        );
    }
    no_content(put_revocations(&relay, "south", south.signed(b"south list")).await);
    for client in &mut clients {
        assert_eq!(
            client.push().await,
            Push::RevocationsUpdated {
                org_id: org("south")
            }
        );
    }
    // Exactly one push per upload; the pushes are not queued for later.
    for client in &mut clients {
        client.assert_quiet_for(QUIET).await;
    }
    let (mut d, backlog) = relay.online(&offline).await;
    assert!(backlog.is_empty(), "{backlog:?}");
    assert_eq!(d.push().await, Push::KeyPackagesLow { stock: 0 });
    d.assert_quiet_for(QUIET).await;
    assert_eq!(
        revocations(&mut d, "south")
            .await
            .map(|doc| doc.body.into_vec()),
        Some(b"south list".to_vec())
    );
}

// --- PUT /v1/admin/orgs/{org}/trust-list ---

#[tokio::test]
async fn only_the_organisations_own_devices_hear_of_a_new_trust_list() {
    let relay = start().await;
    let north = Ca::new("north");
    let south = Ca::new("south");
    create_org(&relay, "north", Some(&north)).await;
    create_org(&relay, "south", Some(&south)).await;
    create_org(&relay, "plain", None).await;
    let north_devices = [
        relay.device("alice@north"),
        relay.device("alice@north"),
        relay.device("bob@north"),
    ];
    let others = [relay.device("eve@south"), relay.device("carol@plain")];
    let mut ours = Vec::new();
    for device in &north_devices {
        ours.push(relay.online_idle(device).await);
    }
    let mut theirs = Vec::new();
    for device in &others {
        theirs.push(relay.online_idle(device).await);
    }

    // A refused upload pushes nothing.
    let forger = Ca::new("north");
    refused(
        put_trust_list(&relay, "north", forger.signed(b"forged")).await,
        400,
        "bad_signature",
    );
    for client in ours.iter_mut().chain(theirs.iter_mut()) {
        client.assert_quiet_for(QUIET).await;
    }

    no_content(put_trust_list(&relay, "north", north.signed(b"north trust")).await);
    for client in &mut ours {
        assert_eq!(
            client.push().await,
            Push::TrustListUpdated {
                org_id: org("north")
            }
        );
    }
    for client in &mut theirs {
        client.assert_quiet_for(QUIET).await;
    }
    for client in &mut ours {
        client.assert_quiet_for(QUIET).await;
        assert_eq!(
            trust_list(client, "north").await,
            Some(SignedDocument {
                body: b"north trust".to_vec().into(),
                signature: north.sign(b"north trust").into(),
                co_signature: None,
            })
        );
    }

    // And the other way round.
    no_content(put_trust_list(&relay, "south", south.signed(b"south trust")).await);
    assert_eq!(
        theirs[0].push().await,
        Push::TrustListUpdated {
            org_id: org("south")
        }
    );
    theirs[1].assert_quiet_for(QUIET).await;
    for client in &mut ours {
        client.assert_quiet_for(QUIET).await;
    }
    // The trust list is not the revocation list.
    assert_eq!(revocations(&mut ours[0], "north").await, None);
}

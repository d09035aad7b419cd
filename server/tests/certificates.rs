//! Organisation CAs, device certificates and trust lists: an admin
//! registers a CA, issues certificates for enrolled devices and publishes a
//! signed trust list; the relay refuses what clients would refuse and
//! delivers certificates and trust lists to devices.
//!
//! The CAs here are made with rcgen exactly as `cascade admin` makes them:
//! Ed25519, subject `O=<org>, CN=<name>`, device certificates with
//! `title=<role>` and the two `urn:cascade:` subjectAltName URIs.

mod common;

use base64::Engine as _;
use cascade_protocol::frames::{Push, Request, Response, SignedDocument};
use cascade_protocol::http::{
    EnrolResponse, EnrolmentToken, HttpError, OrgInfo, OrgUser, PendingDevice,
};
use cascade_protocol::{DeviceId, OrgId, UserId};
use common::*;
use ed25519_dalek::SigningKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SigningKey as _, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use serde_json::{json, Value};

/// The X.520 `title` attribute, which carries the role.
const TITLE: [u64; 4] = [2, 5, 4, 12];

/// An organisation CA as an admin holds it.
struct TestCa {
    key: KeyPair,
    der: Vec<u8>,
    pem: String,
}

impl TestCa {
    /// A CA for `org`, of the Cascade profile.
    fn new(org: &str) -> Self {
        Self::with(org, |_| {})
    }

    /// A CA for `org` with its parameters changed by `tweak` before signing.
    fn with(org: &str, tweak: impl FnOnce(&mut CertificateParams)) -> Self {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = name(org, &format!("{org} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        tweak(&mut params);
        let cert = params.self_signed(&key).expect("self-signed");
        TestCa {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
        }
    }

    /// The parameters of a device certificate for `device` of `user`.
    fn device_params(&self, user: &str, device: DeviceId) -> CertificateParams {
        let org = UserId::new(user).expect("valid").org();
        let mut params = CertificateParams::default();
        let mut dn = name(org.as_str(), "Alice Okafor");
        dn.push(DnType::CustomDnType(TITLE.to_vec()), "Ward Sister");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::URI(format!("urn:cascade:user:{user}").try_into().expect("uri")),
            SanType::URI(
                format!("urn:cascade:device:{device}")
                    .try_into()
                    .expect("uri"),
            ),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params
    }

    /// Signs a certificate for the raw Ed25519 `key` (PEM).
    fn issue(&self, params: &CertificateParams, key: &[u8; 32]) -> String {
        let issuer = Issuer::from_ca_cert_der(&self.der.clone().into(), &self.key).expect("issuer");
        params
            .signed_by(&RawEd25519(key.to_vec()), &issuer)
            .expect("signed")
            .pem()
    }

    /// The Cascade-profile certificate of an enrolled device (PEM).
    fn certify(&self, device: &TestDevice) -> String {
        let params = self.device_params(device.user_id.as_str(), device.device_id);
        self.issue(&params, &public_key(device))
    }

    /// An Ed25519 signature with the CA key.
    fn sign(&self, document: &[u8]) -> Vec<u8> {
        self.key.sign(document).expect("sign")
    }
}

fn name(org: &str, common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A device's raw Ed25519 public key, for rcgen.
struct RawEd25519(Vec<u8>);

impl rcgen::PublicKeyData for RawEd25519 {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &PKCS_ED25519
    }
}

fn public_key(device: &TestDevice) -> [u8; 32] {
    device.key.verifying_key().to_bytes()
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
    block.contents
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn get(relay: &Relay, path: &str, bearer: Option<&str>) -> (u16, Vec<u8>) {
    http(relay.server.addr(), "GET", path, bearer, None).await
}

/// A `PUT` signed by the organisation the path names.
async fn put(relay: &Relay, path: &str, body: Value) -> (u16, Vec<u8>) {
    let bytes = serde_json::to_vec(&body).expect("json");
    admin_request(relay, "PUT", path, Some(&bytes)).await
}

/// Creates `org` with `ca` through the admin API (the relay operator), and
/// makes `ca` the key its admins sign with.
async fn create_org(relay: &Relay, org: &str, ca: &TestCa) -> (u16, Vec<u8>) {
    let answer = admin(
        relay,
        "/v1/admin/orgs",
        json!({"org_id": org, "display_name": format!("{org} Trust"), "ca_certificate": ca.pem}),
    )
    .await;
    if answer.0 == 201 {
        uses(relay, org, ca);
    }
    answer
}

/// `org`'s admins sign with `ca` from now on.
fn uses(relay: &Relay, org: &str, ca: &TestCa) {
    relay.set_ca(org, &ca.key.serialize_der(), &ca.der, &ca.pem);
}

/// Creates the user if needed and enrols a new device for it over HTTP.
async fn enrol(relay: &Relay, user: &str, device_name: &str) -> TestDevice {
    admin(
        relay,
        "/v1/admin/users",
        json!({"user_id": user, "display_name": "Alice Okafor", "role": "Ward Sister"}),
    )
    .await;
    let (status, body) = admin(
        relay,
        "/v1/admin/enrolment-tokens",
        json!({"user_id": user, "ttl_secs": null}),
    )
    .await;
    assert_eq!(status, 201);
    let token: EnrolmentToken = serde_json::from_slice(&body).expect("token");
    let key = SigningKey::from_bytes(&rand::random());
    let (status, body) = post(
        relay,
        "/v1/enrol",
        None,
        json!({"token": token.token,
               "signature_key": hex::encode(key.verifying_key().to_bytes()),
               "device_name": device_name}),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let enrolled: EnrolResponse = serde_json::from_slice(&body).expect("enrolled");
    TestDevice {
        device_id: enrolled.device_id,
        user_id: enrolled.user_id,
        key,
    }
}

async fn upload(relay: &Relay, device: DeviceId, pem: &str) -> (u16, Vec<u8>) {
    admin(
        relay,
        &format!("/v1/admin/devices/{device}/certificate"),
        json!({ "certificate": pem }),
    )
    .await
}

async fn pending(relay: &Relay, org: &str) -> Vec<PendingDevice> {
    let path = format!("/v1/admin/orgs/{org}/pending-devices");
    let (status, body) = admin_request(relay, "GET", &path, None).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("pending devices")
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

/// Asserts a `400 bad_certificate` whose message gives the expected reason.
#[track_caller]
fn refused_because(status: u16, body: &[u8], why: &str, because: &str) {
    let error: HttpError = serde_json::from_slice(body).expect("an HttpError body");
    assert_eq!(
        (status, error.code.as_str()),
        (400, "bad_certificate"),
        "{why}"
    );
    assert!(
        error.message.contains(because),
        "{why}: expected {because:?} in {:?}",
        error.message
    );
}

#[tokio::test]
async fn an_organisation_registers_its_ca_and_anyone_can_read_it() {
    let relay = start().await;
    let north = TestCa::new("north");
    let (status, body) = create_org(&relay, "north", &north).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    relay.legacy_org("south");

    // Public: no admin token needed.
    let (status, body) = get(&relay, "/v1/orgs/north", None).await;
    assert_eq!(status, 200);
    let info: OrgInfo = serde_json::from_slice(&body).expect("OrgInfo");
    assert_eq!(info.org_id.as_str(), "north");
    assert_eq!(info.display_name, "north Trust");
    let pem = info.ca_certificate.expect("the CA is published");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(pem.lines().all(|line| line.len() <= 64));
    assert_eq!(
        pem_to_der(&pem),
        north.der,
        "the very certificate registered"
    );

    let (status, body) = get(&relay, "/v1/orgs/south", None).await;
    assert_eq!(status, 200);
    let info: OrgInfo = serde_json::from_slice(&body).expect("OrgInfo");
    assert_eq!(info.ca_certificate, None);

    refused(get(&relay, "/v1/orgs/east", None).await, 404, "not_found");
    refused(
        get(&relay, "/v1/orgs/NOT-AN-ORG", None).await,
        400,
        "bad_request",
    );
}

#[tokio::test]
async fn a_ca_certificate_clients_would_refuse_is_refused() {
    let relay = start().await;
    let other = TestCa::new("other");
    // Issued by another CA: not self-signed, though it names the right org.
    let intermediate = {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = name("north", "north CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let issuer =
            Issuer::from_ca_cert_der(&other.der.clone().into(), &other.key).expect("issuer");
        params.signed_by(&key, &issuer).expect("signed").pem()
    };
    let not_ed25519 = {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = name("north", "north CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.self_signed(&key).expect("self-signed").pem()
    };
    let north = TestCa::new("north");
    let cases = [
        (
            "a CA for another organisation",
            TestCa::new("south").pem,
            "naming organisation north",
        ),
        (
            "no organisation in the subject",
            TestCa::with("north", |p| {
                p.distinguished_name = DistinguishedName::new();
                p.distinguished_name.push(DnType::CommonName, "north CA");
            })
            .pem,
            "exactly one O attribute",
        ),
        (
            "not a CA",
            TestCa::with("north", |p| p.is_ca = IsCa::ExplicitNoCa).pem,
            "not a CA",
        ),
        ("not self-signed", intermediate, "not self-signed"),
        ("not Ed25519", not_ed25519, "not an Ed25519 key"),
        (
            "expired",
            TestCa::with("north", |p| {
                p.not_before = rcgen::date_time_ymd(2000, 1, 1);
                p.not_after = rcgen::date_time_ymd(2001, 1, 1);
            })
            .pem,
            "expired",
        ),
        (
            "two certificates",
            format!("{}{}", north.pem, other.pem),
            "exactly one PEM block",
        ),
        ("not PEM", "hello".into(), "exactly one PEM block"),
        (
            "not X.509",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n".into(),
            "not valid X.509",
        ),
    ];
    for (why, pem, because) in cases {
        let (status, body) = admin(
            &relay,
            "/v1/admin/orgs",
            json!({"org_id": "north", "display_name": "North", "ca_certificate": pem}),
        )
        .await;
        refused_because(status, &body, why, because);
    }
    // Nothing was created by the refusals.
    refused(get(&relay, "/v1/orgs/north", None).await, 404, "not_found");
    let (status, _) = create_org(&relay, "north", &north).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn enrolled_devices_wait_for_their_certificate() {
    let relay = start().await;
    let north = TestCa::new("north");
    create_org(&relay, "north", &north).await;
    create_org(&relay, "south", &TestCa::new("south")).await;
    let desktop = enrol(&relay, "alice@north", "Ward 7 desktop").await;
    let phone = enrol(&relay, "alice@north", "Phone").await;
    enrol(&relay, "bob@south", "Bob's phone").await;

    let mut listed = pending(&relay, "north").await;
    listed.sort_by_key(|p| p.device_name.clone());
    assert_eq!(
        listed,
        vec![
            PendingDevice {
                device_id: phone.device_id,
                user_id: phone.user_id.clone(),
                display_name: "Alice Okafor".into(),
                role: "Ward Sister".into(),
                device_name: "Phone".into(),
                signature_key: hex::encode(public_key(&phone)),
                renewal: false,
            },
            PendingDevice {
                device_id: desktop.device_id,
                user_id: desktop.user_id.clone(),
                display_name: "Alice Okafor".into(),
                role: "Ward Sister".into(),
                device_name: "Ward 7 desktop".into(),
                signature_key: hex::encode(public_key(&desktop)),
                renewal: false,
            },
        ]
    );

    let (status, body) = upload(&relay, desktop.device_id, &north.certify(&desktop)).await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    let listed = pending(&relay, "north").await;
    assert_eq!(
        listed.iter().map(|p| p.device_id).collect::<Vec<_>>(),
        vec![phone.device_id]
    );
    // A renewed certificate replaces the first.
    let (status, _) = upload(&relay, desktop.device_id, &north.certify(&desktop)).await;
    assert_eq!(status, 204);

    // The admins' list of users says which device is which: name,
    // enrolment time, whether it has its certificate; in the order of
    // `devices`.
    let (status, body) = admin_request(&relay, "GET", "/v1/admin/orgs/north/users", None).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let users: Vec<OrgUser> = serde_json::from_slice(&body).expect("users");
    let [alice] = users.as_slice() else {
        panic!("north has one user: {users:?}")
    };
    let details: Vec<_> = alice
        .device_details
        .iter()
        .map(|d| {
            (
                d.device_id,
                d.device_name.as_str(),
                d.certified,
                d.last_seen,
            )
        })
        .collect();
    let mut expected = vec![
        (desktop.device_id, "Ward 7 desktop", true, 0),
        (phone.device_id, "Phone", false, 0),
    ];
    expected.sort_by_key(|d| alice.entry.devices.iter().position(|id| *id == d.0));
    assert_eq!(details, expected);
    let now = cascade_server::unix_now();
    assert!(alice
        .device_details
        .iter()
        .all(|d| (now - 60..=now).contains(&d.enrolled_at)));

    // A revoked device is no longer waiting.
    relay
        .server
        .state()
        .store()
        .revoke_device(&phone.device_id)
        .expect("revoke");
    assert!(pending(&relay, "north").await.is_empty());

    refused(
        org_request(
            &relay,
            "north",
            "GET",
            "/v1/admin/orgs/east/pending-devices",
            None,
        )
        .await,
        403,
        "forbidden",
    );
    refused(
        get(&relay, "/v1/admin/orgs/north/pending-devices", None).await,
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn a_device_certificate_clients_would_refuse_is_refused() {
    let relay = start().await;
    let north = TestCa::new("north");
    create_org(&relay, "north", &north).await;
    let alice = enrol(&relay, "alice@north", "Desktop").await;
    let bob = enrol(&relay, "bob@north", "Phone").await;

    // Mallory's CA calls itself exactly what north's does.
    let forger = TestCa::new("north");
    let alice_params = north.device_params("alice@north", alice.device_id);
    let alice_with = |tweak: &dyn Fn(&mut CertificateParams)| {
        let mut params = alice_params.clone();
        tweak(&mut params);
        north.issue(&params, &public_key(&alice))
    };
    let cases = [
        (
            "forged by another CA",
            forger.certify(&alice),
            "signature does not verify",
        ),
        (
            "issued by another organisation's CA",
            TestCa::new("south").certify(&alice),
            "issuer is not the organisation's CA",
        ),
        (
            "another device's key",
            north.issue(&alice_params, &public_key(&bob)),
            "not the device's enrolled signature key",
        ),
        ("bob's certificate", north.certify(&bob), "subjectAltName"),
        (
            "naming another user",
            north.issue(
                &north.device_params("bob@north", alice.device_id),
                &public_key(&alice),
            ),
            "subjectAltName",
        ),
        (
            "without subjectAltName",
            alice_with(&|p| p.subject_alt_names.clear()),
            "subjectAltName",
        ),
        (
            "naming another organisation",
            alice_with(&|p| {
                p.distinguished_name = name("south", "Alice Okafor");
                p.distinguished_name
                    .push(DnType::CustomDnType(TITLE.to_vec()), "Ward Sister");
            }),
            "naming organisation north",
        ),
        (
            "without a role",
            alice_with(&|p| p.distinguished_name = name("north", "Alice Okafor")),
            "title (role)",
        ),
        (
            "a CA certificate",
            alice_with(&|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
            "must not be a CA",
        ),
        (
            "expired",
            alice_with(&|p| {
                p.not_before = rcgen::date_time_ymd(2000, 1, 1);
                p.not_after = rcgen::date_time_ymd(2001, 1, 1);
            }),
            "expired",
        ),
        (
            "the CA's own certificate",
            north.pem.clone(),
            "must not be a CA",
        ),
        ("not PEM", "hello".into(), "exactly one PEM block"),
    ];
    for (why, pem, because) in cases {
        let (status, body) = upload(&relay, alice.device_id, &pem).await;
        refused_because(status, &body, why, because);
    }
    let still = pending(&relay, "north").await;
    assert_eq!(still.len(), 2, "nothing was stored");

    refused(
        upload(&relay, DeviceId([7; 16]), &north.certify(&alice)).await,
        404,
        "not_found",
    );
    refused(
        admin(
            &relay,
            "/v1/admin/devices/xyz/certificate",
            json!({"certificate": north.certify(&alice)}),
        )
        .await,
        400,
        "bad_request",
    );
    relay
        .server
        .state()
        .store()
        .revoke_device(&bob.device_id)
        .expect("revoke");
    refused(
        upload(&relay, bob.device_id, &north.certify(&bob)).await,
        404,
        "not_found",
    );
    let (status, _) = post(
        &relay,
        &format!("/v1/admin/devices/{}/certificate", alice.device_id),
        None,
        json!({"certificate": north.certify(&alice)}),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_device_learns_its_certificate_live_and_on_every_connection() {
    let relay = start().await;
    let north = TestCa::new("north");
    create_org(&relay, "north", &north).await;
    let alice = enrol(&relay, "alice@north", "Desktop").await;

    let mut client = Client::connect(&relay.server.ws_url()).await;
    let Ok(Response::Authenticated { certificate, .. }) = client.authenticate(&alice).await else {
        panic!("authenticated");
    };
    assert_eq!(certificate, None, "pending");
    assert_eq!(client.push().await, Push::QueueDrained);
    assert_eq!(client.push().await, Push::KeyPackagesLow { stock: 0 });

    let pem = north.certify(&alice);
    let (status, _) = upload(&relay, alice.device_id, &pem).await;
    assert_eq!(status, 204);
    let Push::CertificateIssued { certificate } = client.push().await else {
        panic!("expected the certificate");
    };
    assert_eq!(certificate.into_vec(), pem_to_der(&pem));
    drop(client);

    let mut client = Client::connect(&relay.server.ws_url()).await;
    let Ok(Response::Authenticated { certificate, .. }) = client.authenticate(&alice).await else {
        panic!("authenticated");
    };
    assert_eq!(
        certificate.map(|c| c.into_vec()),
        Some(pem_to_der(&pem)),
        "the certificate comes with every authentication"
    );
}

#[tokio::test]
async fn an_admin_publishes_a_signed_trust_list_and_devices_fetch_it() {
    let relay = start().await;
    let north = TestCa::new("north");
    create_org(&relay, "north", &north).await;
    relay.legacy_org("plain");
    let alice = enrol(&relay, "alice@north", "Desktop").await;
    let path = "/v1/admin/orgs/north/trust-list";

    // Over the usual 64 KiB HTTP limit, under the trust list's own.
    let body = vec![0xa5; 100 * 1024];
    let signed = |body: &[u8]| json!({"body": b64(body), "signature": b64(&north.sign(body))});
    let (status, answer) = put(&relay, path, signed(&body)).await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&answer));

    let (mut client, _) = relay.online(&alice).await;
    let answer = client
        .request(Request::GetTrustList {
            org_id: OrgId::new("north").expect("valid"),
        })
        .await;
    assert_eq!(
        answer,
        Ok(Response::TrustList {
            document: Some(SignedDocument {
                body: body.clone().into(),
                signature: north.sign(&body).into(),
                co_signature: None,
            })
        })
    );
    for org in ["plain", "east"] {
        let answer = client
            .request(Request::GetTrustList {
                org_id: OrgId::new(org).expect("valid"),
            })
            .await;
        assert_eq!(answer, Ok(Response::TrustList { document: None }), "{org}");
    }

    // Signed by another key, or tampered with after signing.
    let forger = TestCa::new("north");
    refused(
        put(
            &relay,
            path,
            json!({"body": b64(b"list"), "signature": b64(&forger.sign(b"list"))}),
        )
        .await,
        400,
        "bad_signature",
    );
    refused(
        put(
            &relay,
            path,
            json!({"body": b64(b"list 2"), "signature": b64(&north.sign(b"list"))}),
        )
        .await,
        400,
        "bad_signature",
    );
    refused(
        put(
            &relay,
            path,
            json!({"body": b64(b"list"), "signature": b64(b"short")}),
        )
        .await,
        400,
        "bad_signature",
    );
    refused(
        put(
            &relay,
            path,
            json!({"body": "not base64!", "signature": ""}),
        )
        .await,
        400,
        "bad_request",
    );
    let too_big = vec![1; 256 * 1024 + 1];
    refused(
        put(&relay, path, signed(&too_big)).await,
        413,
        "payload_too_large",
    );
    // North's admins publish for north only; an organisation without a CA
    // (registered by an older relay) has no admins who could sign.
    for other in ["plain", "east"] {
        let path = format!("/v1/admin/orgs/{other}/trust-list");
        let json_body = serde_json::to_vec(&signed(b"list")).expect("json");
        refused(
            org_request(&relay, "north", "PUT", &path, Some(&json_body)).await,
            403,
            "forbidden",
        );
    }
    let json_body = serde_json::to_vec(&signed(b"list")).expect("json");
    let header = relay.org_authorization(
        "north",
        "PUT",
        "/v1/admin/orgs/plain/trust-list",
        &json_body,
    );
    let forged = header.replacen("org=north", "org=plain", 1);
    refused(
        http_authorized(
            relay.server.addr(),
            "PUT",
            "/v1/admin/orgs/plain/trust-list",
            Some(&forged),
            Some(&json_body),
        )
        .await,
        401,
        "unauthorized",
    );
    // The refusals left the published list alone; a new one replaces it.
    let answer = client
        .request(Request::GetTrustList {
            org_id: OrgId::new("north").expect("valid"),
        })
        .await;
    let Ok(Response::TrustList {
        document: Some(document),
    }) = answer
    else {
        panic!("a trust list: {answer:?}");
    };
    assert_eq!(document.body.into_vec(), body);
    let (status, _) = put(&relay, path, signed(b"list 3")).await;
    assert_eq!(status, 204);
    let answer = client
        .request(Request::GetTrustList {
            org_id: OrgId::new("north").expect("valid"),
        })
        .await;
    assert!(
        matches!(&answer, Ok(Response::TrustList { document: Some(d) }) if d.body.as_slice() == b"list 3"),
        "{answer:?}"
    );
}

/// A trust list body (`docs/protocol.md` §14.4) naming `successor`.
fn trust_list_body(successor: Option<&[u8]>) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        v: u8,
        org: &'a str,
        serial: u64,
        issued_at: i64,
        anchors: Vec<serde_bytes::ByteBuf>,
        successor: Option<serde_bytes::ByteBuf>,
    }
    let mut out = Vec::new();
    ciborium::into_writer(
        &Body {
            v: 1,
            org: "north",
            serial: 1,
            issued_at: 0,
            anchors: vec![],
            successor: successor.map(|d| serde_bytes::ByteBuf::from(d.to_vec())),
        },
        &mut out,
    )
    .expect("CBOR");
    out
}

/// The relay operator cannot put a CA of its choosing in an organisation's
/// place: a replacement must be the successor that the organisation's trust
/// list, signed by its current CA, names (a CA rotation, §14.7).
#[tokio::test]
async fn a_ca_is_replaced_only_by_the_successor_its_trust_list_names() {
    let relay = start().await;
    let north = TestCa::new("north");
    create_org(&relay, "north", &north).await;
    let path = "/v1/admin/orgs/north/ca";
    let next = TestCa::new("north");
    let replace = |ca: &TestCa| json!({ "ca_certificate": ca.pem });
    let publish =
        |body: Vec<u8>, by: &TestCa| json!({"body": b64(&body), "signature": b64(&by.sign(&body))});
    let ca_of = |info: &[u8]| {
        serde_json::from_slice::<OrgInfo>(info)
            .expect("org info")
            .ca_certificate
            .map(|pem| pem_to_der(&pem))
    };

    // No trust list yet, then one that names no successor, then one that
    // names another CA: refused, and the CA stays.
    refused(
        put(&relay, path, replace(&next)).await,
        409,
        "successor_not_announced",
    );
    let trust_list = "/v1/admin/orgs/north/trust-list";
    let (status, _) = put(&relay, trust_list, publish(trust_list_body(None), &north)).await;
    assert_eq!(status, 204);
    refused(
        put(&relay, path, replace(&next)).await,
        409,
        "successor_not_announced",
    );
    let other = TestCa::new("north");
    let (status, _) = put(
        &relay,
        trust_list,
        publish(trust_list_body(Some(&other.der)), &north),
    )
    .await;
    assert_eq!(status, 204);
    refused(
        put(&relay, path, replace(&next)).await,
        409,
        "successor_not_announced",
    );
    let (_, info) = get(&relay, "/v1/orgs/north", None).await;
    assert_eq!(ca_of(&info), Some(north.der.clone()));

    // Named by a list the current CA signed: replaced; again: no change.
    let (status, _) = put(
        &relay,
        trust_list,
        publish(trust_list_body(Some(&next.der)), &north),
    )
    .await;
    assert_eq!(status, 204);
    // Not by the relay operator.
    let bytes = serde_json::to_vec(&replace(&next)).expect("json");
    refused(
        http(
            relay.server.addr(),
            "PUT",
            path,
            Some(&relay.admin_token),
            Some(&bytes),
        )
        .await,
        401,
        "unauthorized",
    );
    let (status, body) = put(&relay, path, replace(&next)).await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    let (_, info) = get(&relay, "/v1/orgs/north", None).await;
    assert_eq!(ca_of(&info), Some(next.der.clone()));
    // From now on north's admins sign with the new CA; the old one no
    // longer acts for north.
    refused(put(&relay, path, replace(&next)).await, 401, "unauthorized");
    uses(&relay, "north", &next);
    let (status, _) = put(&relay, path, replace(&next)).await;
    assert_eq!(status, 204);
    // Back to the old CA: no list names it.
    refused(
        put(&relay, path, replace(&north)).await,
        409,
        "successor_not_announced",
    );
}

/// An organisation created before organisations needed a CA gets its first
/// one from the relay operator, once: from then on only that CA's key acts
/// for it, and the token can neither replace it nor act for any other
/// organisation.
#[tokio::test]
async fn the_operator_gives_an_organisation_without_a_ca_its_first_one_only() {
    let relay = start().await;
    relay.legacy_org("plain");
    let north = TestCa::new("north");
    create_org(&relay, "north", &north).await;
    let first = TestCa::new("plain");
    let replace =
        |ca: &TestCa| serde_json::to_vec(&json!({ "ca_certificate": ca.pem })).expect("json");
    let operator = |path: &'static str, token: &str, body: Vec<u8>| {
        let addr = relay.server.addr();
        let token = token.to_owned();
        async move { http(addr, "PUT", path, Some(&token), Some(&body)).await }
    };

    // A wrong token, an unknown organisation, another organisation's CA.
    refused(
        operator("/v1/admin/orgs/plain/ca", "not-the-token", replace(&first)).await,
        401,
        "unauthorized",
    );
    refused(
        operator(
            "/v1/admin/orgs/east/ca",
            &relay.admin_token,
            replace(&first),
        )
        .await,
        404,
        "not_found",
    );
    refused(
        operator(
            "/v1/admin/orgs/plain/ca",
            &relay.admin_token,
            replace(&north),
        )
        .await,
        400,
        "bad_certificate",
    );
    // The token for anything else of the organisation: refused.
    let user = serde_json::to_vec(
        &json!({"user_id": "alice@plain", "display_name": "Alice", "role": "Nurse"}),
    )
    .expect("json");
    refused(
        http(
            relay.server.addr(),
            "POST",
            "/v1/admin/users",
            Some(&relay.admin_token),
            Some(&user),
        )
        .await,
        401,
        "unauthorized",
    );

    let (status, body) = operator(
        "/v1/admin/orgs/plain/ca",
        &relay.admin_token,
        replace(&first),
    )
    .await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    let (_, info) = get(&relay, "/v1/orgs/plain", None).await;
    let info: OrgInfo = serde_json::from_slice(&info).expect("OrgInfo");
    assert_eq!(
        info.ca_certificate.map(|pem| pem_to_der(&pem)),
        Some(first.der.clone())
    );

    // Once it has a CA, the token cannot replace it, even with the same one,
    // nor set north's.
    let other = TestCa::new("plain");
    for ca in [&other, &first] {
        refused(
            operator("/v1/admin/orgs/plain/ca", &relay.admin_token, replace(ca)).await,
            401,
            "unauthorized",
        );
    }
    refused(
        operator(
            "/v1/admin/orgs/north/ca",
            &relay.admin_token,
            replace(&TestCa::new("north")),
        )
        .await,
        401,
        "unauthorized",
    );
    // The organisation's own key acts for it now.
    uses(&relay, "plain", &first);
    let (status, body) = admin_request(&relay, "POST", "/v1/admin/users", Some(&user)).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
}

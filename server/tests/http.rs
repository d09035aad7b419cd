//! The plain-HTTP API: health, admin and enrolment, over a real socket.

mod common;

use cascade_protocol::frames::UserEntry;
use cascade_protocol::http::{EnrolResponse, EnrolmentToken};
use common::*;
use ed25519_dalek::SigningKey;
use serde_json::json;
use sha2::Digest as _;

fn public_key_hex() -> String {
    let key = SigningKey::from_bytes(&rand::random());
    hex::encode(key.verifying_key().to_bytes())
}

#[tokio::test]
async fn health_answers_ok() {
    let relay = start().await;
    let (status, body) = http(relay.server.addr(), "GET", "/health", None, None).await;
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    let (status, body) = http(relay.server.addr(), "GET", "/nowhere", None, None).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn only_the_relay_operator_creates_organisations_and_only_with_a_ca() {
    let relay = start().await;
    let org = json!({"org_id": "north", "display_name": "North Trust"});
    for bearer in [None, Some("wrong"), Some("")] {
        let (status, body) = post(&relay, "/v1/admin/orgs", bearer, org.clone()).await;
        assert_eq!(status, 401, "{bearer:?}");
        assert_eq!(error_code(&body), "unauthorized");
    }
    // An organisation without a CA could never be administered.
    let (status, body) = admin(&relay, "/v1/admin/orgs", org).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_request"));
    assert_eq!(relay.create_org("north").await.0, 201);
    // An organisation's key does not create organisations.
    relay.create_org("south").await;
    let body = br#"{"org_id": "east", "display_name": "East"}"#;
    let (status, _) = org_request(&relay, "north", "POST", "/v1/admin/orgs", Some(body)).await;
    assert_eq!(status, 401);
}

/// Everything done for an organisation is signed with its CA key: the
/// relay operator's token cannot do it, another organisation's key cannot,
/// and a signature over anything else, an old one or a replayed one is
/// refused.
#[tokio::test]
async fn an_organisations_admin_acts_for_it_alone() {
    let relay = start().await;
    relay.create_org("north").await;
    relay.create_org("south").await;
    let user = br#"{"user_id": "alice@north", "display_name": "Alice", "role": "Nurse"}"#;
    let path = "/v1/admin/users";
    let addr = relay.server.addr();

    // The operator's token, or nothing, is not an organisation's authority.
    for bearer in [Some(relay.admin_token.as_str()), None] {
        let (status, body) = http(addr, "POST", path, bearer, Some(user)).await;
        assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));
        let (status, _) = http(addr, "GET", "/v1/admin/orgs/north/users", bearer, None).await;
        assert_eq!(status, 401);
    }
    // South's admins cannot act for north.
    let (status, body) = org_request(&relay, "south", "POST", path, Some(user)).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));
    for read in ["users", "pending-devices"] {
        let read = format!("/v1/admin/orgs/north/{read}");
        let (status, body) = org_request(&relay, "south", "GET", &read, None).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (403, "forbidden"),
            "{read}"
        );
    }
    // A signature that does not cover this request.
    let tampered = br#"{"user_id": "alice@north", "display_name": "Mallory", "role": "Nurse"}"#;
    let header = relay.org_authorization("north", "POST", path, user);
    let (status, body) = http_authorized(addr, "POST", path, Some(&header), Some(tampered)).await;
    assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));
    let (status, _) = http_authorized(
        addr,
        "POST",
        "/v1/admin/enrolment-tokens",
        Some(&header),
        Some(user),
    )
    .await;
    assert_eq!(status, 401, "signed for another path");
    // Signed by a key that is not the organisation's CA.
    let forged = header.replacen("org=north", "org=south", 1);
    let (status, _) = http_authorized(addr, "POST", path, Some(&forged), Some(user)).await;
    assert_eq!(status, 401, "north's signature presented as south's");
    // Too old.
    let old = relay.org_authorization_at(
        "north",
        "POST",
        path,
        user,
        cascade_server::unix_now() - 600,
    );
    let (status, _) = http_authorized(addr, "POST", path, Some(&old), Some(user)).await;
    assert_eq!(status, 401, "ten minutes old");
    // Nothing was created by any of that.
    let (status, body) = admin_request(&relay, "GET", "/v1/admin/orgs/north/users", None).await;
    assert_eq!((status, body.as_slice()), (200, &b"[]"[..]));

    // Signed and fresh: done once, and the same request again is refused.
    let (status, _) = http_authorized(addr, "POST", path, Some(&header), Some(user)).await;
    assert_eq!(status, 201);
    let (status, body) = http_authorized(addr, "POST", path, Some(&header), Some(user)).await;
    assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));
    assert!(
        String::from_utf8_lossy(&body).contains("nonce"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (_, metrics) = http(addr, "GET", "/metrics", Some(&relay.admin_token), None).await;
    let metrics = String::from_utf8(metrics).expect("text");

    // Nor after the relay restarts: the nonces it saw are kept.
    let relay = relay.restart().await;
    let addr = relay.server.addr();
    let (status, body) = http_authorized(addr, "POST", path, Some(&header), Some(user)).await;
    assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));
    assert!(String::from_utf8_lossy(&body).contains("nonce"));
    let read = relay.org_authorization("north", "GET", "/v1/admin/orgs/north/users", b"");
    let (status, _) =
        http_authorized(addr, "GET", "/v1/admin/orgs/north/users", Some(&read), None).await;
    assert_eq!(status, 200, "a new signature is taken");
    for line in [
        "cascade_admin_refused_total{kind=\"replayed\"} 1",
        "cascade_admin_refused_total{kind=\"bad_signature\"} 3",
        "cascade_admin_refused_total{kind=\"stale\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

/// Another organisation's devices are unknown to an organisation's admins:
/// they cannot revoke or certify them, or learn that they exist.
#[tokio::test]
async fn an_organisations_admin_cannot_touch_another_organisations_devices() {
    let relay = start().await;
    relay.create_org("north").await;
    relay.create_org("south").await;
    let bob = relay.device_uncertified("bob@south");
    for action in ["revoke", "certificate"] {
        let path = format!("/v1/admin/devices/{}/{action}", bob.device_id);
        let body = br#"{"certificate": "-----BEGIN CERTIFICATE-----"}"#;
        let (status, body) = org_request(&relay, "north", "POST", &path, Some(body)).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (404, "not_found"),
            "{action}"
        );
    }
    let (mut client, _) = relay.online(&bob).await;
    client
        .request(cascade_protocol::frames::Request::Ping)
        .await
        .expect("bob is not revoked");
    // South's own admins can.
    let path = format!("/v1/admin/devices/{}/revoke", bob.device_id);
    assert_eq!(
        org_request(&relay, "south", "POST", &path, None).await.0,
        204
    );
}

#[tokio::test]
async fn an_admin_provisions_and_a_device_enrols_once() {
    let relay = start().await;
    let (status, _) = relay.create_org("north").await;
    assert_eq!(status, 201);
    let (status, body) = relay.create_org("north").await;
    assert_eq!((status, error_code(&body).as_str()), (409, "conflict"));

    let user = json!({"user_id": "alice@north", "display_name": "Alice", "role": "Staff nurse"});
    let (status, body) = admin(&relay, "/v1/admin/users", user.clone()).await;
    assert_eq!(status, 201);
    let entry: UserEntry = serde_json::from_slice(&body).expect("UserEntry");
    assert_eq!(entry.org_id.as_str(), "north");
    assert!(entry.devices.is_empty());
    let (status, _) = admin(&relay, "/v1/admin/users", user).await;
    assert_eq!(status, 409);
    let (status, body) = org_request(
        &relay,
        "north",
        "POST",
        "/v1/admin/users",
        Some(br#"{"user_id": "bob@south", "display_name": "Bob", "role": "Porter"}"#),
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));
    let (status, body) = org_request(
        &relay,
        "north",
        "POST",
        "/v1/admin/users",
        Some(br#"{"user_id": "Not A User", "display_name": "Bob", "role": "Porter"}"#),
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_request"));

    let (status, body) = admin(
        &relay,
        "/v1/admin/enrolment-tokens",
        json!({"user_id": "alice@north", "ttl_secs": null}),
    )
    .await;
    assert_eq!(status, 201);
    let token: EnrolmentToken = serde_json::from_slice(&body).expect("EnrolmentToken");
    assert_eq!(token.user_id.as_str(), "alice@north");
    assert!(token.expires_at > cascade_server::unix_now() + 71 * 3600);
    let (status, _) = admin(
        &relay,
        "/v1/admin/enrolment-tokens",
        json!({"user_id": "zed@north", "ttl_secs": 60}),
    )
    .await;
    assert_eq!(status, 404);

    // A bad key is refused without spending the token.
    let enrol = |key: String| json!({"token": token.token, "signature_key": key, "device_name": "Ward 7 desktop"});
    for bad_key in ["zz".to_string(), "00".repeat(32), "ab".repeat(31)] {
        let (status, body) = post(&relay, "/v1/enrol", None, enrol(bad_key)).await;
        assert_eq!((status, error_code(&body).as_str()), (400, "bad_request"));
    }
    let (status, body) = post(&relay, "/v1/enrol", None, enrol(public_key_hex())).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let enrolled: EnrolResponse = serde_json::from_slice(&body).expect("EnrolResponse");
    assert_eq!(enrolled.user_id.as_str(), "alice@north");
    assert_eq!(enrolled.org_id.as_str(), "north");
    assert_eq!(enrolled.display_name, "Alice");
    assert_eq!(enrolled.role, "Staff nurse");

    let (status, body) = post(&relay, "/v1/enrol", None, enrol(public_key_hex())).await;
    assert_eq!((status, error_code(&body).as_str()), (401, "invalid_token"));
    let unknown = json!({"token": "nope", "signature_key": public_key_hex(), "device_name": "x"});
    let (status, body) = post(&relay, "/v1/enrol", None, unknown).await;
    assert_eq!((status, error_code(&body).as_str()), (401, "invalid_token"));

    let (status, body) = admin_request(&relay, "GET", "/v1/admin/orgs/north/users", None).await;
    assert_eq!(status, 200);
    let users: Vec<UserEntry> = serde_json::from_slice(&body).expect("users");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].devices, vec![enrolled.device_id]);
    // Another organisation's users are not north's admins' to read.
    let (status, body) =
        org_request(&relay, "north", "GET", "/v1/admin/orgs/south/users", None).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));
}

#[tokio::test]
async fn an_expired_token_does_not_enrol() {
    let relay = start().await;
    relay.create_org("north").await;
    admin(
        &relay,
        "/v1/admin/users",
        json!({"user_id": "alice@north", "display_name": "Alice", "role": "Nurse"}),
    )
    .await;
    let (status, body) = admin(
        &relay,
        "/v1/admin/enrolment-tokens",
        json!({"user_id": "alice@north", "ttl_secs": 1}),
    )
    .await;
    assert_eq!(status, 201);
    let token: EnrolmentToken = serde_json::from_slice(&body).expect("token");
    // The token must expire by the relay's wall clock, which a test cannot
    // move, and nothing shows a token's state without spending it: wait out
    // its 1 s lifetime, plus a second for the clock's whole-second steps.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let request =
        json!({"token": token.token, "signature_key": public_key_hex(), "device_name": "x"});
    let (status, body) = post(&relay, "/v1/enrol", None, request).await;
    assert_eq!((status, error_code(&body).as_str()), (401, "invalid_token"));
    let (status, _) = admin(
        &relay,
        "/v1/admin/enrolment-tokens",
        json!({"user_id": "alice@north", "ttl_secs": 0}),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn bodies_over_64_kib_are_refused() {
    let relay = start().await;
    let big =
        json!({"org_id": "north", "display_name": "x".repeat(70 * 1024), "ca_certificate": null});
    let (status, body) = admin(&relay, "/v1/admin/orgs", big).await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&body), "payload_too_large");
    let (status, body) = post(
        &relay,
        "/v1/enrol",
        None,
        json!({"token": "t".repeat(70_000)}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "payload_too_large")
    );
    let (status, body) = http(
        relay.server.addr(),
        "POST",
        "/v1/enrol",
        None,
        Some(b"not json"),
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_request"));
}

#[tokio::test]
async fn the_admin_token_file_holds_the_token_and_is_private() {
    let relay = start().await;
    let path = relay.dir.path().join("admin-token");
    let on_disk = std::fs::read_to_string(&path).expect("token file");
    assert_eq!(on_disk.trim(), relay.admin_token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The store keeps only the hash.
    let hash = relay
        .server
        .state()
        .store()
        .admin_token_hash()
        .expect("read")
        .expect("set");
    assert_eq!(hash, cascade_server::token::token_hash(&relay.admin_token));
}

/// `GET /metrics` needs the relay operator's token and reports counts in
/// the Prometheus text format, with no identifier in it.
#[tokio::test]
async fn metrics_count_without_naming_anyone() {
    let relay = start().await;
    let (status, _) = http(relay.server.addr(), "GET", "/metrics", None, None).await;
    assert_eq!(status, 401);
    let alice = relay.device("alice@north");
    let (mut client, _) = relay.online(&alice).await;
    client
        .request(cascade_protocol::frames::Request::Ping)
        .await
        .expect("pong");
    let group = cascade_protocol::GroupId([9; 16]);
    let _ = client.send_message(group, 0, b"x").await;
    let (status, body) = http(
        relay.server.addr(),
        "GET",
        "/metrics",
        Some(&relay.admin_token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).expect("text");
    for line in [
        "cascade_requests_total{kind=\"Ping\"} 1",
        "cascade_requests_total{kind=\"SendMessage\"} 1",
        "cascade_refusals_total{kind=\"UnknownGroup\"} 1",
        "cascade_websockets_open 1",
        "cascade_devices_online 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    assert!(text.contains("cascade_store_flush_seconds_count"));
    assert!(text.contains("# EOF"));
    for secret in [
        "alice",
        "north",
        &alice.device_id.to_string(),
        &relay.admin_token,
    ] {
        assert!(!text.contains(secret), "{secret} appears in the metrics");
    }
}

/// Every admin action (and every enrolment) is appended to
/// `<data-dir>/audit.jsonl`, owner-only, with when, by what authority, what
/// and to what, and never a token.
#[tokio::test]
async fn admin_actions_are_written_to_the_audit_log() {
    let relay = start().await;
    relay.create_org("north").await;
    admin(
        &relay,
        "/v1/admin/users",
        json!({"user_id": "alice@north", "display_name": "Alice", "role": "Nurse"}),
    )
    .await;
    let (_, body) = admin(
        &relay,
        "/v1/admin/enrolment-tokens",
        json!({"user_id": "alice@north", "ttl_secs": null}),
    )
    .await;
    let token: EnrolmentToken = serde_json::from_slice(&body).expect("token");
    let (status, body) = post(
        &relay,
        "/v1/enrol",
        None,
        json!({"token": token.token, "signature_key": public_key_hex(), "device_name": "Ward 7 desktop"}),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let enrolled: EnrolResponse = serde_json::from_slice(&body).expect("enrolled");
    let (status, _) = admin_request(
        &relay,
        "POST",
        &format!("/v1/admin/devices/{}/revoke", enrolled.device_id),
        None,
    )
    .await;
    assert_eq!(status, 204);

    let path = relay.dir.path().join(cascade_server::audit::AUDIT_FILE);
    let text = std::fs::read_to_string(&path).expect("audit log");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "org.create",
            "user.create",
            "enrolment_token.issue",
            "device.enrol",
            "device.revoke"
        ]
    );
    assert_eq!(records[0]["by"], "relay-admin-token");
    for i in [1, 2, 4] {
        let by = records[i]["by"].as_str().expect("by");
        assert!(by.starts_with("org:north ca-sha256:"), "{by}");
        assert_eq!(by.len(), "org:north ca-sha256:".len() + 95, "{by}");
    }
    assert_eq!(records[3]["by"], "enrolment-token");
    assert_eq!(records[3]["device"], enrolled.device_id.to_string());
    assert!(records.iter().all(|r| r["at"].as_u64().is_some()));
    assert!(!text.contains(&token.token) && !text.contains(&relay.admin_token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// A wipe order: only the device's own organisation's admins give it,
/// only its CA's signature over an order naming that device counts, and it
/// revokes the device at once; the relay serves it to anyone who asks, and
/// keeps only a confirmation signed with the device's own enrolled key.
#[tokio::test]
async fn a_wipe_order_is_checked_kept_and_confirmed_by_the_device_alone() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let relay = start().await;
    relay.create_org("north").await;
    relay.create_org("south").await;
    let alice = relay.device("alice@north");
    let alice_2 = relay.device("alice@north");
    let bob = relay.device("bob@south");
    let addr = relay.server.addr();
    let order_path = format!("/v1/admin/devices/{}/wipe", alice.device_id);
    let fetch = format!("/v1/orgs/north/devices/{}/wipe", alice.device_id);
    let confirm = format!("/v1/orgs/north/devices/{}/wiped", alice.device_id);
    let payload =
        |order_body: &[u8]| cascade_protocol::auth::wiped_payload(&alice.device_id, order_body);
    let confirmation = |key: &SigningKey, order_body: &[u8]| {
        use ed25519_dalek::Signer as _;
        serde_json::to_vec(&json!({
            "signature": b64.encode(key.sign(&payload(order_body)).to_bytes())
        }))
        .expect("JSON")
    };
    let (status, body) = http(addr, "GET", &fetch, None, None).await;
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));

    let order = relay.wipe_order("north", alice.device_id, "north");
    let order_body = {
        let json: serde_json::Value = serde_json::from_slice(&order).expect("JSON");
        b64.decode(json["body"].as_str().expect("body"))
            .expect("base64")
    };
    let (status, body) = http(
        addr,
        "POST",
        &confirm,
        None,
        Some(&confirmation(&alice.key, &order_body)),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "not_found"),
        "no order yet"
    );
    // South's admins do not know North's devices, whatever they send.
    let (status, body) = org_request(&relay, "south", "PUT", &order_path, Some(&order)).await;
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    // North's admins send only what North's CA signed, for that device.
    for (why, doc, code) in [
        (
            "signed by South's CA",
            relay.wipe_order("north", alice.device_id, "south"),
            "bad_signature",
        ),
        (
            "for another device",
            relay.wipe_order("north", alice_2.device_id, "north"),
            "bad_request",
        ),
        (
            "for another organisation",
            relay.wipe_order("south", alice.device_id, "north"),
            "bad_request",
        ),
        (
            "not an order",
            relay.signed_json("north", &[0xa1, 0x61, 0x76, 0x01]),
            "bad_request",
        ),
    ] {
        let (status, body) = org_request(&relay, "north", "PUT", &order_path, Some(&doc)).await;
        assert_eq!((status, error_code(&body).as_str()), (400, code), "{why}");
    }
    let (mut online, _) = relay.online(&alice).await;
    let (status, body) = org_request(&relay, "north", "PUT", &order_path, Some(&order)).await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    assert!(online.closed().await.is_some(), "her connection is dropped");
    let mut again = Client::connect(&relay.server.ws_url()).await;
    assert_eq!(
        again.authenticate(&alice).await,
        Err(cascade_protocol::ProtocolError::AuthenticationFailed),
        "and her login refused"
    );
    let (status, body) = http(addr, "GET", &fetch, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("JSON"),
        serde_json::from_slice::<serde_json::Value>(&order).expect("JSON"),
        "the order is served as signed"
    );
    // Only her own key confirms, over the order she was given.
    for (why, body, code) in [
        (
            "Bob's key",
            confirmation(&bob.key, &order_body),
            "bad_signature",
        ),
        (
            "another order",
            confirmation(&alice.key, b"another"),
            "bad_signature",
        ),
        (
            "not base64",
            br#"{"signature": "!"}"#.to_vec(),
            "bad_request",
        ),
        (
            "not a signature",
            br#"{"signature": "AAAA"}"#.to_vec(),
            "bad_signature",
        ),
    ] {
        let (status, answer) = http(addr, "POST", &confirm, None, Some(&body)).await;
        assert_eq!((status, error_code(&answer).as_str()), (400, code), "{why}");
    }
    let listed = wipes(&relay).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].device_id, alice.device_id);
    assert_eq!(listed[0].confirmed_at, None, "nothing forged was kept");
    let (status, body) =
        org_request(&relay, "south", "GET", "/v1/admin/orgs/north/wipes", None).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));
    let (status, _) = http(
        addr,
        "POST",
        &confirm,
        None,
        Some(&confirmation(&alice.key, &order_body)),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = http(
        addr,
        "POST",
        &confirm,
        None,
        Some(&confirmation(&alice.key, &order_body)),
    )
    .await;
    assert_eq!(status, 204, "again: the first stays");
    let listed = wipes(&relay).await;
    assert!(listed[0].confirmed_at.is_some());
    assert!(listed[0].certificate.is_some());
    let text = std::fs::read_to_string(relay.dir.path().join(cascade_server::audit::AUDIT_FILE))
        .expect("audit log");
    let actions: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON")["action"].to_string())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| a.contains("device.wipe")).count(),
        2,
        "the order and the confirmation: {actions:?}"
    );
    // Her other device and other organisations carry on.
    for device in [&alice_2, &bob] {
        let (mut client, _) = relay.online(device).await;
        client
            .request(cascade_protocol::frames::Request::Ping)
            .await
            .expect("unaffected");
    }
}

/// North's wipe orders, as its admins list them.
async fn wipes(relay: &Relay) -> Vec<cascade_protocol::http::WipeStatus> {
    let (status, body) =
        org_request(relay, "north", "GET", "/v1/admin/orgs/north/wipes", None).await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).expect("WipeStatus list")
}

/// Appointed admins (protocol §3.2.2): once the organisation's CA signs a
/// roster naming a person's key, that key acts for the organisation, and
/// the audit log names the person. Nothing else makes a key an admin: a
/// roster the CA did not sign, another organisation's, an older one, one
/// sent by an appointed admin, an expired or dismissed appointment.
#[tokio::test]
async fn appointed_admins_act_with_their_own_keys_and_the_audit_log_names_them() {
    let relay = start().await;
    relay.create_org("north").await;
    relay.create_org("south").await;
    let addr = relay.server.addr();
    let dana = SigningKey::from_bytes(&rand::random());
    let erin = SigningKey::from_bytes(&rand::random());
    let now = i64::try_from(cascade_server::unix_now()).expect("now");
    let by = |id: &str, key: &SigningKey, method: &str, path: &str, body: &[u8]| {
        admin_authorization("north", id, key, method, path, body)
    };
    let users = "/v1/admin/users";
    let alice = br#"{"user_id": "alice@north", "display_name": "Alice", "role": "Nurse"}"#;
    let roster_path = "/v1/admin/orgs/north/admins";

    // No roster yet: Dana's key is nobody's.
    let header = by("dana", &dana, "POST", users, alice);
    let (status, body) = http_authorized(addr, "POST", users, Some(&header), Some(alice)).await;
    assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));

    // Rosters the relay refuses, each with its reason.
    let dana_erin = [
        ("dana", "Dana Price", &dana, now + 3600),
        ("erin", "Erin Cole", &erin, now - 1),
    ];
    let refused: [(&str, Vec<u8>, (u16, &str)); 4] = [
        (
            "signed by south's CA",
            relay.admin_roster("south", "north", 1, &dana_erin),
            (400, "bad_signature"),
        ),
        (
            "south's roster",
            relay.admin_roster("north", "south", 1, &dana_erin),
            (400, "bad_request"),
        ),
        (
            "not a roster",
            relay.wipe_order("north", "0".repeat(32).parse().expect("id"), "north"),
            (400, "bad_request"),
        ),
        (
            "an id twice",
            relay.admin_roster("north", "north", 1, &[dana_erin[0], dana_erin[0]]),
            (400, "bad_request"),
        ),
    ];
    for (what, roster, expected) in refused {
        let (status, body) = org_request(&relay, "north", "PUT", roster_path, Some(&roster)).await;
        assert_eq!((status, error_code(&body).as_str()), expected, "{what}");
    }
    let roster = relay.admin_roster("north", "north", 1, &dana_erin);
    let (status, body) = org_request(&relay, "south", "PUT", roster_path, Some(&roster)).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));

    // The CA appoints Dana (and Erin, whose term is over).
    let (status, body) = org_request(&relay, "north", "PUT", roster_path, Some(&roster)).await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    let (status, body) = org_request(&relay, "north", "PUT", roster_path, Some(&roster)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (409, "conflict"),
        "the same serial again"
    );

    // Dana acts for north with her own key, once per signature.
    let (status, body) = http_authorized(addr, "POST", users, Some(&header), Some(alice)).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let (status, _) = http_authorized(addr, "POST", users, Some(&header), Some(alice)).await;
    assert_eq!(status, 401, "replayed");
    let read = by("dana", &dana, "GET", roster_path, b"");
    let (status, body) = http_authorized(addr, "GET", roster_path, Some(&read), None).await;
    assert_eq!(status, 200);
    let served: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let put: serde_json::Value = serde_json::from_slice(&roster).expect("JSON");
    assert_eq!(served["body"], put["body"]);
    assert_eq!(served["signature"], put["signature"]);

    // But not for south, not as the CA, and nobody else with her id.
    let bob = br#"{"user_id": "bob@south", "display_name": "Bob", "role": "Nurse"}"#;
    let header = by("dana", &dana, "POST", users, bob);
    let (status, body) = http_authorized(addr, "POST", users, Some(&header), Some(bob)).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));
    let header = admin_authorization("south", "dana", &dana, "POST", users, bob);
    let (status, _) = http_authorized(addr, "POST", users, Some(&header), Some(bob)).await;
    assert_eq!(status, 401, "south appointed nobody");
    let newer = relay.admin_roster("north", "north", 2, &[dana_erin[0]]);
    let header = by("dana", &dana, "PUT", roster_path, &newer);
    let (status, body) =
        http_authorized(addr, "PUT", roster_path, Some(&header), Some(&newer)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "ca_only"),
        "an admin cannot appoint"
    );
    let ca = br#"{"ca_certificate": "x"}"#;
    let ca_path = "/v1/admin/orgs/north/ca";
    let header = by("dana", &dana, "PUT", ca_path, ca);
    let (status, body) = http_authorized(addr, "PUT", ca_path, Some(&header), Some(ca)).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "ca_only"));
    let carol = br#"{"user_id": "carol@north", "display_name": "Carol", "role": "Nurse"}"#;
    for (who, id, key) in [
        ("expired", "erin", &erin),
        ("unknown", "frank", &dana),
        ("Erin's key as Dana", "dana", &erin),
    ] {
        let header = by(id, key, "POST", users, carol);
        let (status, body) = http_authorized(addr, "POST", users, Some(&header), Some(carol)).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (401, "unauthorized"),
            "{who}"
        );
    }

    // Dismissed: a newer roster without Dana.
    let without = relay.admin_roster("north", "north", 2, &[dana_erin[1]]);
    let (status, _) = org_request(&relay, "north", "PUT", roster_path, Some(&without)).await;
    assert_eq!(status, 204);
    let header = by("dana", &dana, "POST", users, carol);
    let (status, _) = http_authorized(addr, "POST", users, Some(&header), Some(carol)).await;
    assert_eq!(status, 401, "dismissed");

    // Only alice was created, and the audit log says by whom.
    let (_, body) = admin_request(&relay, "GET", "/v1/admin/orgs/north/users", None).await;
    let listed: Vec<UserEntry> = serde_json::from_slice(&body).expect("users");
    assert_eq!(listed.len(), 1);
    let path = relay.dir.path().join(cascade_server::audit::AUDIT_FILE);
    let text = std::fs::read_to_string(&path).expect("audit log");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .filter(|r: &serde_json::Value| r["action"] != "org.create")
        .collect();
    let seen: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["action"].as_str().expect("action"),
                r["by"].as_str().expect("by"),
            )
        })
        .collect();
    let dana_by = format!(
        "org:north admin:dana (Dana Price) key-sha256:{}",
        hex::encode(sha2::Sha256::digest(dana.verifying_key().to_bytes()))
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].0, "admin_roster.store");
    assert!(seen[0].1.starts_with("org:north ca-sha256:"), "{seen:?}");
    assert_eq!(seen[1], ("user.create", dana_by.as_str()));
    assert_eq!(seen[2].0, "admin_roster.store");
    assert_eq!(records[2]["admins"], serde_json::json!(["erin"]));
    let (_, metrics) = http(addr, "GET", "/metrics", Some(&relay.admin_token), None).await;
    let metrics = String::from_utf8(metrics).expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l == "cascade_admin_refused_total{kind=\"not_appointed\"} 5"),
        "{metrics}"
    );
}

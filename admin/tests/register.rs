//! `CaDir::register` (`cascade admin create-org`) against a real relay in
//! process: a new organisation, an older relay's organisation without a
//! CA, and one that has its CA already.

use cascade_admin::{AdminClient, AdminError, CaDir, CaDirError, Registered};
use cascade_protocol::OrgId;
use cascade_server::store::Org;
use cascade_server::Server;

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
    .expect("in range")
}

fn conflict(result: Result<Registered, CaDirError>) -> String {
    match result {
        Err(CaDirError::Admin(AdminError::Refused {
            status: 409,
            code,
            message,
        })) if code == "conflict" => message,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn create_org_registers_a_new_organisation_or_gives_an_old_one_its_first_ca() {
    let data = tempfile::tempdir().expect("temp dir");
    let (server, token) = Server::open(data.path()).expect("open relay");
    let token = token.created.expect("a new relay's token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let relay = server.spawn(listener).expect("spawn");
    // An organisation an older relay registered without a CA.
    let plain = OrgId::new("plain").expect("valid");
    relay
        .state()
        .store()
        .create_org(&Org {
            org_id: plain.clone(),
            display_name: "Plain Trust".into(),
            created_at: 0,
            ca_certificate: None,
        })
        .expect("created");
    let url = format!("http://{}", relay.addr());
    let operator = AdminClient::new(&url, &token).expect("client");
    let cas = tempfile::tempdir().expect("temp dir");

    let north = OrgId::new("north").expect("valid");
    let north_ca = CaDir::create(cas.path().join("north"), &north, "North", now(), 30).expect("CA");
    assert_eq!(
        north_ca
            .register(&operator, &north, "North")
            .await
            .expect("registered"),
        Registered::Created
    );
    assert!(conflict(north_ca.register(&operator, &north, "North").await).contains("with its CA"));

    let plain_ca = CaDir::create(cas.path().join("plain"), &plain, "Plain", now(), 30).expect("CA");
    assert_eq!(
        plain_ca
            .register(&operator, &plain, "Plain")
            .await
            .expect("CA added"),
        Registered::CaAdded
    );
    // Once only: another CA for plain is a conflict, and the first stays.
    let other = CaDir::create(cas.path().join("other"), &plain, "Plain", now(), 30).expect("CA");
    conflict(other.register(&operator, &plain, "Plain").await);
    let relay_ca = relay
        .state()
        .store()
        .get_org(&plain)
        .expect("read")
        .and_then(|org| org.ca_certificate)
        .expect("a CA");
    assert_eq!(
        relay_ca.to_vec(),
        cascade_core::identity::pem_to_der(&plain_ca.ca().expect("CA").cert_pem()).expect("DER")
    );
    // Its admins act with that key now.
    let users = plain_ca
        .users(&AdminClient::without_token(&url, None).expect("client"))
        .await
        .expect("plain's users");
    assert!(users.is_empty());
}

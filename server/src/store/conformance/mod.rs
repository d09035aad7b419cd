//! The conformance suite every [`Store`] backend must pass.
//!
//! A backend provides a [`Harness`] and expands
//! [`store_conformance_tests!`](crate::store_conformance_tests) in a test
//! module, which makes one `#[test]` per case; [`run_all`] runs every case in
//! one go. The cases panic on a violation, like any test.

use std::sync::Arc;

use cascade_protocol::frames::Bytes;
use cascade_protocol::limits::MAX_KEY_PACKAGE_STOCK;
use cascade_protocol::{DeviceId, GroupId, OrgId, UserId};

mod groups;
pub use self::groups::*;

use super::{
    ApplicationWrite, CommitWrite, Device, EnrolmentTokenRecord, KeyPackageStock, NewDevice, Org,
    Store, StoreError, TrustList, User, Wipe, WipeConfirmed,
};

/// Opens stores of one backend for the suite.
pub trait Harness {
    /// A new, empty store.
    fn fresh(&mut self) -> Arc<dyn Store>;

    /// Opens again the store that [`Harness::fresh`] returned last, after the
    /// suite dropped every handle to it (and flushed it).
    fn reopen(&mut self) -> Arc<dyn Store>;
}

/// Expands to one `#[test]` per conformance case, each with a harness made
/// by evaluating `$harness`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($harness:expr) => {
        $crate::store_conformance_tests!(@cases $harness;
            admin_token_hash,
            org_user_device_crud,
            enrolment_tokens_are_one_time_and_expire,
            key_packages_are_claimed_fifo_then_last_resort,
            groups_sequence_commits_at_the_right_epoch,
            external_commit_echoes_to_the_joiner,
            groups_are_found_by_member_device,
            queues_keep_order_and_ack_removes,
            queue_limit_refuses_without_writing,
            a_device_reads_only_while_a_member,
            stopping_delivery_drops_the_backlog_until_a_resync,
            idle_devices_are_found_by_last_seen,
            org_ca_certificate_is_kept,
            device_certificates_end_pending,
            trust_lists_are_kept_per_org,
            admin_rosters_are_kept_per_org_apart_from_the_lists,
            admin_nonces_are_kept_until_their_time,
            key_packages_can_be_withdrawn,
            org_ca_can_be_replaced,
            push_tokens_are_kept,
            wipe_orders_revoke_and_keep_the_first_confirmation,
            state_survives_reopen
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let mut harness = $harness;
                $crate::store::conformance::$case(&mut harness);
            }
        )*
    };
}

/// Runs every case.
pub fn run_all(h: &mut dyn Harness) {
    admin_token_hash(h);
    org_user_device_crud(h);
    enrolment_tokens_are_one_time_and_expire(h);
    key_packages_are_claimed_fifo_then_last_resort(h);
    groups_sequence_commits_at_the_right_epoch(h);
    external_commit_echoes_to_the_joiner(h);
    groups_are_found_by_member_device(h);
    queues_keep_order_and_ack_removes(h);
    targeted_messages_reach_only_their_devices(h);
    queue_limit_refuses_without_writing(h);
    a_device_reads_only_while_a_member(h);
    stopping_delivery_drops_the_backlog_until_a_resync(h);
    idle_devices_are_found_by_last_seen(h);
    org_ca_certificate_is_kept(h);
    device_certificates_end_pending(h);
    trust_lists_are_kept_per_org(h);
    admin_rosters_are_kept_per_org_apart_from_the_lists(h);
    admin_nonces_are_kept_until_their_time(h);
    key_packages_can_be_withdrawn(h);
    org_ca_can_be_replaced(h);
    push_tokens_are_kept(h);
    wipe_orders_revoke_and_keep_the_first_confirmation(h);
    state_survives_reopen(h);
}

/// A device's push token is stored, replaced and cleared.
pub fn push_tokens_are_kept(h: &mut dyn Harness) {
    let store = h.fresh();
    store.create_org(&org("north")).expect("org");
    let d = enrolled(&*store, "alice@north", 1);
    assert_eq!(
        store
            .get_device(&d.device_id)
            .expect("read")
            .expect("some")
            .push_token,
        None
    );
    store
        .set_push_token(&d.device_id, Some("apns:1"))
        .expect("set");
    store
        .set_push_token(&d.device_id, Some("apns:2"))
        .expect("replace");
    assert_eq!(
        store
            .get_device(&d.device_id)
            .expect("read")
            .expect("some")
            .push_token
            .as_deref(),
        Some("apns:2")
    );
    store.set_push_token(&d.device_id, None).expect("clear");
    assert_eq!(
        store
            .get_device(&d.device_id)
            .expect("read")
            .expect("some")
            .push_token,
        None
    );
    assert!(matches!(
        store.set_push_token(&DeviceId([9; 16]), Some("x")),
        Err(StoreError::NotFound)
    ));
}

/// A wipe order revokes its device and is kept with it; the first order
/// and the device's first confirmation stay (the device confirms the order
/// it saw).
pub fn wipe_orders_revoke_and_keep_the_first_confirmation(h: &mut dyn Harness) {
    let store = h.fresh();
    store.create_org(&org("north")).expect("org");
    let d = enrolled(&*store, "alice@north", 1);
    let other = enrolled(&*store, "alice@north", 2);
    let order = |n: u8| Wipe {
        body: Bytes::from(vec![n; 8]),
        signature: Bytes::from(vec![n; 64]),
        co_signature: None,
        ordered_at: 1_700_000_000 + u64::from(n),
        confirmed: None,
    };
    let confirmed = |n: u8| WipeConfirmed {
        at: 1_700_000_100 + u64::from(n),
        signature: Bytes::from(vec![n; 64]),
    };
    let read = |id: &DeviceId| store.get_device(id).expect("read").expect("some");
    assert!(
        matches!(
            store.confirm_wipe(&d.device_id, &confirmed(1)),
            Err(StoreError::NotFound)
        ),
        "no order, nothing to confirm"
    );
    store.order_wipe(&d.device_id, &order(1)).expect("order");
    let got = read(&d.device_id);
    assert!(got.revoked);
    assert_eq!(got.wipe, Some(order(1)));
    store.order_wipe(&d.device_id, &order(2)).expect("again");
    assert_eq!(
        read(&d.device_id).wipe,
        Some(order(1)),
        "the first order stays"
    );
    store
        .confirm_wipe(&d.device_id, &confirmed(1))
        .expect("confirm");
    store
        .confirm_wipe(&d.device_id, &confirmed(2))
        .expect("idempotent");
    store.order_wipe(&d.device_id, &order(3)).expect("after");
    assert_eq!(
        read(&d.device_id).wipe,
        Some(Wipe {
            confirmed: Some(confirmed(1)),
            ..order(1)
        }),
        "the order and its first confirmation stay"
    );
    assert_eq!(read(&other.device_id), other, "another device is untouched");
    assert!(matches!(
        store.order_wipe(&DeviceId([9; 16]), &order(1)),
        Err(StoreError::NotFound)
    ));
}

/// A CA rotation replaces the organisation's CA certificate.
pub fn org_ca_can_be_replaced(h: &mut dyn Harness) {
    let store = h.fresh();
    let o = org("north");
    store.create_org(&o).expect("create");
    store.set_org_ca(&o.org_id, b"new-ca").expect("replace");
    let got = store.get_org(&o.org_id).expect("read").expect("exists");
    assert_eq!(
        got.ca_certificate.map(|c| c.to_vec()),
        Some(b"new-ca".to_vec())
    );
    assert_eq!(got.display_name, o.display_name);
    assert!(matches!(
        store.set_org_ca(&OrgId::new("nowhere").expect("valid"), b"x"),
        Err(StoreError::NotFound)
    ));
}

/// Withdrawing a device's KeyPackages empties its stock and last resort,
/// touches no other device, and new uploads work afterwards.
pub fn key_packages_can_be_withdrawn(h: &mut dyn Harness) {
    let store = h.fresh();
    let (d, other) = (DeviceId([1; 16]), DeviceId([2; 16]));
    store
        .put_key_packages(&d, &[b"old-a", b"old-b"], Some(b"old-last"))
        .expect("put");
    store.put_key_packages(&other, &[b"x"], None).expect("put");
    store.withdraw_key_packages(&d).expect("withdraw");
    let stock = store.key_package_stock(&d).expect("stock");
    assert_eq!((stock.stock, stock.has_last_resort), (0, false));
    assert_eq!(store.claim_key_package(&d).expect("claim"), None);
    assert_eq!(store.key_package_stock(&other).expect("stock").stock, 1);
    store
        .withdraw_key_packages(&DeviceId([9; 16]))
        .expect("a device with none is fine");
    store
        .put_key_packages(&d, &[b"new-a"], Some(b"new-last"))
        .expect("put");
    let c = store.claim_key_package(&d).expect("claim").expect("some");
    assert_eq!(c.key_package, b"new-a");
}

pub(crate) const NOW: u64 = 1_700_000_000;

fn org(id: &str) -> Org {
    Org {
        org_id: OrgId::new(id).expect("valid org id"),
        display_name: format!("Org {id}"),
        created_at: NOW,
        ca_certificate: None,
    }
}

fn user(id: &str) -> User {
    User {
        user_id: UserId::new(id).expect("valid user id"),
        display_name: format!("User {id}"),
        role: "Staff nurse".into(),
        created_at: NOW,
    }
}

fn token_hash(n: u8) -> [u8; 32] {
    [n; 32]
}

fn new_device(n: u8) -> NewDevice {
    NewDevice {
        device_id: DeviceId([n; 16]),
        name: format!("device {n}"),
        signature_key: Bytes::from(vec![n; 32]),
        enrolled_at: NOW,
    }
}

/// Creates org `o`, user `u@o` and enrols device `n` for it.
pub(crate) fn enrolled(store: &dyn Store, user_id: &str, n: u8) -> Device {
    let user_id = UserId::new(user_id).expect("valid user id");
    match store.create_org(&org(user_id.org().as_str())) {
        Ok(()) | Err(StoreError::AlreadyExists) => {}
        Err(e) => panic!("create org: {e}"),
    }
    match store.create_user(&user(user_id.as_str())) {
        Ok(()) | Err(StoreError::AlreadyExists) => {}
        Err(e) => panic!("create user: {e}"),
    }
    let record = EnrolmentTokenRecord {
        user_id,
        expires_at: NOW + 60,
        used: false,
    };
    store
        .put_enrolment_token(&token_hash(n), &record)
        .expect("put token");
    store
        .enrol_device(&token_hash(n), NOW, &new_device(n))
        .expect("enrol")
}

pub(crate) fn group_id(n: u8) -> GroupId {
    GroupId([n; 16])
}

pub(crate) fn app(store: &dyn Store, group: GroupId, sender: DeviceId, body: &[u8]) -> u64 {
    store
        .append_application(&ApplicationWrite {
            group_id: group,
            sender,
            message: body,
            leave_request: false,
            to: None,
        })
        .expect("append application")
        .seq
}

/// The admin token hash is unset, then set, then replaced.
pub fn admin_token_hash(h: &mut dyn Harness) {
    let store = h.fresh();
    assert_eq!(store.admin_token_hash().expect("read"), None);
    store.set_admin_token_hash(&[1; 32]).expect("set");
    assert_eq!(store.admin_token_hash().expect("read"), Some([1; 32]));
    store.set_admin_token_hash(&[2; 32]).expect("replace");
    assert_eq!(store.admin_token_hash().expect("read"), Some([2; 32]));
}

/// Organisations, users and devices are created once, found, listed per
/// organisation and revoked.
pub fn org_user_device_crud(h: &mut dyn Harness) {
    let store = h.fresh();
    let north = org("north");
    store.create_org(&north).expect("create org");
    assert_eq!(store.create_org(&north), Err(StoreError::AlreadyExists));
    assert_eq!(store.get_org(&north.org_id).expect("get"), Some(north));
    assert_eq!(
        store
            .get_org(&OrgId::new("south").expect("valid"))
            .expect("get"),
        None
    );

    assert_eq!(
        store.create_user(&user("alice@south")),
        Err(StoreError::NotFound),
        "a user needs its organisation"
    );
    store.create_org(&org("north2")).expect("create org");
    for id in ["bob@north", "alice@north", "carol@north2"] {
        store.create_user(&user(id)).expect("create user");
    }
    assert_eq!(
        store.create_user(&user("alice@north")),
        Err(StoreError::AlreadyExists)
    );
    let alice = user("alice@north");
    assert_eq!(store.get_user(&alice.user_id).expect("get"), Some(alice));
    let listed: Vec<String> = store
        .list_users(&OrgId::new("north").expect("valid"))
        .expect("list")
        .into_iter()
        .map(|u| u.user_id.to_string())
        .collect();
    assert_eq!(listed, ["alice@north", "bob@north"]);

    let d1 = enrolled(&*store, "alice@north", 1);
    let d2 = enrolled(&*store, "alice@north", 2);
    assert_eq!(d1.user_id.as_str(), "alice@north");
    assert_eq!(d1.signature_key.as_slice(), &[1; 32]);
    assert!(!d1.revoked);
    assert_eq!(
        store.get_device(&d1.device_id).expect("get"),
        Some(d1.clone())
    );
    assert_eq!(store.get_device(&DeviceId([9; 16])).expect("get"), None);
    let devices = store.devices_of_user(&d1.user_id).expect("devices");
    assert_eq!(devices, vec![d1.clone(), d2.clone()]);
    assert!(store
        .devices_of_user(&UserId::new("bob@north").expect("valid"))
        .expect("devices")
        .is_empty());

    store.revoke_device(&d2.device_id).expect("revoke");
    let revoked = store
        .get_device(&d2.device_id)
        .expect("get")
        .expect("exists");
    assert!(revoked.revoked);
    assert_eq!(
        store.revoke_device(&DeviceId([9; 16])),
        Err(StoreError::NotFound)
    );
}

/// A token enrols exactly one device, and never once expired or unknown.
pub fn enrolment_tokens_are_one_time_and_expire(h: &mut dyn Harness) {
    let store = h.fresh();
    store.create_org(&org("north")).expect("org");
    store.create_user(&user("alice@north")).expect("user");
    let record = EnrolmentTokenRecord {
        user_id: UserId::new("alice@north").expect("valid"),
        expires_at: NOW + 10,
        used: false,
    };
    store
        .put_enrolment_token(&token_hash(1), &record)
        .expect("token 1");
    store
        .put_enrolment_token(&token_hash(2), &record)
        .expect("token 2");

    assert_eq!(
        store.enrolment_token(&token_hash(1)).expect("read"),
        Some(record.clone()),
        "read without spending"
    );
    assert_eq!(store.enrolment_token(&token_hash(7)).expect("read"), None);
    let device = store
        .enrol_device(&token_hash(1), NOW, &new_device(1))
        .expect("first use");
    assert_eq!(device.user_id, record.user_id);
    assert!(store
        .enrolment_token(&token_hash(1))
        .expect("read")
        .is_some_and(|t| t.used));
    assert_eq!(
        store.enrol_device(&token_hash(1), NOW, &new_device(2)),
        Err(StoreError::InvalidToken),
        "second use"
    );
    assert_eq!(
        store.enrol_device(&token_hash(2), NOW + 10, &new_device(3)),
        Err(StoreError::InvalidToken),
        "expired"
    );
    assert_eq!(
        store.enrol_device(&token_hash(7), NOW, &new_device(4)),
        Err(StoreError::InvalidToken),
        "unknown"
    );
    for n in 2..=4 {
        assert_eq!(
            store.get_device(&DeviceId([n; 16])).expect("get"),
            None,
            "a refused enrolment creates no device"
        );
    }
    // Token 2 is still usable before expiry, but the device id is taken.
    assert_eq!(
        store.enrol_device(&token_hash(2), NOW, &new_device(1)),
        Err(StoreError::AlreadyExists)
    );
    store
        .enrol_device(&token_hash(2), NOW + 9, &new_device(5))
        .expect("token 2 was not spent by the failed attempt");
}

/// Single-use KeyPackages come out first in, first out; then the last
/// resort, which is never consumed; the stock is capped.
pub fn key_packages_are_claimed_fifo_then_last_resort(h: &mut dyn Harness) {
    let store = h.fresh();
    let d = DeviceId([1; 16]);
    let empty = KeyPackageStock {
        stock: 0,
        has_last_resort: false,
    };
    assert_eq!(store.key_package_stock(&d).expect("stock"), empty);
    assert_eq!(store.claim_key_package(&d).expect("claim"), None);

    let stock = store
        .put_key_packages(&d, &[b"kp-a", b"kp-b"], Some(b"last-1"))
        .expect("put");
    assert_eq!(stock, 2);
    assert_eq!(
        store.put_key_packages(&d, &[b"kp-c"], None).expect("put"),
        3
    );
    assert_eq!(
        store.key_package_stock(&d).expect("stock"),
        KeyPackageStock {
            stock: 3,
            has_last_resort: true
        }
    );
    for (expected, left) in [(&b"kp-a"[..], 2), (b"kp-b", 1), (b"kp-c", 0)] {
        let claimed = store.claim_key_package(&d).expect("claim").expect("some");
        assert_eq!(claimed.key_package, expected);
        assert!(!claimed.last_resort);
        assert_eq!(claimed.stock, left);
    }
    for _ in 0..2 {
        let claimed = store.claim_key_package(&d).expect("claim").expect("some");
        assert_eq!(claimed.key_package, b"last-1");
        assert!(claimed.last_resort);
        assert_eq!(claimed.stock, 0);
    }
    store
        .put_key_packages(&d, &[], Some(b"last-2"))
        .expect("rotate last resort");
    let claimed = store.claim_key_package(&d).expect("claim").expect("some");
    assert_eq!(claimed.key_package, b"last-2");

    let many: Vec<Vec<u8>> = (0..MAX_KEY_PACKAGE_STOCK)
        .map(|i| i.to_be_bytes().to_vec())
        .collect();
    let refs: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
    assert_eq!(
        store.put_key_packages(&d, &refs, None).expect("fill"),
        MAX_KEY_PACKAGE_STOCK
    );
    assert_eq!(
        store.put_key_packages(&d, &[b"one more"], Some(b"last-3")),
        Err(StoreError::StockFull)
    );
    let claimed = store.claim_key_package(&d).expect("claim").expect("some");
    assert_eq!(claimed.key_package, 0u32.to_be_bytes());
    assert_eq!(
        store.key_package_stock(&d).expect("stock").stock,
        MAX_KEY_PACKAGE_STOCK - 1
    );
    // The refused upload did not replace the last resort either.
    let other = DeviceId([2; 16]);
    assert_eq!(store.claim_key_package(&other).expect("claim"), None);
}

/// An organisation's CA certificate is stored with it.
pub fn org_ca_certificate_is_kept(h: &mut dyn Harness) {
    let store = h.fresh();
    let with_ca = Org {
        ca_certificate: Some(Bytes::from(b"ca-der".to_vec())),
        ..org("north")
    };
    store.create_org(&with_ca).expect("create");
    store.create_org(&org("south")).expect("create");
    assert_eq!(
        store.get_org(&with_ca.org_id).expect("get"),
        Some(with_ca.clone())
    );
    let south = store
        .get_org(&OrgId::new("south").expect("valid"))
        .expect("get")
        .expect("exists");
    assert_eq!(south.ca_certificate, None);
}

/// A device enrols without a certificate and is pending until one is set;
/// pending lists only unrevoked devices of the organisation's own users;
/// a certificate can be replaced but not set on a revoked or unknown
/// device.
pub fn device_certificates_end_pending(h: &mut dyn Harness) {
    let store = h.fresh();
    let north = OrgId::new("north").expect("valid");
    let bob = enrolled(&*store, "bob@north", 1);
    let alice_2 = enrolled(&*store, "alice@north", 3);
    let alice_1 = enrolled(&*store, "alice@north", 2);
    let revoked = enrolled(&*store, "alice@north", 4);
    let other_org = enrolled(&*store, "carol@north2", 5);
    assert_eq!(bob.certificate, None, "enrolled without a certificate");
    store.revoke_device(&revoked.device_id).expect("revoke");
    assert_eq!(
        store.pending_devices(&north).expect("pending"),
        vec![alice_1.clone(), alice_2.clone(), bob.clone()],
        "ordered by user, then device"
    );
    assert!(store
        .pending_devices(&OrgId::new("nowhere").expect("valid"))
        .expect("pending")
        .is_empty());

    store
        .set_device_certificate(&alice_1.device_id, b"cert-1")
        .expect("set");
    let got = store
        .get_device(&alice_1.device_id)
        .expect("get")
        .expect("exists");
    assert_eq!(
        got.certificate.as_deref().map(Vec::as_slice),
        Some(&b"cert-1"[..])
    );
    assert_eq!(
        got,
        Device {
            certificate: got.certificate.clone(),
            push_token: None,
            ..alice_1.clone()
        },
        "nothing else changes"
    );
    assert_eq!(
        store.pending_devices(&north).expect("pending"),
        vec![alice_2, bob]
    );
    store
        .set_device_certificate(&alice_1.device_id, b"cert-2")
        .expect("replace");
    let got = store
        .get_device(&alice_1.device_id)
        .expect("get")
        .expect("exists");
    assert_eq!(
        got.certificate.as_deref().map(Vec::as_slice),
        Some(&b"cert-2"[..])
    );

    assert_eq!(
        store.set_device_certificate(&revoked.device_id, b"cert"),
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.set_device_certificate(&DeviceId([9; 16]), b"cert"),
        Err(StoreError::NotFound)
    );
    let still = store
        .get_device(&revoked.device_id)
        .expect("get")
        .expect("exists");
    assert_eq!(still.certificate, None);
    assert_eq!(
        store
            .pending_devices(&other_org.user_id.org())
            .expect("pending"),
        vec![other_org]
    );
}

/// A trust list is stored per organisation, replaced by the next one, and
/// needs its organisation.
pub fn trust_lists_are_kept_per_org(h: &mut dyn Harness) {
    let store = h.fresh();
    let north = OrgId::new("north").expect("valid");
    let south = OrgId::new("south").expect("valid");
    let list = |n: u8| TrustList {
        body: Bytes::from(vec![n; 3]),
        signature: Bytes::from(vec![n; 64]),
        published_at: NOW + u64::from(n),
        co_signature: None,
    };
    assert_eq!(
        store.put_trust_list(&north, &list(1)),
        Err(StoreError::NotFound),
        "a trust list needs its organisation"
    );
    store.create_org(&org("north")).expect("create");
    store.create_org(&org("south")).expect("create");
    assert_eq!(store.trust_list(&north).expect("get"), None);
    store.put_trust_list(&north, &list(1)).expect("put");
    assert_eq!(store.trust_list(&north).expect("get"), Some(list(1)));
    assert_eq!(store.trust_list(&south).expect("get"), None);
    store.put_trust_list(&north, &list(2)).expect("replace");
    assert_eq!(store.trust_list(&north).expect("get"), Some(list(2)));
}

/// An admin roster is stored per organisation, apart from its trust and
/// revocation lists, replaced by the next one, needs its organisation and
/// is there after a reopen.
pub fn admin_rosters_are_kept_per_org_apart_from_the_lists(h: &mut dyn Harness) {
    let store = h.fresh();
    let north = OrgId::new("north").expect("valid");
    let south = OrgId::new("south").expect("valid");
    let doc = |n: u8| TrustList {
        body: Bytes::from(vec![n; 5]),
        signature: Bytes::from(vec![n; 64]),
        published_at: NOW + u64::from(n),
        co_signature: None,
    };
    assert_eq!(
        store.put_admin_roster(&north, &doc(1)),
        Err(StoreError::NotFound),
        "a roster needs its organisation"
    );
    store.create_org(&org("north")).expect("create");
    store.create_org(&org("south")).expect("create");
    store.put_trust_list(&north, &doc(8)).expect("trust list");
    store.put_revocations(&north, &doc(9)).expect("revocations");
    assert_eq!(store.admin_roster(&north).expect("get"), None);
    store.put_admin_roster(&north, &doc(1)).expect("put");
    store.put_admin_roster(&north, &doc(2)).expect("replace");
    store.flush().expect("flush");
    drop(store);
    let store = h.reopen();
    assert_eq!(store.admin_roster(&north).expect("get"), Some(doc(2)));
    assert_eq!(store.admin_roster(&south).expect("get"), None);
    assert_eq!(store.trust_list(&north).expect("get"), Some(doc(8)));
    assert_eq!(store.revocations(&north).expect("get"), Some(doc(9)));
}

/// Admin nonces are kept across a reopen, per organisation, until their
/// time, and forgotten after it.
pub fn admin_nonces_are_kept_until_their_time(h: &mut dyn Harness) {
    let store = h.fresh();
    let north = OrgId::new("north").expect("valid");
    let south = OrgId::new("south").expect("valid");
    assert_eq!(store.admin_nonces(NOW).expect("read"), Vec::new());
    store
        .put_admin_nonce(&north, &[1; 16], NOW + 300)
        .expect("put");
    store
        .put_admin_nonce(&south, &[1; 16], NOW + 10)
        .expect("put");
    store
        .put_admin_nonce(&north, &[2; 16], NOW - 1)
        .expect("put");
    store.flush().expect("flush");
    drop(store);
    let store = h.reopen();
    let mut kept = store.admin_nonces(NOW).expect("read");
    kept.sort_by_key(|(_, _, until)| *until);
    assert_eq!(
        kept,
        vec![
            (south.clone(), [1; 16], NOW + 10),
            (north.clone(), [1; 16], NOW + 300)
        ],
        "the one past its time is not served"
    );
    store.forget_admin_nonces(NOW + 11).expect("forget");
    assert_eq!(
        store.admin_nonces(NOW - 100).expect("read"),
        vec![(north, [1; 16], NOW + 300)],
        "forgotten ones are gone, whatever time is asked"
    );
}

/// Everything written and flushed is there after the store is dropped and
/// opened again.
pub fn state_survives_reopen(h: &mut dyn Harness) {
    let store = h.fresh();
    let alice = enrolled(&*store, "alice@north", 1);
    let bob = enrolled(&*store, "bob@north", 2);
    store.set_admin_token_hash(&[5; 32]).expect("admin");
    store
        .put_enrolment_token(
            &token_hash(9),
            &EnrolmentTokenRecord {
                user_id: alice.user_id.clone(),
                expires_at: NOW + 60,
                used: false,
            },
        )
        .expect("token");
    store
        .put_key_packages(&bob.device_id, &[b"kp-1", b"kp-2"], Some(b"last"))
        .expect("kps");
    store
        .claim_key_package(&bob.device_id)
        .expect("claim")
        .expect("some");
    let g = group_id(3);
    store
        .create_group(&g, &alice.device_id, b"info-0")
        .expect("group");
    store
        .apply_commit(&CommitWrite {
            group_id: g,
            epoch: 0,
            committer: alice.device_id,
            commit: b"c0",
            welcome: Some(b"w0"),
            group_info: b"info-1",
            added: &[bob.device_id],
            removed: &[],
        })
        .expect("commit");
    app(&*store, g, alice.device_id, b"hello");
    let bob_queue = store.queue_page(&bob.device_id, None, 10).expect("queue");
    store
        .set_device_certificate(&alice.device_id, b"alice-cert")
        .expect("certificate");
    let alice = store
        .get_device(&alice.device_id)
        .expect("get")
        .expect("exists");
    let ca_org = Org {
        ca_certificate: Some(Bytes::from(b"ca".to_vec())),
        ..org("east")
    };
    store.create_org(&ca_org).expect("org with a CA");
    let list = TrustList {
        body: Bytes::from(b"trusted".to_vec()),
        signature: Bytes::from(vec![7; 64]),
        published_at: NOW,
        co_signature: None,
    };
    store
        .put_trust_list(&ca_org.org_id, &list)
        .expect("trust list");
    store.flush().expect("flush");
    drop(store);

    let store = h.reopen();
    assert_eq!(store.admin_token_hash().expect("admin"), Some([5; 32]));
    assert!(store.get_org(&alice.user_id.org()).expect("org").is_some());
    assert!(store.get_user(&alice.user_id).expect("user").is_some());
    assert_eq!(
        store.get_device(&alice.device_id).expect("device"),
        Some(alice.clone())
    );
    assert!(alice.certificate.is_some());
    assert_eq!(
        store.get_org(&ca_org.org_id).expect("org"),
        Some(ca_org.clone())
    );
    assert_eq!(
        store.trust_list(&ca_org.org_id).expect("trust list"),
        Some(list)
    );
    assert_eq!(
        store
            .pending_devices(&alice.user_id.org())
            .expect("pending"),
        vec![bob.clone()]
    );
    assert_eq!(
        store.devices_of_user(&bob.user_id).expect("devices"),
        vec![bob.clone()]
    );
    assert_eq!(
        store.key_package_stock(&bob.device_id).expect("stock"),
        KeyPackageStock {
            stock: 1,
            has_last_resort: true
        }
    );
    let claimed = store
        .claim_key_package(&bob.device_id)
        .expect("claim")
        .expect("some");
    assert_eq!(claimed.key_package, b"kp-2");
    let group = store.get_group(&g).expect("group").expect("exists");
    assert_eq!((group.epoch, group.next_seq), (1, 3));
    assert_eq!(group.roster, vec![alice.device_id, bob.device_id]);
    assert_eq!(
        store.group_info(&g).expect("info"),
        Some((1, b"info-1".to_vec()))
    );
    assert_eq!(
        store.queue_page(&bob.device_id, None, 10).expect("queue"),
        bob_queue
    );
    assert_eq!(bob_queue.len(), 2);
    // The unused token still enrols once; queue ids keep increasing.
    store
        .enrol_device(&token_hash(9), NOW, &new_device(3))
        .expect("enrol after reopen");
    app(&*store, g, alice.device_id, b"again");
    let after = store.queue_page(&bob.device_id, None, 10).expect("queue");
    assert_eq!(after.len(), 3);
    assert!(after[2].queue_id > after[1].queue_id);
    assert_eq!(after[2].seq, 3);
}

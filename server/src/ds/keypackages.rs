//! `UploadKeyPackages` and `ClaimKeyPackages`.

use cascade_protocol::frames::{Bytes, ClaimedKeyPackage, Response};
use cascade_protocol::limits::MAX_KEY_PACKAGE_UPLOAD;
use cascade_protocol::mls_header::WireFormat;
use cascade_protocol::{RateScope, UserId};

use super::{check_mls_size, expect_wire_format, stock_is_low, Session};
use crate::error::DsError;
use crate::fanout::Live;
use crate::trust::mutually_trusted;
use crate::AppState;

/// Stores single-use KeyPackages (at most [`MAX_KEY_PACKAGE_UPLOAD`] per
/// request, each an `MlsMessage` of wire format KeyPackage) and optionally a
/// new last-resort one, durably. `TooLarge` if a limit is exceeded (nothing
/// stored).
pub async fn handle_upload(
    state: &AppState,
    session: &Session,
    key_packages: Vec<Bytes>,
    last_resort: Option<Bytes>,
) -> Result<Response, DsError> {
    if key_packages.len() > MAX_KEY_PACKAGE_UPLOAD {
        return Err(DsError::TooLarge {
            limit: MAX_KEY_PACKAGE_UPLOAD as u64,
        });
    }
    for package in key_packages.iter().chain(&last_resort) {
        check_mls_size(package)?;
        expect_wire_format(
            package,
            WireFormat::KeyPackage,
            "a KeyPackage is not an MLS KeyPackage message",
        )?;
    }
    let packages: Vec<&[u8]> = key_packages.iter().map(|p| p.as_slice()).collect();
    let stock = state.store().put_key_packages(
        &session.device_id,
        &packages,
        last_resort.as_ref().map(|p| p.as_slice()),
    )?;
    state.flush().await?;
    Ok(Response::KeyPackagesStored { stock })
}

/// Claims one KeyPackage for every current device of `user_id` except the
/// calling device (a device never adds itself): a single-use one if the
/// device has any, else its last-resort one. Devices with neither are left
/// out; `NoKeyPackages` if that leaves none. Devices whose stock is low are
/// told so if connected. `UnknownUser` also when the caller's organisation
/// and the user's do not pin each other ([`mutually_trusted`]): an
/// organisation nobody trusts cannot drain another's KeyPackages.
/// `RateLimited` past [`crate::CLAIMS_PER_USER`] claims of one user (or
/// [`crate::CLAIMS_PER_DEVICE`] in all) per [`crate::CLAIM_WINDOW`], so a
/// trusted device cannot drain them either.
pub async fn handle_claim(
    state: &AppState,
    session: &Session,
    user_id: &UserId,
) -> Result<Response, DsError> {
    let store = state.store();
    if !mutually_trusted(&**store, &session.user_id.org(), &user_id.org())? {
        return Err(DsError::UnknownUser);
    }
    let limits = state.limits();
    limits
        .claims_per_device
        .attempt(&session.device_id)
        .map_err(|wait| (wait, RateScope::Device))
        .and_then(|()| {
            limits
                .claims_per_user
                .attempt(&(session.device_id, user_id.clone()))
                .map_err(|wait| (wait, RateScope::User))
        })
        .map_err(|(wait, scope)| {
            state.metrics().limited("claims");
            DsError::RateLimited {
                retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                scope,
            }
        })?;
    if store.get_user(user_id)?.is_none() {
        return Err(DsError::UnknownUser);
    }
    let mut devices = Vec::new();
    let mut low = Vec::new();
    for device in store.devices_of_user(user_id)? {
        if device.revoked || device.device_id == session.device_id {
            continue;
        }
        let Some(claimed) = store.claim_key_package(&device.device_id)? else {
            continue;
        };
        if stock_is_low(claimed.stock) {
            low.push((
                device.device_id,
                Live::KeyPackagesLow {
                    stock: claimed.stock,
                },
            ));
        }
        devices.push(ClaimedKeyPackage {
            device_id: device.device_id,
            key_package: Bytes::from(claimed.key_package),
        });
    }
    if devices.is_empty() {
        return Err(DsError::NoKeyPackages);
    }
    // A claimed KeyPackage must never be handed out again after a crash.
    state.flush().await?;
    state.registry().offer(low);
    Ok(Response::KeyPackages { devices })
}

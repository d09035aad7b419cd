//! The passphrase that unlocks this device's data: from
//! `CASCADE_PASSPHRASE`, or typed on the terminal without echo. The key
//! derivation and everything else are cascade-core's
//! ([`cascade_core::store::at_rest`]).

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{bail, Result};
use cascade_core::{Client, CoreError, KdfCost, Protection, StoreKey};
use zeroize::Zeroizing;

/// The environment variable that holds the passphrase (for scripts and
/// services; on a terminal it is asked for instead).
pub const PASSPHRASE_ENV: &str = "CASCADE_PASSPHRASE";

/// Set to `1` only by test suites: a new device's passphrase gets a
/// derivation that is cheap to guess (cascade-core's
/// `KdfCost::InsecureForTests`). Debug builds only: a release build refuses
/// it rather than make a store weak.
pub const INSECURE_TEST_KDF_ENV: &str = "CASCADE_INSECURE_TEST_KDF";

/// The key of the device in `data_dir`, for `cascade enrol` (`enrolling`)
/// or for a command on an enrolled device. A passphrase that becomes the
/// data's (a new device, or one from before encryption) is asked for
/// twice; a directory with nothing enrolled is `NotEnrolled` before
/// anything is asked.
pub fn store_key(data_dir: &Path, enrolling: bool) -> Result<StoreKey> {
    let protection = Client::protection(data_dir)?;
    match protection {
        Protection::Missing if !enrolling => return Err(CoreError::NotEnrolled.into()),
        Protection::Key => bail!(
            "this device's data is unlocked by a key in a platform keystore (the desktop \
             or mobile app's), not by a passphrase: use that app"
        ),
        _ => {}
    }
    let new = protection.takes_a_new_key();
    let passphrase = match std::env::var(PASSPHRASE_ENV) {
        Ok(p) if !p.is_empty() => Zeroizing::new(p),
        _ if std::io::stdin().is_terminal() => prompt(new)?,
        _ => bail!(
            "this device's data is encrypted with a passphrase: type it on a terminal, \
             or set {PASSPHRASE_ENV}"
        ),
    };
    let cost = match std::env::var_os(INSECURE_TEST_KDF_ENV) {
        None => KdfCost::Standard,
        Some(v) if v == "1" && cfg!(debug_assertions) => KdfCost::InsecureForTests,
        Some(_) => bail!("{INSECURE_TEST_KDF_ENV} is for the test suites of debug builds only"),
    };
    Ok(StoreKey::Passphrase { passphrase, cost })
}

fn prompt(new: bool) -> Result<Zeroizing<String>> {
    if !new {
        return Ok(Zeroizing::new(rpassword::prompt_password(
            "Passphrase for this device's data: ",
        )?));
    }
    eprintln!(
        "Choose a passphrase for this device's data (at least {} characters). \
         Without it nobody can read the data, and it cannot be recovered: \
         if you forget it, the device has to be enrolled again.",
        cascade_core::store::at_rest::MIN_PASSPHRASE_CHARS
    );
    let first = Zeroizing::new(rpassword::prompt_password("New passphrase: ")?);
    let again = Zeroizing::new(rpassword::prompt_password("The same again: ")?);
    if first != again {
        bail!("the two passphrases differ; nothing was changed");
    }
    Ok(first)
}

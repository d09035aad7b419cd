//! The passphrase that unlocks this device's data: from
//! `CASCADE_PASSPHRASE`, or typed on the terminal without echo. The key
//! derivation and everything else are cascade-core's
//! ([`cascade_core::store::at_rest`]).

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
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

/// The environment variable that holds the new passphrase for
/// `cascade passphrase` (for scripts; on a terminal it is asked for twice
/// instead).
pub const NEW_PASSPHRASE_ENV: &str = "CASCADE_NEW_PASSPHRASE";

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
    let cost = kdf_cost()?;
    Ok(StoreKey::Passphrase { passphrase, cost })
}

/// The Argon2id cost of a new passphrase or backup key: the standard one,
/// or the test suites' cheap one ([`INSECURE_TEST_KDF_ENV`]).
pub fn kdf_cost() -> Result<KdfCost> {
    Ok(match std::env::var_os(INSECURE_TEST_KDF_ENV) {
        None => KdfCost::Standard,
        Some(v) if v == "1" && cfg!(debug_assertions) => KdfCost::InsecureForTests,
        Some(_) => bail!("{INSECURE_TEST_KDF_ENV} is for the test suites of debug builds only"),
    })
}

/// `cascade passphrase`: re-encrypts the device's data under a new
/// passphrase. The current one is checked first; a wrong one, or a new one
/// that is too short, changes nothing.
pub async fn change(data_dir: &Path, json: bool) -> Result<()> {
    let StoreKey::Passphrase { passphrase, cost } = store_key(data_dir, false)? else {
        bail!("this device's data is not protected by a passphrase")
    };
    let old = || StoreKey::Passphrase {
        passphrase: passphrase.clone(),
        cost,
    };
    // The current passphrase is checked by opening the data with it, before
    // a new one is asked for.
    let client = Client::open(data_dir, &old())
        .await
        .with_context(|| format!("opening {}", data_dir.display()))?;
    let new = match std::env::var(NEW_PASSPHRASE_ENV) {
        Ok(p) if !p.is_empty() => Ok(Zeroizing::new(p)),
        _ if std::io::stdin().is_terminal() => prompt(true),
        _ => Err(anyhow::anyhow!(
            "give the new passphrase on a terminal, or set {NEW_PASSPHRASE_ENV}"
        )),
    };
    let changed = match new {
        Ok(new) => client
            .change_key(
                old(),
                StoreKey::Passphrase {
                    passphrase: new,
                    cost,
                },
            )
            .await
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    client.shutdown().await;
    changed?;
    crate::output::say(json, serde_json::json!({ "changed": true }), || {
        "The passphrase of this device's data is changed. The old one no longer opens it."
            .to_owned()
    });
    Ok(())
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

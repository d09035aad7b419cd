//! What unlocks the device's data on the desktop (cascade-core's
//! [`StoreKey`]): a random 256-bit key that the OS keystore holds (the
//! Secret Service on Linux, the Keychain on macOS), so that the user is
//! asked for nothing; where there is no keystore, a passphrase, typed in
//! the window. `CASCADE_PASSPHRASE` gives the passphrase instead, and wins
//! over the keystore: for the demo and scripted runs, and for the WebDriver
//! tests, whose virtual display has no Secret Service.
//!
//! Which one a data directory takes is the core's answer
//! ([`Client::protection`]); this module only fetches or makes the key.

use std::path::Path;

use cascade_core::{Client, CoreError, Protection, StoreKey};
use zeroize::Zeroizing;

/// The environment variable holding the passphrase of the device's data.
pub const PASSPHRASE_ENV: &str = "CASCADE_PASSPHRASE";

/// The keystore's service name for Cascade's keys; the entry's user is the
/// data directory.
const SERVICE: &str = "Cascade device data";

/// What the window has to ask for before the device's data opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Ask {
    /// Nothing: the keystore or the environment has the key.
    Nothing,
    /// The passphrase of the device's existing data.
    Passphrase,
    /// A passphrase to enrol with, twice (no keystore, nothing enrolled).
    NewPassphrase,
    /// A new passphrase, twice, for data from before encryption at rest
    /// (no keystore): opening it encrypts it.
    NewPassphraseForData,
    /// Nothing to type, to unlock the app: the OS keystore holds the key.
    Keystore,
}

/// The passphrase from [`PASSPHRASE_ENV`], if set.
fn from_env() -> Option<StoreKey> {
    std::env::var(PASSPHRASE_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .map(StoreKey::passphrase)
}

/// The keystore entry of the data in `data_dir`.
fn entry(data_dir: &Path) -> keyring::Result<keyring::Entry> {
    let dir = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_owned());
    keyring::Entry::new(SERVICE, &dir.display().to_string())
}

/// The key the keystore holds for `data_dir`.
fn from_keystore(data_dir: &Path) -> Result<StoreKey, CoreError> {
    let secret = entry(data_dir)
        .and_then(|e| e.get_secret())
        .map(Zeroizing::new)
        .map_err(|e| {
            tracing::warn!(error = %e, "the keystore has no key for this device's data");
            CoreError::WrongKey
        })?;
    StoreKey::key_from_slice(&secret).ok_or(CoreError::WrongKey)
}

/// Deletes the keystore's key for `data_dir`, whose data is gone (the
/// device erased itself). Nothing to do without a keystore or a key.
pub fn forget(data_dir: &Path) {
    if let Err(e) = entry(data_dir).and_then(|e| e.delete_credential()) {
        tracing::debug!(error = %e, "no keystore key to delete");
    }
}

/// A new random key, kept in the keystore for `data_dir`; `None` when
/// there is no keystore to keep it (then a passphrase is asked for).
fn new_in_keystore(data_dir: &Path) -> Option<StoreKey> {
    let key = Zeroizing::new(rand::random::<[u8; 32]>());
    let stored = entry(data_dir).and_then(|e| {
        e.set_secret(key.as_slice())?;
        e.get_secret().map(Zeroizing::new)
    });
    match stored {
        Ok(back) if back.as_slice() == key.as_slice() => StoreKey::key_from_slice(key.as_slice()),
        Ok(_) => {
            tracing::warn!("the keystore gave back another key; using a passphrase");
            None
        }
        Err(e) => {
            tracing::info!(error = %e, "no keystore; the device's data takes a passphrase");
            None
        }
    }
}

/// The key that opens `data_dir` without asking the user, or what to ask
/// for. For data that has no key yet (nothing enrolled, or a store from
/// before encryption) a new keystore key is made.
pub fn key_for(data_dir: &Path) -> Result<Result<StoreKey, Ask>, CoreError> {
    if let Some(key) = from_env() {
        return Ok(Ok(key));
    }
    Ok(match Client::protection(data_dir)? {
        Protection::Key => Ok(from_keystore(data_dir)?),
        Protection::Passphrase => Err(Ask::Passphrase),
        Protection::Missing => new_in_keystore(data_dir).ok_or(Ask::NewPassphrase),
        Protection::Unencrypted => new_in_keystore(data_dir).ok_or(Ask::NewPassphraseForData),
    })
}

/// What the window will ask for before `data_dir` opens, without making a
/// key: for data with no key yet, a new passphrase unless the OS keystore
/// answers.
pub fn ask(data_dir: &Path) -> Ask {
    if from_env().is_some() {
        return Ask::Nothing;
    }
    match Client::protection(data_dir) {
        Ok(Protection::Passphrase) => Ask::Passphrase,
        Ok(Protection::Missing) if !keystore_available() => Ask::NewPassphrase,
        Ok(Protection::Unencrypted) if !keystore_available() => Ask::NewPassphraseForData,
        _ => Ask::Nothing,
    }
}

/// Whether the OS keystore answers (a lookup that finds nothing is an
/// answer; no Secret Service on the session bus is not).
fn keystore_available() -> bool {
    match keyring::Entry::new(SERVICE, "availability check").and_then(|e| e.get_secret()) {
        Ok(_) | Err(keyring::Error::NoEntry) => true,
        Err(_) => false,
    }
}

/// What the lock screen asks for when the app locked while running: the
/// passphrase of passphrase-protected data; for data keyed by the OS
/// keystore nothing to type (the keystore hands the key back only to the
/// logged-in user).
pub fn ask_to_unlock(data_dir: &Path) -> Ask {
    match Client::protection(data_dir) {
        Ok(Protection::Key) => Ask::Keystore,
        _ => Ask::Passphrase,
    }
}

/// The key that unlocks the app after it locked: the passphrase typed (never
/// [`PASSPHRASE_ENV`]: the person at the screen must know it), or the
/// keystore's key.
pub fn key_to_unlock(data_dir: &Path, typed: String) -> Result<StoreKey, CoreError> {
    match Client::protection(data_dir)? {
        Protection::Key => from_keystore(data_dir),
        _ if typed.is_empty() => Err(CoreError::WrongKey),
        _ => Ok(StoreKey::passphrase(typed)),
    }
}

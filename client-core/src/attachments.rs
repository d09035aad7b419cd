//! Attachments encrypted on the device before they leave it (protocol
//! §14.10): a fresh key per file, the file sealed in chunks with the STREAM
//! construction over AES-256-GCM (RustCrypto's `aead::stream`, big-endian
//! 32-bit counter: each chunk's nonce binds its index and whether it is the
//! last, so a file cut short, reordered or spliced fails to open), and the
//! SHA-256 of the whole ciphertext, which names the blob at the relay and
//! which the receiver checks before it trusts a byte.
//!
//! A sealed file is `nonce prefix (7 octets) || chunk || … || last chunk`,
//! each chunk [`CHUNK`] octets of the file (the last one [`CHUNK`] or
//! fewer, possibly none) and a 16-octet tag. Sealing and opening stream
//! from a reader to a writer, holding one chunk in memory whatever the
//! file's size, and report progress as they go.

use std::io::{self, Read, Write};

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Octets of the file in each chunk.
pub const CHUNK: usize = 64 * 1024;

/// Octets of an AES-GCM tag.
const TAG: usize = 16;

/// Octets of the nonce prefix at the start of a sealed file (AES-GCM's 12
/// less STREAM's 5: 4 of counter and 1 of last-chunk flag).
pub const NONCE_PREFIX: usize = 7;

/// What the message that carries an attachment must say for the receiver to
/// open it: the key, and the digest and size of the ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The file's own key (AES-256).
    pub key: Zeroizing<[u8; 32]>,
    /// SHA-256 of the whole sealed file.
    pub digest: [u8; 32],
    /// Octets of the sealed file.
    pub size: u64,
    /// Octets of the file itself.
    pub plain_size: u64,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("digest", &hex::encode(self.digest))
            .field("size", &self.size)
            .field("plain_size", &self.plain_size)
            .finish_non_exhaustive()
    }
}

/// Why a sealed file did not open. Nothing of it may be shown.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Its digest is not the one the message gave: another or a changed
    /// file.
    #[error("the attachment is not the one sent (its digest differs)")]
    Digest,
    /// A chunk failed to authenticate, or the file ends before its last
    /// chunk: changed, reordered or cut short.
    #[error("the attachment was changed or cut short")]
    Corrupt,
    /// Reading or writing failed.
    #[error("reading or writing the attachment failed: {0}")]
    Io(#[from] io::Error),
}

/// Octets of the sealed form of a file of `plain` octets.
pub fn sealed_size(plain: u64) -> u64 {
    // One chunk per CHUNK octets begun, and one (empty) for an empty file.
    let chunks = plain.div_ceil(CHUNK as u64).max(1);
    NONCE_PREFIX as u64 + plain + chunks * TAG as u64
}

/// Octets of the file whose sealed form has `sealed` octets (0 for a
/// size no sealed file has).
pub fn plain_size(sealed: u64) -> u64 {
    let chunk = (CHUNK + TAG) as u64;
    let body = sealed.saturating_sub(NONCE_PREFIX as u64);
    let chunks = body.div_ceil(chunk).max(1);
    body.saturating_sub(chunks * TAG as u64)
}

/// Reads until `buf` is full or the reader ends; returns how much it read.
pub(crate) fn fill(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Seals the file read from `src` into `dst` under a fresh key, calling
/// `progress` with the octets of the file read so far.
pub fn seal(src: impl Read, dst: impl Write, progress: impl FnMut(u64)) -> io::Result<Sealed> {
    seal_with(
        Zeroizing::new(rand::random::<[u8; 32]>()),
        src,
        dst,
        progress,
    )
}

/// [`seal`] under a given key, for what is sealed the same way under a key
/// of its own derivation (a backup, a linked device's history). The key
/// must never seal anything else: the nonce prefix is random, and 56 bits
/// of it are not enough to reuse a key without care.
pub fn seal_with(
    key: Zeroizing<[u8; 32]>,
    mut src: impl Read,
    mut dst: impl Write,
    mut progress: impl FnMut(u64),
) -> io::Result<Sealed> {
    let prefix: [u8; NONCE_PREFIX] = rand::random();
    let cipher = Aes256Gcm::new_from_slice(key.as_slice()).expect("a 32-octet key");
    let mut stream = EncryptorBE32::from_aead(cipher, (&prefix).into());
    let mut digest = Sha256::new();
    let mut size = 0u64;
    let mut emit = |bytes: &[u8], dst: &mut dyn Write| -> io::Result<()> {
        digest.update(bytes);
        size += bytes.len() as u64;
        dst.write_all(bytes)
    };
    emit(&prefix, &mut dst)?;
    // One chunk ahead, so the last one is known to be the last.
    let mut current = vec![0u8; CHUNK];
    let mut next = vec![0u8; CHUNK];
    let mut len = fill(&mut src, &mut current)?;
    let mut plain = len as u64;
    progress(plain);
    loop {
        let more = if len == CHUNK {
            fill(&mut src, &mut next)?
        } else {
            0
        };
        let sealed_err = |_| io::Error::other("sealing failed");
        if more == 0 {
            let sealed = stream.encrypt_last(&current[..len]).map_err(sealed_err)?;
            emit(&sealed, &mut dst)?;
            break;
        }
        let sealed = stream.encrypt_next(&current[..len]).map_err(sealed_err)?;
        emit(&sealed, &mut dst)?;
        std::mem::swap(&mut current, &mut next);
        len = more;
        plain += more as u64;
        progress(plain);
    }
    dst.flush()?;
    Ok(Sealed {
        key,
        digest: digest.finalize().into(),
        size,
        plain_size: plain,
    })
}

/// Opens a sealed file read from `src` into `dst`, checking that it is the
/// one `sealed` describes, and calling `progress` with the octets of the
/// sealed file read so far. On an error, what was written to `dst` must be
/// thrown away: only a file that opened to its end is the attachment.
pub fn open(
    mut src: impl Read,
    mut dst: impl Write,
    key: &[u8; 32],
    digest: &[u8; 32],
    mut progress: impl FnMut(u64),
) -> Result<u64, OpenError> {
    let mut hash = Sha256::new();
    let mut prefix = [0u8; NONCE_PREFIX];
    if fill(&mut src, &mut prefix)? < NONCE_PREFIX {
        return Err(OpenError::Corrupt);
    }
    hash.update(prefix);
    let cipher = Aes256Gcm::new_from_slice(key).expect("a 32-octet key");
    let mut stream = DecryptorBE32::from_aead(cipher, (&prefix).into());
    let mut read = NONCE_PREFIX as u64;
    let mut plain = 0u64;
    let mut current = vec![0u8; CHUNK + TAG];
    let mut next = vec![0u8; CHUNK + TAG];
    let mut len = fill(&mut src, &mut current)?;
    loop {
        hash.update(&current[..len]);
        read += len as u64;
        progress(read);
        let more = if len == CHUNK + TAG {
            fill(&mut src, &mut next)?
        } else {
            0
        };
        if more == 0 {
            // The whole file is read: check it is the one sent before
            // trusting (or writing) its last chunk.
            if hash.finalize().as_slice() != digest {
                return Err(OpenError::Digest);
            }
            let opened = stream
                .decrypt_last(&current[..len])
                .map_err(|_| OpenError::Corrupt)?;
            plain += opened.len() as u64;
            dst.write_all(&opened)?;
            break;
        }
        let opened = stream
            .decrypt_next(&current[..len])
            .map_err(|_| OpenError::Corrupt)?;
        plain += opened.len() as u64;
        dst.write_all(&opened)?;
        std::mem::swap(&mut current, &mut next);
        len = more;
    }
    dst.flush()?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn sealed(plain: &[u8]) -> (Sealed, Vec<u8>) {
        let mut out = Vec::new();
        let s = seal(plain, &mut out, |_| {}).expect("sealed");
        (s, out)
    }

    fn opened(s: &Sealed, bytes: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut out = Vec::new();
        open(bytes, &mut out, &s.key, &s.digest, |_| {})?;
        Ok(out)
    }

    /// The digest of the ciphertext, recomputed for a changed file (what a
    /// hostile relay would serve with a message it also changed).
    fn redigested(s: &Sealed, bytes: &[u8]) -> Sealed {
        let mut t = s.clone();
        t.digest = Sha256::digest(bytes).into();
        t
    }

    #[test]
    fn files_of_every_shape_round_trip() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let plain = file(len);
            let (s, bytes) = sealed(&plain);
            assert_eq!(s.size, bytes.len() as u64, "{len}");
            assert_eq!(s.size, sealed_size(len as u64), "{len}");
            assert_eq!(plain_size(s.size), len as u64, "{len}");
            assert_eq!(s.plain_size, len as u64);
            assert_eq!(s.digest, <[u8; 32]>::from(Sha256::digest(&bytes)));
            assert_eq!(opened(&s, &bytes).expect("opens"), plain, "{len}");
        }
    }

    #[test]
    fn a_fresh_key_and_nonce_every_time() {
        let plain = file(100);
        let (a, x) = sealed(&plain);
        let (b, y) = sealed(&plain);
        assert_ne!(a.key, b.key);
        assert_ne!(x, y);
        assert_ne!(x[NONCE_PREFIX..], plain[..]);
    }

    #[test]
    fn a_changed_cut_or_reordered_file_fails() {
        let plain = file(3 * CHUNK + 5);
        let (s, bytes) = sealed(&plain);
        let chunk = CHUNK + TAG;
        // A flipped bit in the last chunk, with the digest the message gave:
        // the digest (checked before the last chunk is opened).
        let mut last = bytes.clone();
        let end = last.len() - 3;
        last[end] ^= 1;
        assert!(matches!(opened(&s, &last), Err(OpenError::Digest)));
        // In the first chunk: it does not authenticate (found as it is
        // read), whether or not the digest was changed to match.
        let mut flipped = bytes.clone();
        flipped[NONCE_PREFIX + 10] ^= 1;
        assert!(matches!(opened(&s, &flipped), Err(OpenError::Corrupt)));
        assert!(matches!(
            opened(&redigested(&s, &flipped), &flipped),
            Err(OpenError::Corrupt)
        ));
        // Cut after a whole chunk: the cut one was not sealed as the last.
        let cut = &bytes[..NONCE_PREFIX + chunk];
        assert!(matches!(
            opened(&redigested(&s, cut), cut),
            Err(OpenError::Corrupt)
        ));
        // Two chunks swapped.
        let mut swapped = bytes.clone();
        let (a, b) = (NONCE_PREFIX, NONCE_PREFIX + chunk);
        let first = bytes[a..a + chunk].to_vec();
        swapped.copy_within(b..b + chunk, a);
        swapped[b..b + chunk].copy_from_slice(&first);
        assert!(matches!(
            opened(&redigested(&s, &swapped), &swapped),
            Err(OpenError::Corrupt)
        ));
        // Too short to hold even the prefix; the wrong key.
        assert!(matches!(
            opened(&redigested(&s, &bytes[..3]), &bytes[..3]),
            Err(OpenError::Corrupt)
        ));
        let mut wrong = s.clone();
        wrong.key = Zeroizing::new([9; 32]);
        assert!(matches!(opened(&wrong, &bytes), Err(OpenError::Corrupt)));
    }

    #[test]
    fn progress_counts_up_to_the_whole() {
        let plain = file(2 * CHUNK + 1);
        let mut seen = Vec::new();
        let mut bytes = Vec::new();
        let s = seal(plain.as_slice(), &mut bytes, |n| seen.push(n)).expect("sealed");
        assert_eq!(
            seen,
            vec![CHUNK as u64, 2 * CHUNK as u64, plain.len() as u64]
        );
        let mut read = Vec::new();
        open(bytes.as_slice(), io::sink(), &s.key, &s.digest, |n| {
            read.push(n)
        })
        .expect("opens");
        assert_eq!(read.last().copied(), Some(s.size));
        assert!(read.windows(2).all(|w| w[0] < w[1]));
    }
}

//! Enrolment codes: what a person reads out, types or scans to enrol a
//! device (`docs/protocol.md` §3.3).
//!
//! A code joins two things: the one-time enrolment token, which the relay
//! checks, and a fingerprint of the organisation's CA certificate, which the
//! device checks against the CA the relay serves, so that it need not
//! trust the relay for it.
//!
//! - **Short form** (what `cascade admin token` prints): 24 characters of
//!   Crockford's base32 alphabet (digits and capitals without I, L, O, U),
//!   in six groups of four, e.g. `7KQM-2D9X-PAWE-RC8G-MRZG-E196`: a
//!   10-character token (50 random bits) and the first 14 characters (70
//!   bits) of the base32 SHA-256 of the CA certificate. Read case-insensitively,
//!   with separators and spaces ignored and `I`/`L` read as `1`, `O` as `0`.
//!   50 bits cannot be guessed past the relay's rate limits; 70 bits of
//!   fingerprint cannot be matched by a forged CA.
//! - **Long form** (earlier codes, still accepted): `<token>.<64 hex digits
//!   of the CA certificate's SHA-256>`.
//! - **Link** (for a QR code or a click): `cascade://enrol?server=<relay
//!   URL>&code=<short code>&ca=<64 hex digits>`: the relay's address and the
//!   full fingerprint travel with the code.

use rand::Rng;

/// Crockford's base32 alphabet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters of a short code's token (50 bits).
pub const TOKEN_CHARS: usize = 10;
/// Characters of a short code's CA fingerprint (70 bits).
pub const FINGERPRINT_CHARS: usize = 14;
/// The link scheme and path.
pub const LINK_PREFIX: &str = "cascade://enrol?";

/// Why a code does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Neither form, nor a link.
    #[error("an enrolment code is 24 letters and digits (XXXX-XXXX-XXXX-XXXX-XXXX-XXXX), token.fingerprint, or a cascade://enrol link")]
    Malformed,
}

/// The CA fingerprint a code carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fingerprint {
    /// The whole SHA-256, 64 lowercase hex digits.
    Full(String),
    /// The first [`FINGERPRINT_CHARS`] base32 characters of the SHA-256.
    Short(String),
}

impl Fingerprint {
    /// Reads a fingerprint as a code or `EnrolRequest::ca_fingerprint`
    /// carries it: 64 hex digits, or the short form's 14 characters.
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let s = s.trim();
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Self::Full(s.to_ascii_lowercase()));
        }
        let short = normalise(s).ok_or(CodeError::Malformed)?;
        if short.len() != FINGERPRINT_CHARS {
            return Err(CodeError::Malformed);
        }
        Ok(Self::Short(short))
    }

    /// Whether the certificate whose SHA-256 is `digest` is the one meant.
    pub fn matches(&self, digest: &[u8; 32]) -> bool {
        match self {
            Self::Full(hex_digits) => *hex_digits == hex::encode(digest),
            Self::Short(chars) => *chars == base32(digest)[..FINGERPRINT_CHARS],
        }
    }

    /// As `EnrolRequest::ca_fingerprint` carries it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Full(s) | Self::Short(s) => s,
        }
    }
}

/// A code as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The token to send to the relay (canonical: see [`canonical_token`]).
    pub token: String,
    /// The CA fingerprint to check.
    pub fingerprint: Fingerprint,
    /// The relay's address, when the code came as a link.
    pub server: Option<String>,
}

/// Reads a code in any of its forms (short, long, link).
pub fn parse(input: &str) -> Result<Code, CodeError> {
    let input = input.trim();
    if let Some(query) = input.strip_prefix(LINK_PREFIX) {
        return parse_link(query);
    }
    if let Some((token, fingerprint)) = input.rsplit_once('.') {
        let fingerprint = Fingerprint::parse(fingerprint)?;
        if token.is_empty() || !matches!(fingerprint, Fingerprint::Full(_)) {
            return Err(CodeError::Malformed);
        }
        return Ok(Code {
            token: token.to_owned(),
            fingerprint,
            server: None,
        });
    }
    let chars = normalise(input).ok_or(CodeError::Malformed)?;
    if chars.len() != TOKEN_CHARS + FINGERPRINT_CHARS {
        return Err(CodeError::Malformed);
    }
    let (token, fingerprint) = chars.split_at(TOKEN_CHARS);
    Ok(Code {
        token: token.to_owned(),
        fingerprint: Fingerprint::Short(fingerprint.to_owned()),
        server: None,
    })
}

fn parse_link(query: &str) -> Result<Code, CodeError> {
    let (mut server, mut code, mut ca) = (None, None, None);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match &*key {
            "server" => &mut server,
            "code" => &mut code,
            "ca" => &mut ca,
            _ => continue, // later fields are ignored by earlier readers
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(CodeError::Malformed);
        }
    }
    let mut parsed = parse(&code.ok_or(CodeError::Malformed)?)?;
    if parsed.server.is_some() {
        return Err(CodeError::Malformed); // a link inside a link
    }
    if let Some(ca) = ca {
        // The link's full fingerprint must agree with the code's.
        let full = Fingerprint::parse(&ca)?;
        let Fingerprint::Full(hex_digits) = &full else {
            return Err(CodeError::Malformed);
        };
        let digest: [u8; 32] = hex::decode(hex_digits)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or(CodeError::Malformed)?;
        if !parsed.fingerprint.matches(&digest) {
            return Err(CodeError::Malformed);
        }
        parsed.fingerprint = full;
    }
    parsed.server = server;
    Ok(parsed)
}

/// The short code for `token` (from [`new_token`]) and the CA certificate
/// whose SHA-256 is `digest`, grouped in fours.
pub fn short_code(token: &str, digest: &[u8; 32]) -> String {
    let chars = format!("{token}{}", &base32(digest)[..FINGERPRINT_CHARS]);
    chars
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ASCII"))
        .collect::<Vec<_>>()
        .join("-")
}

/// The link carrying `code`, the relay's address and the full fingerprint.
pub fn link(server: &str, code: &str, digest: &[u8; 32]) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("server", server)
        .append_pair("code", code)
        .append_pair("ca", &hex::encode(digest))
        .finish();
    format!("{LINK_PREFIX}{query}")
}

/// A fresh short-code token: [`TOKEN_CHARS`] random characters.
pub fn new_token() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..TOKEN_CHARS)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// The token as the relay hashes it: a short-code token however it was
/// typed (case, separators, confusable letters) in its canonical form; any
/// other token unchanged.
pub fn canonical_token(token: &str) -> String {
    match normalise(token) {
        Some(chars) if chars.len() == TOKEN_CHARS => chars,
        _ => token.to_owned(),
    }
}

/// Crockford base32 of `bytes` (no padding).
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// `s` in canonical Crockford characters (separators `-` and spaces
/// dropped, upper case, `I`/`L` as `1` and `O` as `0`), or `None` if it
/// holds anything else.
fn normalise(s: &str) -> Option<String> {
    s.chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| {
            let c = match c.to_ascii_uppercase() {
                'I' | 'L' => '1',
                'O' => '0',
                c => c,
            };
            ALPHABET
                .contains(&(c as u8))
                .then_some(c)
                .filter(char::is_ascii)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of the empty string, as a stand-in certificate digest.
    const DIGEST: [u8; 32] = [
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9,
        0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52,
        0xb8, 0x55,
    ];

    #[test]
    fn a_short_code_is_pinned() {
        // Golden: the format is part of the protocol.
        assert_eq!(
            short_code("7KQM2D9XPA", &DIGEST),
            "7KQM-2D9X-PAWE-RC8G-MRZG-E196"
        );
        assert_eq!(&base32(&DIGEST)[..FINGERPRINT_CHARS], "WERC8GMRZGE196");
    }

    #[test]
    fn a_short_code_reads_however_it_is_typed() {
        let code = short_code("7KQM2D9XPA", &DIGEST);
        let expected = Code {
            token: "7KQM2D9XPA".into(),
            fingerprint: Fingerprint::Short("WERC8GMRZGE196".into()),
            server: None,
        };
        for typed in [
            code.clone(),
            code.to_lowercase(),
            code.replace('-', " "),
            code.replace('-', ""),
            " 7kqm 2d9x pawe rc8g mrzg el96 ".into(), // L for 1
        ] {
            assert_eq!(parse(&typed), Ok(expected.clone()), "{typed:?}");
        }
        assert!(expected.fingerprint.matches(&DIGEST));
        let mut other = DIGEST;
        other[0] ^= 1;
        assert!(!expected.fingerprint.matches(&other));
        for bad in [
            "",
            "7KQM-2D9X-PAWE-R690-MKYE-1C5",   // one short
            "7KQM-2D9X-PAWE-RC8G-MRZG-E1968", // one long
            "7KQM-2D9X-PAWE-R690-MKYE-1C5U",  // U is not in the alphabet
            "7KQM-2D9X-PAWE-R690-MKYE-1C5é",
            "token.abc", // long form with a short fingerprint
            ".e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert_eq!(parse(bad), Err(CodeError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn the_long_form_still_reads() {
        let hex_digits = hex::encode(DIGEST);
        let parsed = parse(&format!("Ab-_x.{}", hex_digits.to_uppercase())).expect("reads");
        assert_eq!(parsed.token, "Ab-_x");
        assert_eq!(parsed.fingerprint, Fingerprint::Full(hex_digits));
        assert!(parsed.fingerprint.matches(&DIGEST));
    }

    #[test]
    fn a_link_carries_the_relay_and_the_full_fingerprint() {
        let code = short_code("7KQM2D9XPA", &DIGEST);
        let link = link("https://relay.example:7171", &code, &DIGEST);
        assert_eq!(
            link,
            "cascade://enrol?server=https%3A%2F%2Frelay.example%3A7171&code=7KQM-2D9X-PAWE-RC8G-MRZG-E196&ca=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let parsed = parse(&link).expect("reads");
        assert_eq!(parsed.token, "7KQM2D9XPA");
        assert_eq!(parsed.server.as_deref(), Some("https://relay.example:7171"));
        assert_eq!(parsed.fingerprint, Fingerprint::Full(hex::encode(DIGEST)));
        // A link whose full fingerprint disagrees with its code is refused.
        let mut other = DIGEST;
        other[0] ^= 1;
        let forged = link.replace(&hex::encode(DIGEST), &hex::encode(other));
        assert_eq!(parse(&forged), Err(CodeError::Malformed));
        // One that agrees with the code's 70 bits but not beyond them reads,
        // and its full fingerprint is what the CA is then checked against.
        let mut tail = DIGEST;
        tail[31] ^= 1;
        let forged = link.replace(&hex::encode(DIGEST), &hex::encode(tail));
        let parsed = parse(&forged).expect("reads");
        assert!(parsed.fingerprint.matches(&tail) && !parsed.fingerprint.matches(&DIGEST));
        assert_eq!(parse("cascade://enrol?server=x"), Err(CodeError::Malformed));
        let twice = format!("{link}&code={code}");
        assert_eq!(parse(&twice), Err(CodeError::Malformed));
    }

    #[test]
    fn tokens_are_canonical_and_fresh() {
        let t = new_token();
        assert_eq!(t.len(), TOKEN_CHARS);
        assert_eq!(canonical_token(&t.to_lowercase()), t);
        assert_eq!(canonical_token("0o-0O 0i-IL l1"), "0000011111");
        assert_ne!(t, new_token());
        // A long-form token (base64url) is left as it is.
        let long = "DUnnNZTz-abc_def0123456789ABCDEFGHIJKLMNOpq";
        assert_eq!(canonical_token(long), long);
    }
}

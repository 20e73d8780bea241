//! The ids tokens carry: the session (`sid`), the refresh token's own id
//! (`jti`), and the account data of an access token.

use std::fmt;
use std::str::FromStr;

/// A session is one login; every token it issues carries its id (`sid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u128);

impl SessionId {
    pub fn random() -> SessionId {
        SessionId(rand::random())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex128(self.0))
    }
}

/// 32 lower-case hex digits, without the formatting machinery (it runs for
/// every proxied request: the session id header, the request id).
pub fn hex128(n: u128) -> String {
    let mut digits = [0u8; 32];
    hex128_into(n, &mut digits);
    digits.iter().map(|&d| d as char).collect()
}

/// The same 32 digits, written into `out`.
pub fn hex128_into(n: u128, out: &mut [u8; 32]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[((n >> ((31 - i) * 4)) & 0xf) as usize];
    }
}

impl FromStr for SessionId {
    type Err = ();
    fn from_str(s: &str) -> Result<SessionId, ()> {
        if s.len() != 32 {
            return Err(());
        }
        u128::from_str_radix(s, 16).map(SessionId).map_err(|_| ())
    }
}

/// Id of one refresh token inside its session (`jti`), retired on rotation.
pub fn random_token_id() -> u128 {
    rand::random()
}

/// The account data an access token carries.
pub struct Subject<'a> {
    pub account_id: u64,
    pub email: &'a str,
    pub role: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex128_matches_the_formatter() {
        for n in [0u128, 1, 0xdead_beef, u128::MAX, rand::random()] {
            assert_eq!(hex128(n), format!("{n:032x}"));
        }
    }
}

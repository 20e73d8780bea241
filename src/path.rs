//! Request paths as routes and upstreams see them. The route table, the
//! roles and the account endpoints are decided on the *normalized* path, and
//! the upstream receives that same path: otherwise a backend that normalizes
//! paths itself (nginx, most frameworks) would serve another route's resource
//! for `/api/public/../stocks/admin/x`.
//!
//! Normalization (RFC 3986, 6.2.2 and 5.2.4): percent-encoded unreserved
//! characters are decoded (`%2e` is `.`, `%41` is `A`), other escapes get
//! upper-case hex, repeated slashes are merged, dot segments are removed.
//! What stays ambiguous is refused: an encoded `/` or `\`, a NUL, a raw `\`,
//! a byte outside visible ASCII, a broken escape, a dot segment that would
//! climb above `/`, and a segment that a servlet container reads as a dot
//! segment (`..;x`, `.;x`).

use std::borrow::Cow;

/// Why a path was refused (400 `invalid_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with /")]
    NotAbsolute,
    #[error("a byte of the path is not visible ASCII")]
    Byte,
    #[error("a percent escape is not two hex digits")]
    Escape,
    #[error("the path holds an encoded slash, backslash or NUL")]
    EncodedSeparator,
    #[error("a dot segment climbs above /")]
    AboveRoot,
    #[error("a segment reads as a dot segment with parameters")]
    DotParameter,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` needs no work: no escape, no backslash, no empty or dot
/// segment, visible ASCII only. Almost every request takes this branch.
fn is_plain(path: &[u8]) -> bool {
    path.iter()
        .all(|&b| (0x21..0x7f).contains(&b) && b != b'%' && b != b'\\')
        // `//`, or a segment starting with a dot (`.`, `..`, `.x`): only
        // the dot segments need work, but telling them apart here is not
        // worth it.
        && !path
            .windows(2)
            .any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'))
}

/// The normalized form of an origin-form path (the query is not part of it).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(bytes)?;
    let normalized = remove_dot_segments(&decoded)?;
    if normalized == path {
        return Ok(Cow::Borrowed(path));
    }
    Ok(Cow::Owned(normalized))
}

/// Decodes the escapes of unreserved characters, upper-cases the hex of
/// the others, and refuses what must not be there.
fn decode_unreserved(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::Escape);
            };
            let value = hi * 16 + lo;
            if matches!(value, b'/' | b'\\' | 0) {
                return Err(PathError::EncodedSeparator);
            }
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(hi)]));
                out.push(char::from(HEX[usize::from(lo)]));
            }
            i += 3;
            continue;
        }
        if !(0x21..0x7f).contains(&b) || b == b'\\' {
            return Err(PathError::Byte);
        }
        out.push(char::from(b));
        i += 1;
    }
    Ok(out)
}

/// Merges repeated slashes and removes `.` and `..` segments; a path that
/// ends in a slash or a dot segment keeps (or gets) a final slash.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    // The first piece is the empty string before the leading `/`.
    for segment in path.split('/').skip(1) {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                if kept.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            _ => {
                // Tomcat and other servlet containers drop `;params` from
                // each segment before resolving dot segments.
                // (`%3B` too, for those that decode first.)
                let bare = segment.split(';').next().unwrap_or(segment);
                let bare = bare.split("%3B").next().unwrap_or(bare);
                if bare == "." || bare == ".." {
                    return Err(PathError::DotParameter);
                }
                kept.push(segment);
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, PathError> {
        normalize(path).map(Cow::into_owned)
    }

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        for path in ["/", "/api/stocks/", "/api/stocks/1", "/a-b_c~d/e.f/g;h=1"] {
            assert!(matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path));
        }
    }

    #[test]
    fn dot_segments_and_repeated_slashes_are_resolved() {
        let cases = [
            ("/api/public/../stocks/admin/x", "/api/stocks/admin/x"),
            ("/api/stocks//admin/x", "/api/stocks/admin/x"),
            ("/api/stocks/x/../admin/x", "/api/stocks/admin/x"),
            ("/api/stocks/./admin/x", "/api/stocks/admin/x"),
            ("//api///stocks/", "/api/stocks/"),
            ("/api/stocks/x/..", "/api/stocks/"),
            ("/api/stocks/x/.", "/api/stocks/x/"),
            ("/a/b/../../", "/"),
            ("/.hidden/x", "/.hidden/x"),
            ("/a/...", "/a/..."),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept() {
        let cases = [
            ("/api/public/%2e%2e/stocks/admin/x", "/api/stocks/admin/x"),
            ("/api/public/%2E%2e/stocks/admin/x", "/api/stocks/admin/x"),
            ("/api/stocks/%2e/admin/x", "/api/stocks/admin/x"),
            ("/api/%73tocks/%41", "/api/stocks/A"),
            ("/api/stocks/x%20y", "/api/stocks/x%20y"),
            ("/api/stocks/x%c3%a9", "/api/stocks/x%C3%A9"),
            ("/api/stocks/%252e%252e/", "/api/stocks/%252e%252e/"),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        let cases = [
            (
                "/api/public/..%2fstocks/admin/x",
                PathError::EncodedSeparator,
            ),
            ("/api/public/..%2Fstocks", PathError::EncodedSeparator),
            ("/api/public/..%5cstocks", PathError::EncodedSeparator),
            ("/api/stocks/%00", PathError::EncodedSeparator),
            ("/api/stocks/..\\admin", PathError::Byte),
            ("/api/stocks/\u{e9}", PathError::Byte),
            ("/api/stocks/%2", PathError::Escape),
            ("/api/stocks/%zz", PathError::Escape),
            ("/..", PathError::AboveRoot),
            ("/api/../../etc", PathError::AboveRoot),
            ("/%2e%2e/x", PathError::AboveRoot),
            ("/api/public/..;/stocks/admin/x", PathError::DotParameter),
            ("/api/stocks/.;x/admin", PathError::DotParameter),
            ("/api/public/..%3b/stocks", PathError::DotParameter),
            ("api/stocks", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for raw in [
            "/api/public/%2e%2e/stocks//admin/./x/",
            "/a/%7e/b%20c/../d",
            "/x/%2541",
        ] {
            let once = norm(raw).expect("normalized");
            assert_eq!(norm(&once).as_deref(), Ok(once.as_str()), "{raw}");
        }
    }
}

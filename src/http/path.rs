//! Request-path normalisation, so that hub matching and access lists see the
//! same path Vaultwarden will route, whatever spelling the client chose.
//!
//! The rules, applied to the path only (the query is never touched):
//! 1. Percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!    decoded; every other escape is kept, with its hex digits upper-cased.
//! 2. An escape that is not two hex digits, or that encodes `/`, `\`, or a
//!    control character (`%00`–`%1F`, `%7F`), makes the request a 400: no
//!    Vaultwarden route needs them and they are how path checks get dodged.
//! 3. Runs of `/` become one `/`.
//! 4. `.` and `..` segments are resolved (RFC 3986 §5.2.4); `..` never climbs
//!    above the root.
//!
//! The result is what Vaultwarden receives. Access lists additionally compare
//! case-insensitively and ignore `;parameters` in segments; see [`match_key`].

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with /")]
    NotAbsolute,
    #[error("the path has a malformed percent-escape")]
    BadEscape,
    #[error("the path has an encoded slash, backslash or control character")]
    ForbiddenEscape,
}

/// Normalises an origin-form path; borrows when nothing changes.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(path)?;
    let needs_segments = decoded.contains("//") || decoded.split('/').any(|s| s == "." || s == "..");
    if !needs_segments {
        return Ok(decoded);
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "" if i != last => {}
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    Ok(Cow::Owned(format!("/{}", out.join("/"))))
}

fn decode_unreserved(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.contains('%') {
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
        let value = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|_| hex.iter().all(u8::is_ascii_hexdigit))
            .ok_or(PathError::BadEscape)?;
        match value {
            b'/' | b'\\' | 0x00..=0x1f | 0x7f => return Err(PathError::ForbiddenEscape),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b),
            b => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
        i += 3;
    }
    // Only ASCII was replaced by ASCII, so the input's UTF-8 is intact.
    Ok(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

/// The form access lists compare: lower-cased, each segment cut at `;`.
/// (`/Admin;x=1/` and `/admin/` have the same key.)
/// Borrowed when there is nothing to change, as for nearly every request.
pub fn match_key(normalized: &str) -> Cow<'_, str> {
    if !normalized.bytes().any(|b| b == b';' || b.is_ascii_uppercase()) {
        return Cow::Borrowed(normalized);
    }
    let mut key = String::with_capacity(normalized.len());
    for (i, segment) in normalized.split('/').enumerate() {
        if i > 0 {
            key.push('/');
        }
        key.push_str(segment.split(';').next().unwrap_or(""));
    }
    key.make_ascii_lowercase();
    Cow::Owned(key)
}

/// True when `key` (a [`match_key`]) is `prefix` or lies below it, segment-wise:
/// `/admin` covers `/admin` and `/admin/x`, not `/administrator`.
pub fn under(key: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || key == prefix || key.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn ordinary_paths_are_unchanged_and_borrowed() {
        for p in ["/", "/api/sync", "/notifications/hub", "/attachments/abc/def", "/a/b/"] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(x)) if x == p), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_double_slashes() {
        assert_eq!(n("/notifications/hub/../../api"), Ok("/api".into()));
        assert_eq!(n("/a/./b/../c"), Ok("/a/c".into()));
        assert_eq!(n("/../../etc"), Ok("/etc".into()));
        assert_eq!(n("//admin"), Ok("/admin".into()));
        assert_eq!(n("/api//sync///x"), Ok("/api/sync/x".into()));
        assert_eq!(n("/a/b/.."), Ok("/a/".into()));
        assert_eq!(n("/a/b/."), Ok("/a/b/".into()));
        assert_eq!(n("/.."), Ok("/".into()));
        assert_eq!(n("/a/..b/c"), Ok("/a/..b/c".into()), "..b is a name, not a dot segment");
    }

    #[test]
    fn escapes_of_unreserved_characters_are_decoded_first() {
        assert_eq!(n("/%2e%2e/admin"), Ok("/admin".into()));
        assert_eq!(n("/x/%2E./admin"), Ok("/admin".into()));
        assert_eq!(n("/%61dmin"), Ok("/admin".into()));
        assert_eq!(n("/a%20b"), Ok("/a%20b".into()), "reserved escapes stay escaped");
        assert_eq!(n("/a%3fb"), Ok("/a%3Fb".into()), "hex upper-cased");
    }

    #[test]
    fn dangerous_or_malformed_escapes_are_refused() {
        assert_eq!(n("/admin%2f"), Err(PathError::ForbiddenEscape));
        assert_eq!(n("/..%5cadmin"), Err(PathError::ForbiddenEscape));
        assert_eq!(n("/a%00"), Err(PathError::ForbiddenEscape));
        assert_eq!(n("/a%0d%0a"), Err(PathError::ForbiddenEscape));
        assert_eq!(n("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(n("/a%2"), Err(PathError::BadEscape));
        assert_eq!(n("/a%"), Err(PathError::BadEscape));
        assert_eq!(n("/a%+1"), Err(PathError::BadEscape));
        assert_eq!(n("*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn match_keys_ignore_case_and_parameters() {
        assert_eq!(match_key("/Admin;jsessionid=1/Users"), "/admin/users");
        assert_eq!(match_key("/a;x/;y/B;"), "/a//b");
        assert!(matches!(match_key("/api/sync"), Cow::Borrowed("/api/sync")));
        assert!(under(&match_key("/ADMIN"), "/admin"));
        assert!(under(&match_key("/admin;x"), "/admin"));
        assert!(under(&match_key("/admin/diagnostics"), "/admin"));
        assert!(under("/admin", "/admin/"));
        assert!(!under("/administrator", "/admin"));
        assert!(!under("/api/admin", "/admin"));
        assert!(under("/anything", "/"));
    }

    /// Truncated and stacked escapes, dot segments spelled every way: each
    /// gets a definite answer (that nothing panics is the property test's).
    #[test]
    fn odd_input_gets_a_definite_answer() {
        use PathError::*;
        for (p, want) in [
            ("/%", Err(BadEscape)),
            ("/%%", Err(BadEscape)),
            ("/%%%", Err(BadEscape)),
            ("/\u{e9}%", Err(BadEscape)),
            ("/%2e%2e%2f", Err(ForbiddenEscape)),
            ("/%e9", Ok("/%E9")),
            ("/.", Ok("/")),
            ("//", Ok("/")),
            ("/./..//.", Ok("/")),
            ("/%2e", Ok("/")),
        ] {
            assert_eq!(normalize(p).as_deref().map_err(|e| *e), want, "{p}");
        }
    }
}

//! What of a request may be written to a log: credentials in query strings
//! redacted, and every character that could end a field or a line, or
//! disguise one on a terminal, escaped.

use std::borrow::Cow;

/// Query parameters that carry credentials, redacted on every path:
/// `access_token` (hubs), `token` (attachment downloads, organisation
/// policy tokens, and `Token` on the anonymous hub), `t` (Send downloads),
/// `code` and `state` (SSO on `/identity/connect/oidc-signin`, the
/// `sso-connector.html` and `duo-redirect-connector.html` pages, the
/// login-with-device access code on `/api/auth-requests/<id>/response`),
/// `duo_code`. On every path rather than per route: a sub-path install, a
/// path spelling that normalises to the route, or a route Vaultwarden adds
/// later would each slip past a per-route list, and what is lost is only
/// the value of an ordinary `code`/`state`/`t` in a log line.
const SECRET_PARAMS: [&str; 6] = ["access_token", "token", "t", "code", "state", "duo_code"];

/// A query parameter's name as Vaultwarden (Rocket) reads it: `+` is a
/// space, `%XX` escapes decoded (any case); invalid escapes stay as written.
fn decoded_name(name: &str) -> Cow<'_, str> {
    if !name.contains(['%', '+']) {
        return Cow::Borrowed(name);
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b))) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Whether a `name=value` pair carries a credential: its decoded name, or
/// the part of it before a `.` or `[` (Rocket's nested-field syntax), is one
/// of [`SECRET_PARAMS`], in any case.
fn is_secret(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(n, _)| n);
    let name = decoded_name(name);
    let head = name.split(['.', '[']).next().unwrap_or("");
    SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(&name) || s.eq_ignore_ascii_case(head))
}

/// `path?query` with the values of credential parameters replaced by
/// `REDACTED`. Pairs are split on `&` and `;` (more than Rocket splits on:
/// redacting too much is harmless).
pub fn redact(path_and_query: &str) -> Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    if !query.split(['&', ';']).any(is_secret) {
        return Cow::Borrowed(path_and_query);
    }
    let mut out = String::with_capacity(path_and_query.len());
    out.push_str(path);
    out.push('?');
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some((name, _)) if is_secret(pair) => {
                out.push_str(name);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
        if end == rest.len() {
            break;
        }
        out.push_str(&rest[end..end + 1]);
        rest = &rest[end + 1..];
    }
    Cow::Owned(out)
}

/// Client-derived text made safe for a log line: `"` and `\` escaped with a
/// backslash, control characters (C0, DEL, C1) as `\xNN` or `\u{NNNN}`, so
/// no field can end early and no line can be split or forged.
///
/// For the text format and the process log's fields. Not serde_json's
/// escaping (the JSON format has that): the text line keeps nginx's `\xNN`
/// notation, and JSON strings leave DEL, the C1 controls (U+009B is CSI to
/// some terminals), the line and paragraph separators and the bidirectional
/// marks, embeddings, overrides and isolates as they are — a log-injection
/// defence this keeps. Nor tracing-subscriber's: it escapes ESC, BEL, BS,
/// FF, DEL and C1 only, so a field could still end a line or reorder it.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '"' || c == '\\' || needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x100 && c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Control characters, and the invisible ones that move text around on a
/// terminal (line and paragraph separators, bidirectional overrides).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_tokens_in_every_spelling() {
        assert_eq!(
            redact("/notifications/hub?access_token=eyJ.x.y"),
            "/notifications/hub?access_token=REDACTED"
        );
        assert_eq!(
            redact("/notifications/anonymous-hub?Token=abc"),
            "/notifications/anonymous-hub?Token=REDACTED"
        );
        assert_eq!(redact("/attachments/c/f?token=abc&x=1"), "/attachments/c/f?token=REDACTED&x=1");
        assert_eq!(redact("/api/sends/id/file?t=abc"), "/api/sends/id/file?t=REDACTED");
        assert_eq!(
            redact("/x?ACCESS_TOKEN=a&access_token=b"),
            "/x?ACCESS_TOKEN=REDACTED&access_token=REDACTED"
        );
    }

    #[test]
    fn leaves_other_queries_alone() {
        assert_eq!(redact("/api/sync?excludeDomains=true"), "/api/sync?excludeDomains=true");
        assert_eq!(redact("/alive"), "/alive");
        assert_eq!(redact("/x?tt=1&token_type=2"), "/x?tt=1&token_type=2");
        assert_eq!(redact("/x?"), "/x?");
    }

    #[test]
    fn a_secret_name_without_value_is_still_marked() {
        assert_eq!(redact("/x?token"), "/x?token");
        assert_eq!(redact("/x?token=&a"), "/x?token=REDACTED&a");
    }

    #[test]
    fn names_are_compared_as_rocket_decodes_them() {
        for name in [
            "access%5Ftoken",
            "access%5ftoken",
            "%61ccess_token",
            "ACCESS%5FTOKEN",
            "acc%65ss%5Ftok%65n",
            "%74",
            "%54oken",
            "to%6Ben",
            "access_token.x",
            "access_token[0]",
            "code",
            "Code",
            "%63ode",
            "state",
            "st%61te",
            "duo_code",
            "duo%5Fcode",
        ] {
            let line = redact(&format!("/p?a=1&{name}=s3cr3t&b=2")).into_owned();
            assert!(!line.contains("s3cr3t"), "{name}: {line}");
            assert_eq!(line, format!("/p?a=1&{name}=REDACTED&b=2"));
        }
        // `;` separates too, and what is not a secret is kept byte for byte.
        assert_eq!(redact("/p?a=1;token=s3cr3t;b=%2B"), "/p?a=1;token=REDACTED;b=%2B");
        // A `+` is a space, so `access+token` is another name; a broken escape stays.
        assert_eq!(redact("/p?access+token=x&tok%en=y&%=z"), "/p?access+token=x&tok%en=y&%=z");
        assert_eq!(decoded_name("a+b%20c%zz%4"), "a b c%zz%4");
    }

    #[test]
    fn sso_duo_and_device_codes_are_redacted() {
        assert_eq!(
            redact("/identity/connect/oidc-signin?code=abc&state=xyz"),
            "/identity/connect/oidc-signin?code=REDACTED&state=REDACTED"
        );
        assert_eq!(
            redact("/duo-redirect-connector.html?duo_code=a&code=b&state=c"),
            "/duo-redirect-connector.html?duo_code=REDACTED&code=REDACTED&state=REDACTED"
        );
        assert_eq!(
            redact("/api/auth-requests/id/response?code=abc"),
            "/api/auth-requests/id/response?code=REDACTED"
        );
    }

    #[test]
    fn escape_leaves_no_way_to_end_a_field_or_a_line() {
        assert_eq!(escape("/plain/path?a=1"), "/plain/path?a=1");
        assert_eq!(escape("a\"b\\c\nd\r\u{7f}\u{85}\u{202e}é"), "a\\\"b\\\\c\\x0ad\\x0d\\x7f\\x85\\u{202e}é");
    }

    #[test]
    fn escape_covers_what_serde_json_leaves_as_it_is() {
        // serde_json writes each of these raw into a JSON string: the reason
        // the text format and the process log have an escape of their own.
        let invisible = [
            '\u{7f}', '\u{80}', '\u{85}', '\u{9b}', '\u{9f}', '\u{2028}', '\u{2029}', '\u{200e}', '\u{200f}',
        ];
        let bidi = ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}');
        for c in invisible.into_iter().chain(bidi) {
            let text = format!("a{c}b");
            assert!(serde_json::to_string(&text).unwrap().contains(c), "{c:?}");
            let escaped = escape(&text);
            let code = c as u32;
            let want = if code < 0x100 { format!("a\\x{code:02x}b") } else { format!("a\\u{{{code:04x}}}b") };
            assert_eq!(escaped, want, "{c:?}");
        }
        // Every C0 control, `"` and `\` become printable ASCII.
        for b in 0u8..0x20 {
            assert_eq!(escape(&char::from(b).to_string()), format!("\\x{b:02x}"));
        }
        assert_eq!(escape("\"\\"), "\\\"\\\\");
        // Ordinary text, whatever its script, is left alone, borrowed.
        for text in ["é/日本語/Ünïcödé", "👩\u{200d}💻 ZWJ emoji", "soft\u{ad}hyphen", "tab-free ' quote"]
        {
            assert!(matches!(escape(text), Cow::Borrowed(_)), "{text}");
        }
        // Nothing escape() writes needs escaping again, over the whole of Unicode.
        let all: String = (0..=0x10ffff).filter_map(char::from_u32).collect();
        let escaped = escape(&all);
        assert!(!escaped.chars().any(needs_escape));
    }
}

//! Which requests are logins, and what Vaultwarden's answer to one says —
//! read from Vaultwarden 1.37's source (`src/api/identity.rs`,
//! `src/api/core/two_factor/*`, `src/api/admin.rs`, `src/error.rs`):
//!
//! - `POST {base}/identity/connect/token` (every client's login, the
//!   password, the second factor, an API key): 200 is a success. Every
//!   refusal is a 400 with JSON, in one of three shapes:
//!   - Vaultwarden's error model, `{"message": "Username or password is
//!     incorrect. Try again", …, "error": "", …}`: a wrong password or
//!     unknown user, a wrong TOTP ("Invalid TOTP code!"), e-mail, Duo,
//!     YubiKey or recovery code, a wrong API key — **a failure**;
//!   - `{"error": "invalid_grant", "error_description": "Two factor
//!     required.", "TwoFactorProviders": […], …}`: the password was right
//!     and the second factor is asked for (also when a remembered device's
//!     token has expired) — a normal step of every 2FA login, **never a
//!     failure**;
//!   - `{"error": "invalid_grant"}` alone: a refresh token refused. Refresh
//!     tokens are long random secrets nobody guesses; the devices that send
//!     stale ones are the owner's own (after a password change, say), and
//!     counting them would ban a household for its old laptop — **not
//!     counted**.
//!
//!   Its 429 (`LOGIN_RATELIMIT_*`) is Vaultwarden slowing an address down,
//!   not an answer about a password: not counted.
//! - `POST {base}/admin` (the admin page's login form): 401 is a wrong
//!   token, a 2xx or 3xx the admin page (a success).
//!
//! - `POST {base}/api/two-factor/send-email-login` (asks for the e-mail
//!   code; it checks the master password first, without a session, so it
//!   is a second front door for guessing whenever e-mail two-factor is on):
//!   a 400 whose message is "Username or password is incorrect" is **a
//!   failure**; any other answer is neither (a 200 only means a code was
//!   sent, so it resets nothing).
//!
//! Not counted: the `/api/accounts/…` password checks (`verify-password`,
//! changing the password or KDF, deleting the account). Each needs a
//! valid access token first, that is a completed login: they are not the
//! front door, and a wrong password there answers 400 from a session the
//! attacker already holds.
//!
//! Paths are compared segment by segment with empty segments dropped, as
//! Vaultwarden's router (Rocket) matches them: `/identity/connect/token/`
//! and `//identity//connect/token` reach the same handler.
//!
//! `base` is the path of Vaultwarden's `DOMAIN`, taken from `hub_paths`
//! (`/vault/notifications/hub` → `/vault`).

use http::{HeaderMap, Method, StatusCode};

/// At most this much of an answer is read to judge it. Vaultwarden's
/// refusals are a few hundred bytes (a WebAuthn challenge for many keys a
/// few KiB); a longer answer is passed on unjudged.
pub const BODY_PREFIX: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// `/identity/connect/token`.
    Token,
    /// The admin page's login.
    Admin,
    /// `/api/two-factor/send-email-login`: the password checked before an
    /// e-mail code is sent.
    EmailCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Failed,
    Succeeded,
    /// Neither (the second factor asked for, a refresh refused, a 404, a 5xx…).
    Neither,
}

/// What the status alone says, or that the body must be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Verdict(Verdict),
    Body,
}

/// The login paths of one configuration.
#[derive(Debug, Clone)]
pub struct Logins {
    token: String,
    admin: String,
    email_code: String,
}

impl Logins {
    pub fn new(hub_paths: &[String]) -> Logins {
        let base = hub_paths.iter().find_map(|p| p.strip_suffix("/notifications/hub")).unwrap_or("");
        Logins {
            token: format!("{base}/identity/connect/token"),
            admin: format!("{base}/admin"),
            email_code: format!("{base}/api/two-factor/send-email-login"),
        }
    }

    /// Which login `method` on `path` (normalised) is, if any.
    pub fn of(&self, method: &Method, path: &str) -> Option<Login> {
        if method != Method::POST {
            return None;
        }
        if same_route(path, &self.token) {
            Some(Login::Token)
        } else if same_route(path, &self.admin) {
            Some(Login::Admin)
        } else if same_route(path, &self.email_code) {
            Some(Login::EmailCode)
        } else {
            None
        }
    }
}

/// Whether Vaultwarden's router takes `path` for `route`: the same
/// segments, empty ones dropped (a trailing or doubled `/` changes nothing).
fn same_route(path: &str, route: &str) -> bool {
    fn segments(p: &str) -> impl Iterator<Item = &str> {
        p.split('/').filter(|s| !s.is_empty())
    }
    // Most paths are no login at all: their length alone tells.
    path.len() >= route.len() && segments(path).eq(segments(route))
}

/// What Vaultwarden's status (and headers) say about a `login`.
pub fn by_status(login: Login, status: StatusCode, headers: &HeaderMap) -> Needs {
    match login {
        Login::Token if status == StatusCode::OK => Needs::Verdict(Verdict::Succeeded),
        // Compressed, it would not be read as JSON: Vaultwarden does not
        // compress, so such an answer is not Vaultwarden's refusal.
        Login::Token
            if status == StatusCode::BAD_REQUEST && !headers.contains_key(http::header::CONTENT_ENCODING) =>
        {
            Needs::Body
        }
        Login::EmailCode
            if status == StatusCode::BAD_REQUEST && !headers.contains_key(http::header::CONTENT_ENCODING) =>
        {
            Needs::Body
        }
        Login::Admin if status == StatusCode::UNAUTHORIZED => Needs::Verdict(Verdict::Failed),
        Login::Admin if status.is_success() || status.is_redirection() => Needs::Verdict(Verdict::Succeeded),
        _ => Needs::Verdict(Verdict::Neither),
    }
}

/// What a 400 `body` (whole) to `login` says.
pub fn by_body(login: Login, body: &[u8]) -> Verdict {
    let Ok(serde_json::Value::Object(answer)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Verdict::Neither;
    };
    if login == Login::EmailCode {
        // Its other refusals (no such two-factor, a disabled account after
        // the right password) say nothing about a guess.
        let wrong_password = answer
            .get("message")
            .and_then(|m| m.as_str())
            .is_some_and(|m| m.starts_with("Username or password is incorrect"));
        return if wrong_password { Verdict::Failed } else { Verdict::Neither };
    }
    if answer.keys().any(|k| k.eq_ignore_ascii_case("TwoFactorProviders")) {
        return Verdict::Neither;
    }
    let refresh_refused = !answer.keys().any(|k| k.eq_ignore_ascii_case("message"))
        && answer.get("error").and_then(|e| e.as_str()) == Some("invalid_grant");
    if refresh_refused {
        return Verdict::Neither;
    }
    Verdict::Failed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies as Vaultwarden 1.37.2's `src/error.rs` serializes them; the
    /// fields that decide are checked against the real binary by
    /// tests/it/login_guard.rs.
    const WRONG_PASSWORD: &str = r#"{"message":"Username or password is incorrect. Try again","validationErrors":{"":["Username or password is incorrect. Try again"]},"errorModel":{"message":"Username or password is incorrect. Try again","object":"error"},"error":"","error_description":"","exceptionMessage":null,"exceptionStackTrace":null,"innerExceptionMessage":null,"object":"error"}"#;
    const TWO_FACTOR_REQUIRED: &str = r#"{"error":"invalid_grant","error_description":"Two factor required.","TwoFactorProviders":["0"],"TwoFactorProviders2":{"0":null},"MasterPasswordPolicy":{"Object":"masterPasswordPolicy"}}"#;
    const WRONG_TOTP: &str = r#"{"message":"Invalid TOTP code! Server time: 2026-12-04 03:00:00 UTC IP: 127.0.0.1","validationErrors":{"":["Invalid TOTP code! Server time: 2026-12-04 03:00:00 UTC IP: 127.0.0.1"]},"errorModel":{"message":"Invalid TOTP code! Server time: 2026-12-04 03:00:00 UTC IP: 127.0.0.1","object":"error"},"error":"","error_description":"","exceptionMessage":null,"exceptionStackTrace":null,"innerExceptionMessage":null,"object":"error"}"#;
    const REFRESH_REFUSED: &str = r#"{"error":"invalid_grant"}"#;

    #[test]
    fn token_answers() {
        let by_body = |b: &[u8]| by_body(Login::Token, b);
        assert_eq!(by_body(WRONG_PASSWORD.as_bytes()), Verdict::Failed);
        assert_eq!(by_body(WRONG_TOTP.as_bytes()), Verdict::Failed);
        assert_eq!(by_body(TWO_FACTOR_REQUIRED.as_bytes()), Verdict::Neither, "a normal 2FA step");
        assert_eq!(by_body(REFRESH_REFUSED.as_bytes()), Verdict::Neither);
        assert_eq!(by_body(b"<html>400</html>"), Verdict::Neither, "not Vaultwarden's JSON");
        assert_eq!(by_body(b"[1]"), Verdict::Neither);
        let h = HeaderMap::new();
        assert_eq!(by_status(Login::Token, StatusCode::OK, &h), Needs::Verdict(Verdict::Succeeded));
        assert_eq!(by_status(Login::Token, StatusCode::BAD_REQUEST, &h), Needs::Body);
        for s in [429, 404, 500, 502] {
            let s = StatusCode::from_u16(s).unwrap();
            assert_eq!(by_status(Login::Token, s, &h), Needs::Verdict(Verdict::Neither), "{s}");
        }
    }

    #[test]
    fn email_code_answers() {
        // Vaultwarden's `send_email_login`: the password checked first, then
        // whether e-mail two-factor is set up.
        const NOT_SET_UP: &str = r#"{"message":"Two factor not found","validationErrors":{"":["Two factor not found"]},"errorModel":{"message":"Two factor not found","object":"error"},"error":"","error_description":"","exceptionMessage":null,"exceptionStackTrace":null,"innerExceptionMessage":null,"object":"error"}"#;
        let h = HeaderMap::new();
        assert_eq!(by_status(Login::EmailCode, StatusCode::BAD_REQUEST, &h), Needs::Body);
        assert_eq!(
            by_status(Login::EmailCode, StatusCode::OK, &h),
            Needs::Verdict(Verdict::Neither),
            "a code sent"
        );
        assert_eq!(by_body(Login::EmailCode, WRONG_PASSWORD.as_bytes()), Verdict::Failed);
        assert_eq!(by_body(Login::EmailCode, NOT_SET_UP.as_bytes()), Verdict::Neither);
        assert_eq!(by_body(Login::EmailCode, TWO_FACTOR_REQUIRED.as_bytes()), Verdict::Neither);
    }

    #[test]
    fn admin_answers() {
        let h = HeaderMap::new();
        assert_eq!(by_status(Login::Admin, StatusCode::UNAUTHORIZED, &h), Needs::Verdict(Verdict::Failed));
        assert_eq!(by_status(Login::Admin, StatusCode::OK, &h), Needs::Verdict(Verdict::Succeeded));
        assert_eq!(by_status(Login::Admin, StatusCode::SEE_OTHER, &h), Needs::Verdict(Verdict::Succeeded));
        assert_eq!(
            by_status(Login::Admin, StatusCode::TOO_MANY_REQUESTS, &h),
            Needs::Verdict(Verdict::Neither)
        );
    }

    #[test]
    fn login_paths_follow_the_domain_path() {
        let plain = Logins::new(&["/notifications/hub".into(), "/notifications/anonymous-hub".into()]);
        assert_eq!(plain.of(&Method::POST, "/identity/connect/token"), Some(Login::Token));
        assert_eq!(plain.of(&Method::GET, "/identity/connect/token"), None);
        assert_eq!(plain.of(&Method::POST, "/admin"), Some(Login::Admin));
        assert_eq!(plain.of(&Method::POST, "/admin/"), Some(Login::Admin));
        assert_eq!(plain.of(&Method::POST, "/admin/users/x/delete"), None);
        assert_eq!(plain.of(&Method::POST, "/api/accounts/verify-password"), None);
        // Rocket drops empty segments: these reach the same handlers.
        for spelled in ["/identity/connect/token/", "//identity//connect/token", "/identity/connect/token//"]
        {
            assert_eq!(plain.of(&Method::POST, spelled), Some(Login::Token), "{spelled}");
        }
        assert_eq!(plain.of(&Method::POST, "/identity/connect/tokens"), None);
        assert_eq!(plain.of(&Method::POST, "/identity/connect"), None);
        assert_eq!(plain.of(&Method::POST, "//admin//"), Some(Login::Admin));
        assert_eq!(plain.of(&Method::POST, "/api/two-factor/send-email-login"), Some(Login::EmailCode));
        assert_eq!(plain.of(&Method::POST, "/api/two-factor/send-email-login/"), Some(Login::EmailCode));
        let sub = Logins::new(&["/vault/notifications/hub".into()]);
        assert_eq!(sub.of(&Method::POST, "/vault/identity/connect/token"), Some(Login::Token));
        assert_eq!(sub.of(&Method::POST, "/identity/connect/token"), None);
        assert_eq!(sub.of(&Method::POST, "/vault/admin"), Some(Login::Admin));
    }
}

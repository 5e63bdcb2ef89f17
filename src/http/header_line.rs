//! The one-header-line limit (`[limits] max_header_line`, 431) for HTTP/2,
//! where hyper hands over fields already HPACK-decoded. HTTP/1.1 lines are
//! cut in the raw bytes, before hyper parses them (`h1_guard`).
//!
//! A field counts as its name plus its value. Cookie crumbs (RFC 9113
//! §8.2.3: HTTP/2 clients send each cookie as a field of its own) are
//! counted one by one, before the proxy joins them into the one `Cookie`
//! Vaultwarden receives: that joined line may exceed the limit, as a
//! browser's cookies for the domain add up, and is bounded by HTTP/2's
//! header-list size (64 KiB).

use http::{Request, Version};

/// Whether an HTTP/2 request has a header field longer than `limit`
/// (answered 431 by the proxy).
pub fn has_long_field<B>(req: &Request<B>, limit: usize) -> bool {
    if req.version() != Version::HTTP_2 {
        return false;
    }
    match req.headers().iter().find(|(name, value)| name.as_str().len() + value.len() > limit) {
        Some((name, _)) => {
            tracing::debug!(field = %name, "refused an HTTP/2 header field longer than limits.max_header_line");
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h2(fields: &[(&str, usize)]) -> Request<()> {
        let mut r = Request::builder().version(Version::HTTP_2).uri("https://a/");
        for (name, len) in fields {
            r = r.header(*name, "v".repeat(*len));
        }
        r.body(()).unwrap()
    }

    #[test]
    fn a_field_over_the_limit_is_431_counting_name_and_value() {
        assert!(!has_long_field(&h2(&[("x-a", 97)]), 100));
        assert!(has_long_field(&h2(&[("x-a", 1), ("x-b", 98)]), 100));
    }

    #[test]
    fn cookie_crumbs_count_one_by_one() {
        let crumbs: Vec<(&str, usize)> = (0..20).map(|_| ("cookie", 90)).collect();
        assert!(!has_long_field(&h2(&crumbs), 100));
        assert!(has_long_field(&h2(&[("cookie", 95)]), 100));
    }

    #[test]
    fn http1_is_left_to_the_guard() {
        let r = Request::builder().header("x", "v".repeat(500)).body(()).unwrap();
        assert!(!has_long_field(&r, 100));
    }
}

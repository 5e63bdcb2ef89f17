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

use http::{header, HeaderValue, Request, Response, StatusCode, Version};

use crate::body::{self, ProxyBody};

/// A 431 when an HTTP/2 request has a header field longer than `limit`.
pub fn refuse_long_fields<B>(req: &Request<B>, limit: usize) -> Option<Response<ProxyBody>> {
    if req.version() != Version::HTTP_2 {
        return None;
    }
    let long = req.headers().iter().find(|(name, value)| name.as_str().len() + value.len() > limit)?;
    tracing::debug!(field = %long.0, "refused an HTTP/2 header field longer than limits.max_header_line");
    let mut resp = Response::new(body::full(format!(
        "431 Request Header Fields Too Large\n\nvaultgate: a header field is longer than {limit} bytes.\n"
    )));
    *resp.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(resp)
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
        assert!(refuse_long_fields(&h2(&[("x-a", 97)]), 100).is_none());
        let resp = refuse_long_fields(&h2(&[("x-a", 1), ("x-b", 98)]), 100).unwrap();
        assert_eq!(resp.status(), 431);
    }

    #[test]
    fn cookie_crumbs_count_one_by_one() {
        let crumbs: Vec<(&str, usize)> = (0..20).map(|_| ("cookie", 90)).collect();
        assert!(refuse_long_fields(&h2(&crumbs), 100).is_none());
        assert!(refuse_long_fields(&h2(&[("cookie", 95)]), 100).is_some());
    }

    #[test]
    fn http1_is_left_to_the_guard() {
        let r = Request::builder().header("x", "v".repeat(500)).body(()).unwrap();
        assert!(refuse_long_fields(&r, 100).is_none());
    }
}

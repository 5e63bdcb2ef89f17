//! The request head as Vaultwarden receives it, and how its body is
//! delimited. Pure: `proxy/exchange.rs` writes the bytes.
//!
//! The client's own framing fields never pass: hyper (HTTP/1.1) or h2
//! (HTTP/2) has checked the body against them, and the head gets exactly
//! one of ours, so Vaultwarden cannot read the body's end differently
//! from the way we send it.

use std::io::Write;

use http::header;
use http::Method;

use super::response_head::digits;

/// How a request's body is delimited on the way to Vaultwarden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// No body (and no length said).
    Nothing,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`: HTTP/2 bodies of unknown length.
    Chunked,
}

impl Sending {
    /// From the client's `Content-Length` (checked by hyper, or by h2
    /// against the DATA it carries) and whether a body follows. Methods that
    /// carry a body get `Content-Length: 0` for an empty one, as HTTP/2's
    /// `POST` without DATA frames must reach a server that wants a length.
    pub fn of(parts: &http::request::Parts, body_follows: bool) -> Sending {
        let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| digits(v.as_bytes()));
        match declared {
            Some(n) => Sending::Length(n),
            None if body_follows => Sending::Chunked,
            None if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) => Sending::Length(0),
            None => Sending::Nothing,
        }
    }
}

/// The request head as Vaultwarden gets it: request line, the fields
/// (framing ones replaced by ours), the blank line.
pub fn encode(parts: &http::request::Parts, sending: Sending) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Vec::with_capacity(64 + target.len() + parts.headers.len() * 48);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match sending {
        Sending::Nothing => {}
        // Into the head itself: no string of its own per request.
        Sending::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Sending::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(req: Request<()>) -> http::request::Parts {
        req.into_parts().0
    }

    #[test]
    fn the_head_carries_our_framing_only() {
        let p = parts(
            Request::post("/api/ciphers?x=1")
                .header("host", "vault.example")
                .header("content-length", "5")
                .header("transfer-encoding", "chunked")
                .body(())
                .unwrap(),
        );
        let head = encode(&p, Sending::Chunked);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /api/ciphers?x=1 HTTP/1.1\r\nhost: vault.example\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let head = encode(&p, Sending::Length(5));
        assert!(String::from_utf8(head)
            .unwrap()
            .ends_with("host: vault.example\r\ncontent-length: 5\r\n\r\n"));
    }

    #[test]
    fn framing_follows_the_declared_length_then_the_body() {
        let with = |method: Method, cl: Option<&str>| {
            let mut b = Request::builder().method(method).uri("/");
            if let Some(cl) = cl {
                b = b.header("content-length", cl);
            }
            parts(b.body(()).unwrap())
        };
        assert_eq!(Sending::of(&with(Method::POST, Some("7")), true), Sending::Length(7));
        assert_eq!(Sending::of(&with(Method::POST, None), true), Sending::Chunked);
        assert_eq!(Sending::of(&with(Method::POST, None), false), Sending::Length(0));
        assert_eq!(Sending::of(&with(Method::GET, None), false), Sending::Nothing);
        assert_eq!(Sending::of(&with(Method::GET, Some("0")), false), Sending::Length(0));
    }
}

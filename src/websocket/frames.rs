//! WebSocket framing (RFC 6455 §5.2), only as far as the splice needs it:
//! where frames end, and the Close frames it sends when shutting down.

use std::time::Duration;

/// A Close frame with status 1001 (going away) from the proxy to the client:
/// servers' frames are not masked.
pub const CLOSE_TO_CLIENT: &[u8] = &[0x88, 0x02, 0x03, 0xe9];
/// The same towards Vaultwarden, masked as frames from a client must be.
pub const CLOSE_TO_UPSTREAM: &[u8] = &[0x88, 0x82, 0x1f, 0x2e, 0x3d, 0x4c, 0x03 ^ 0x1f, 0xe9 ^ 0x2e];
/// How long a stopping tunnel waits for a frame boundary to send its Close.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Follows WebSocket frame boundaries in a byte stream (RFC 6455 §5.2), so a
/// Close can be inserted between frames, never inside one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Frames {
    /// Header bytes of the frame being read (at most 14).
    header: Vec<u8>,
    /// Payload bytes still to pass.
    payload: u64,
}

impl Frames {
    pub fn at_boundary(&self) -> bool {
        self.header.is_empty() && self.payload == 0
    }

    pub fn advance(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.payload > 0 {
                let take = self.payload.min(data.len() as u64);
                self.payload -= take;
                data = &data[take as usize..];
                continue;
            }
            self.header.push(data[0]);
            data = &data[1..];
            if let Some(len) = Self::payload_len(&self.header) {
                self.header.clear();
                self.payload = len;
            }
        }
    }

    /// The payload length once `header` is complete.
    fn payload_len(header: &[u8]) -> Option<u64> {
        let second = *header.get(1)?;
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        let (ext, len) = match second & 0x7f {
            126 => (2, u64::from(u16::from_be_bytes([*header.get(2)?, *header.get(3)?]))),
            127 => (8, u64::from_be_bytes(header.get(2..10)?.try_into().ok()?)),
            n => (0, u64::from(n)),
        };
        (header.len() == 2 + ext + mask).then_some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_boundaries_are_followed_across_splits() {
        // A masked 3-byte frame, a 300-byte frame (16-bit length), an empty ping.
        let mut stream = vec![0x81, 0x83, 1, 2, 3, 4, b'x', b'y', b'z', 0x82, 126, 0x01, 0x2c];
        stream.extend(std::iter::repeat_n(7u8, 300));
        stream.extend([0x89, 0x00]);
        for step in [1, 2, 5, 64] {
            let mut frames = Frames::default();
            let mut boundaries = Vec::new();
            let mut at = 0;
            for chunk in stream.chunks(step) {
                for &b in chunk {
                    frames.advance(&[b]);
                    at += 1;
                    if frames.at_boundary() {
                        boundaries.push(at);
                    }
                }
            }
            assert_eq!(boundaries, [9, 9 + 4 + 300, stream.len()], "step {step}");
        }
        let mut frames = Frames::default();
        frames.advance(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(frames.payload, 65536, "64-bit length");
    }
}

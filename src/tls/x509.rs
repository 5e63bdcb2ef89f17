//! The two dates of an X.509 certificate, read straight from DER: enough
//! to report days left (`check`) and to schedule ACME renewals.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The notAfter of an X.509 certificate (DER).
pub fn not_after(cert: &[u8]) -> Option<SystemTime> {
    validity(cert).map(|(_, end)| end)
}

/// notBefore and notAfter of an X.509 certificate (DER): Certificate →
/// tbsCertificate → validity. Just enough DER to find them.
pub fn validity(cert: &[u8]) -> Option<(SystemTime, SystemTime)> {
    fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *data.first()?;
        let first = *data.get(1)?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            let bytes = data.get(2..2 + n)?;
            (bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), 2 + n)
        };
        let body = data.get(header..header + len)?;
        Some((tag, body, &data[header + len..]))
    }
    let (_, cert, _) = tlv(cert)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial, signature algorithm, issuer
    }
    let (_, validity, _) = tlv(rest)?;
    let (tag, start, after_not_before) = tlv(validity)?;
    let not_before = time(tag, start)?;
    let (tag, end, _) = tlv(after_not_before)?;
    Some((not_before, time(tag, end)?))
}

/// A DER UTCTime (tag 0x17) or GeneralizedTime (0x18) in UTC.
fn time(tag: u8, value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    let digits = match tag {
        0x17 => {
            // UTCTime YYMMDDHHMMSSZ
            let yy: i64 = text.get(0..2)?.parse().ok()?;
            format!("{}{}", if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..12)?)
        }
        0x18 => text.get(0..14)?.to_string(),
        _ => return None,
    };
    let n = |r: std::ops::Range<usize>| digits.get(r).and_then(|s| s.parse::<i64>().ok());
    let (y, m, d, hh, mm, ss) = (n(0..4)?, n(4..6)?, n(6..8)?, n(8..10)?, n(10..12)?, n(12..14)?);
    // Days from civil (Howard Hinnant's algorithm).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_dates_from_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["x.test".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 7, 15);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (start, end) = validity(cert.der()).unwrap();
        // 2030-01-02 and 2051-07-15 (GeneralizedTime past 2049), midnight UTC.
        assert_eq!(start.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_893_542_400);
        assert_eq!(end.duration_since(UNIX_EPOCH).unwrap().as_secs(), 2_572_992_000);
        assert_eq!(not_after(cert.der()), Some(end));
    }

    #[test]
    fn junk_is_none() {
        assert_eq!(validity(b"\x30\x03junk"), None);
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}

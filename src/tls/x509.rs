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

/// A DER UTCTime (tag 0x17) or GeneralizedTime (0x18) in UTC, from 1970 on.
/// The calendar is the `time` crate's: a date or time of day that does not
/// exist (month 13, 30 February, 24:00, second 60) is none, as it is to
/// rustls-webpki, which refuses such a certificate.
fn time(tag: u8, value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    let digits = match tag {
        0x17 => {
            // UTCTime YYMMDDHHMMSSZ
            let yy: i32 = text.get(0..2)?.parse().ok()?;
            format!("{}{}", if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..12)?)
        }
        0x18 => text.get(0..14)?.to_string(),
        _ => return None,
    };
    let n = |r: std::ops::Range<usize>| digits.get(r).and_then(|s| s.parse::<u8>().ok());
    let year: i32 = digits.get(0..4)?.parse().ok()?;
    let month = time::Month::try_from(n(4..6)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, n(6..8)?).ok()?;
    let at = date.with_hms(n(8..10)?, n(10..12)?, n(12..14)?).ok()?;
    let secs = u64::try_from(at.assume_utc().unix_timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
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

    fn secs(tag: u8, text: &str) -> Option<u64> {
        time(tag, text.as_bytes()).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
    }

    #[test]
    fn utc_and_generalized_times_at_the_calendar_edges() {
        const UTC: u8 = 0x17;
        const GENERALIZED: u8 = 0x18;
        assert_eq!(secs(UTC, "700101000000Z"), Some(0));
        assert_eq!(secs(UTC, "000229000000Z"), Some(951_782_400), "2000 is a leap year");
        assert_eq!(secs(UTC, "240229235959Z"), Some(1_709_251_199));
        assert_eq!(secs(UTC, "491231235959Z"), Some(2_524_607_999), "YY below 50 is 20YY");
        assert_eq!(secs(UTC, "261128100000Z"), Some(1_795_860_000));
        assert_eq!(secs(GENERALIZED, "20261128100000Z"), Some(1_795_860_000));
        assert_eq!(secs(GENERALIZED, "21000301000000Z"), Some(4_107_542_400));
        assert_eq!(secs(GENERALIZED, "99991231235959Z"), Some(253_402_300_799));
        // Before 1970 (YY 50 and up is 19YY) is none: not a date vaultgate schedules by.
        assert_eq!(secs(UTC, "500101000000Z"), None);
        assert_eq!(secs(GENERALIZED, "19691231235959Z"), None);
        // Too short, not digits, another tag.
        for (tag, text) in [
            (UTC, "2611281000"),
            (GENERALIZED, "202611281000Z"),
            (UTC, "26ab28100000Z"),
            (0x04, "261128100000Z"),
        ] {
            assert_eq!(secs(tag, text), None, "{text}");
        }
    }

    #[test]
    fn impossible_dates_are_none_as_webpki_has_them() {
        // The hand-written calendar rolled these over (30 February became
        // 2 March); `time` and rustls-webpki refuse them.
        for text in [
            "20260230000000Z",
            "20250229000000Z",
            "20261301000000Z",
            "20260001000000Z",
            "20260100000000Z",
            "20260101240000Z",
            "20260101006000Z",
            "20260101000060Z",
        ] {
            assert_eq!(secs(0x18, text), None, "{text}");
        }
        assert_eq!(secs(0x17, "260230000000Z"), None);
    }

    #[test]
    fn junk_is_none() {
        assert_eq!(validity(b"\x30\x03junk"), None);
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}

//! What vaultgate reads of an X.509 certificate, straight from DER: the
//! two dates (days left in `check`, ACME renewals), and the subject and
//! serial of a client certificate (logs, metrics, the subject header).
//! Only certificates rustls has parsed (ours, or a client's it verified)
//! and the operator's files are read here; nothing here decides trust.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long until a certificate's date, as log lines say it: `45s`,
/// `12m 5s`, `3h 20m`, `89d 23h`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// The notAfter of an X.509 certificate (DER).
pub fn not_after(cert: &[u8]) -> Option<SystemTime> {
    validity(cert).map(|(_, end)| end)
}

/// notBefore and notAfter of an X.509 certificate (DER): Certificate →
/// tbsCertificate → validity. Just enough DER to find them.
pub fn validity(cert: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let fields = tbs_fields(cert)?;
    let (_, validity, _) = tlv(fields.validity)?;
    let (tag, start, after_not_before) = tlv(validity)?;
    let not_before = time(tag, start)?;
    let (tag, end, _) = tlv(after_not_before)?;
    Some((not_before, time(tag, end)?))
}

/// The serial number of an X.509 certificate (DER), in lower-case hex as
/// `openssl x509 -serial` prints it (leading zero bytes of the DER integer
/// dropped).
pub fn serial(cert: &[u8]) -> Option<String> {
    let (tag, value, _) = tlv(tbs_fields(cert)?.serial)?;
    if tag != 0x02 || value.is_empty() {
        return None;
    }
    let start = value.iter().position(|b| *b != 0).unwrap_or(value.len() - 1);
    Some(value[start..].iter().map(|b| format!("{b:02x}")).collect())
}

/// The subject of an X.509 certificate (DER) as `CN=phone,O=Home` (RFC
/// 4514's order is reversed; this is the order the certificate holds, as
/// `openssl x509 -subject -nameopt compat` shows it). Only printable ASCII
/// comes out: anything else in a value is `\xNN`, and `,`, `=`, `+` and
/// `\` are escaped, so the text is safe in a log line or a header value.
pub fn subject(cert: &[u8]) -> Option<String> {
    let (tag, rdns, _) = tlv(tbs_fields(cert)?.subject)?;
    if tag != 0x30 {
        return None;
    }
    name(rdns)
}

/// A distinguished name (the RDNs inside its SEQUENCE, as rustls-webpki's
/// `subject()` and a CRL's `issuer()` give them) rendered as [`subject`] does.
pub fn name(mut rdns: &[u8]) -> Option<String> {
    let mut out = String::new();
    while !rdns.is_empty() {
        let (tag, mut set, rest) = tlv(rdns)?;
        rdns = rest;
        if tag != 0x31 {
            return None;
        }
        let mut first_in_set = true;
        while !set.is_empty() {
            let (_, attribute, rest) = tlv(set)?;
            set = rest;
            let (oid_tag, oid, value) = tlv(attribute)?;
            let (value_tag, value, _) = tlv(value)?;
            if oid_tag != 0x06 {
                return None;
            }
            if !out.is_empty() {
                out.push(if first_in_set { ',' } else { '+' });
            }
            first_in_set = false;
            out.push_str(&attribute_name(oid));
            out.push('=');
            // UTF8String, PrintableString, IA5String, TeletexString: bytes as
            // text; BMPString and the rest: escaped bytes all the same.
            let _ = value_tag;
            for &b in value {
                match b {
                    b',' | b'=' | b'+' | b'\\' => {
                        out.push('\\');
                        out.push(char::from(b));
                    }
                    0x20..=0x7e => out.push(char::from(b)),
                    _ => out.push_str(&format!("\\x{b:02x}")),
                }
            }
        }
    }
    Some(out)
}

/// The short name of an attribute type, or its dotted OID.
fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x05] => "serialNumber".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".into(),
        _ => {
            let mut arcs = Vec::new();
            let mut value: u64 = 0;
            for &b in oid {
                value = (value << 7) | u64::from(b & 0x7f);
                if b & 0x80 == 0 {
                    arcs.push(value);
                    value = 0;
                }
                if value > u64::MAX >> 8 {
                    return "?".into();
                }
            }
            let Some(first) = arcs.first().copied() else { return "?".into() };
            let (a, b) = if first < 80 { (first / 40, first % 40) } else { (2, first - 80) };
            let mut text = format!("{a}.{b}");
            for arc in &arcs[1..] {
                text.push_str(&format!(".{arc}"));
            }
            text
        }
    }
}

/// Whether a certificate (DER) names itself as its issuer: a root, or a
/// self-signed certificate that no chain can lead to.
pub fn is_self_issued(cert: &[u8]) -> Option<bool> {
    let fields = tbs_fields(cert)?;
    Some(whole_tlv(fields.issuer)? == whole_tlv(fields.subject)?)
}

/// The SubjectPublicKeyInfo of a certificate (DER), as encoded: compared
/// with a key's own to tell that the two belong together.
pub fn public_key_info(cert: &[u8]) -> Option<&[u8]> {
    whole_tlv(tlv(tbs_fields(cert)?.subject)?.2)
}

/// What a CA certificate's extensions say about its use as an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaUse {
    /// basicConstraints cA is TRUE.
    pub is_ca: bool,
    /// The key usage lets it sign CRLs (true without a key usage extension,
    /// as RFC 5280 has it).
    pub crl_sign: bool,
    /// Issuer and subject are the same name (a root, or a leaf made to sign itself).
    pub self_issued: bool,
}

/// basicConstraints, keyUsage and self-issuance of a certificate (DER).
pub fn ca_use(cert: &[u8]) -> Option<CaUse> {
    let fields = tbs_fields(cert)?;
    let (_, subject, _) = tlv(fields.subject)?;
    let (_, issuer, _) = tlv(fields.issuer)?;
    let mut found = CaUse { is_ca: false, crl_sign: true, self_issued: issuer == subject };
    // subjectPublicKeyInfo, then [1] and [2] unique IDs, then [3] extensions.
    let mut rest = tlv(tlv(fields.subject)?.2)?.2;
    while !rest.is_empty() {
        let (tag, value, after) = tlv(rest)?;
        rest = after;
        if tag != 0xa3 {
            continue;
        }
        let (_, mut extensions, _) = tlv(value)?;
        while !extensions.is_empty() {
            let (_, extension, after) = tlv(extensions)?;
            extensions = after;
            let (_, oid, mut rest) = tlv(extension)?;
            let (tag, _, after) = tlv(rest)?;
            if tag == 0x01 {
                rest = after; // critical
            }
            let (_, inner, _) = tlv(rest)?;
            match oid {
                // basicConstraints: SEQUENCE { cA BOOLEAN DEFAULT FALSE, … }
                [0x55, 0x1d, 0x13] => {
                    let (_, constraints, _) = tlv(inner)?;
                    found.is_ca = matches!(tlv(constraints), Some((0x01, [v], _)) if *v != 0);
                }
                // keyUsage: BIT STRING, cRLSign is bit 6.
                [0x55, 0x1d, 0x0f] => {
                    let (_, bits, _) = tlv(inner)?;
                    found.crl_sign = bits.get(1).is_some_and(|b| b & 0x02 != 0);
                }
                _ => {}
            }
        }
    }
    Some(found)
}

/// What of a CRL (DER) is checked against its anchor at load: the signed
/// bytes, the signature algorithm and the signature.
pub struct CrlParts<'a> {
    /// tbsCertList, tag and length included (what the signature covers).
    pub signed: &'a [u8],
    /// The signatureAlgorithm's AlgorithmIdentifier, inside its SEQUENCE.
    pub algorithm: &'a [u8],
    /// The signature's bits (the BIT STRING's unused-bits octet dropped).
    pub signature: &'a [u8],
}

pub fn crl_parts(crl: &[u8]) -> Option<CrlParts<'_>> {
    let (_, list, _) = tlv(crl)?;
    let (_, _, after_tbs) = tlv(list)?;
    let signed = &list[..list.len() - after_tbs.len()];
    let (_, algorithm, after_alg) = tlv(after_tbs)?;
    let (tag, bits, _) = tlv(after_alg)?;
    if tag != 0x03 || bits.first() != Some(&0) {
        return None;
    }
    Some(CrlParts { signed, algorithm, signature: &bits[1..] })
}

/// The fields of tbsCertificate that are read here, each with what follows it.
struct TbsFields<'a> {
    serial: &'a [u8],
    issuer: &'a [u8],
    validity: &'a [u8],
    subject: &'a [u8],
}

fn tbs_fields(cert: &[u8]) -> Option<TbsFields<'_>> {
    let (_, cert, _) = tlv(cert)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    let serial = rest;
    for _ in 0..2 {
        rest = tlv(rest)?.2; // serial, signature algorithm
    }
    let issuer = rest;
    let validity = tlv(rest)?.2;
    let subject = tlv(validity)?.2;
    Some(TbsFields { serial, issuer, validity, subject })
}

/// The first tag-length-value of `data`, header included.
fn whole_tlv(data: &[u8]) -> Option<&[u8]> {
    let (_, _, rest) = tlv(data)?;
    Some(&data[..data.len() - rest.len()])
}

/// One DER tag-length-value: the tag, the value, and what follows.
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n > 4 {
            return None;
        }
        let bytes = data.get(2..2 + n)?;
        (bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), 2 + n)
    };
    let body = data.get(header..header.checked_add(len)?)?;
    Some((tag, body, &data[header + len..]))
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
    fn subject_and_serial_as_openssl_shows_them() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CountryName, "NL");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Home, Inc.");
        params.distinguished_name.push(rcgen::DnType::CommonName, "phone\u{1b}[31m");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x8f, 0x01]));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject(cert.der()).as_deref(), Some("C=NL,O=Home\\, Inc.,CN=phone\\x1b[31m"));
        assert_eq!(serial(cert.der()).as_deref(), Some("8f01"));
        assert_eq!(attribute_name(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37]), "1.3.6.1.4.1.311");
    }

    #[test]
    fn self_issued_and_the_public_key_as_encoded() {
        let key = rcgen::KeyPair::generate().unwrap();
        let root_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let root = root_params.self_signed(&key).unwrap();
        assert_eq!(is_self_issued(root.der()), Some(true));
        assert_eq!(
            public_key_info(root.der()),
            Some(&rcgen::PublicKeyData::subject_public_key_info(&key)[..])
        );
        let mut leaf_params = rcgen::CertificateParams::new(vec!["x.test".to_string()]).unwrap();
        leaf_params.distinguished_name = rcgen::DistinguishedName::new();
        leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "x.test");
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &rcgen::Issuer::new(root_params, &key)).unwrap();
        assert_eq!(is_self_issued(leaf.der()), Some(false));
        assert_ne!(public_key_info(leaf.der()), public_key_info(root.der()));
        assert_eq!(is_self_issued(b"\x30\x03junk"), None);
    }

    #[test]
    fn what_a_certificate_says_about_signing() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let root = ca.self_signed(&key).unwrap();
        assert_eq!(ca_use(root.der()), Some(CaUse { is_ca: true, crl_sign: true, self_issued: true }));
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let no_crl = ca.self_signed(&key).unwrap();
        assert_eq!(ca_use(no_crl.der()).map(|u| u.crl_sign), Some(false));
        let mut leaf = rcgen::CertificateParams::new(vec!["phone".to_string()]).unwrap();
        leaf.distinguished_name.push(rcgen::DnType::CommonName, "phone");
        let issuer = rcgen::Issuer::new(ca, key);
        let leaf = leaf.signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer).unwrap();
        assert_eq!(ca_use(leaf.der()), Some(CaUse { is_ca: false, crl_sign: true, self_issued: false }));
    }

    #[test]
    fn a_crl_in_its_parts() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![rcgen::KeyUsagePurpose::CrlSign];
        let issuer = rcgen::Issuer::new(ca, key);
        let now = time::OffsetDateTime::now_utc();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(0x1234u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        let parts = crl_parts(crl.der()).unwrap();
        assert_eq!(
            parts.algorithm,
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
            "ECDSA SHA-256"
        );
        assert_eq!(parts.signed.first(), Some(&0x30));
        assert!(crl_parts(b"\x30\x03junk").is_none());
    }

    #[test]
    fn junk_is_none() {
        assert_eq!(subject(b"\x30\x03junk"), None);
        assert_eq!(serial(b""), None);
        assert_eq!(validity(b"\x30\x03junk"), None);
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(ca_use(b"\x30\x03junk"), None);
        assert!(crl_parts(b"").is_none());
    }
}

//! Talking to DNS servers for DNS-01: one message and its answer over TCP,
//! and the three questions asked (which zone a name is in, which servers
//! are authoritative for it, whether a TXT record is there). The messages
//! are hickory-proto's; TCP because every authoritative server must speak
//! it (RFC 7766), an answer is never truncated, and an off-path forger has
//! a much harder time than with UDP.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RData, RecordType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::DnsServer;

/// One exchange (connect, send, answer) at most this long.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an exchange failed, for the log line that names the server.
#[derive(Debug)]
pub enum Refusal {
    /// Could not connect, no answer in time, or no DNS message back.
    Unreachable(String),
    /// The server refused our TSIG signature (RFC 8945 §5.2).
    Tsig(TsigError),
    /// An error code other than NXDOMAIN.
    Code(ResponseCode),
    /// A success that does not carry the server's signature with our key:
    /// forged on the way, or from a server that does not sign.
    Unsigned(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unreachable(why) => f.write_str(why),
            Refusal::Tsig(e) => write!(f, "TSIG error {}", tsig_error_name(e)),
            Refusal::Code(code) => write!(f, "{}", code.to_str()),
            Refusal::Unsigned(why) => write!(f, "an answer not signed with the key ({why})"),
        }
    }
}

pub fn tsig_error_name(e: &TsigError) -> String {
    match e {
        TsigError::BadSig => "BADSIG".into(),
        TsigError::BadKey => "BADKEY".into(),
        TsigError::BadTime => "BADTIME".into(),
        TsigError::BadTrunc => "BADTRUNC".into(),
        TsigError::Unknown(code) => format!("{code}"),
    }
}

/// The addresses of `server` (its name through the system resolver).
pub async fn resolve(server: &DnsServer) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = server.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, server.port)]);
    }
    let found =
        tokio::time::timeout(EXCHANGE_TIMEOUT, tokio::net::lookup_host((server.host.as_str(), server.port)))
            .await
            .map_err(|_| format!("cannot resolve {}: no answer within 10 s", server.host))?
            .map_err(|e| format!("cannot resolve {}: {e}", server.host))?;
    let addrs: Vec<SocketAddr> = found.collect();
    if addrs.is_empty() {
        return Err(format!("{} has no address", server.host));
    }
    Ok(addrs)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Sends `message` to `addr`, signed with `signer` when given, and returns
/// the answer: same ID, a response, no error code but NXDOMAIN, and when
/// signed, a signature of the server's that verifies with the same key.
pub async fn exchange(
    addr: SocketAddr,
    mut message: Message,
    signer: Option<&TSigner>,
) -> Result<Message, Refusal> {
    let unreachable = |why: String| Refusal::Unreachable(why);
    let mut verifier = match signer {
        Some(signer) => message
            .finalize(signer, now_secs())
            .map_err(|e| unreachable(format!("cannot sign the message: {e}")))?,
        None => None,
    };
    let bytes = message.to_vec().map_err(|e| unreachable(format!("cannot encode the message: {e}")))?;
    let len = u16::try_from(bytes.len()).map_err(|_| unreachable("the message is too long".into()))?;
    let answer = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let mut tcp = TcpStream::connect(addr).await?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&bytes);
        tcp.write_all(&framed).await?;
        // Two bytes of length: an answer is at most 64 KiB.
        let len = tcp.read_u16().await? as usize;
        let mut answer = vec![0; len];
        tcp.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    })
    .await
    .map_err(|_| unreachable(format!("no answer from {addr} within 10 s")))?
    .map_err(|e| unreachable(format!("{addr}: {e}")))?;
    let reply = Message::from_vec(&answer)
        .map_err(|e| unreachable(format!("{addr} answered something that is not a DNS message: {e}")))?;
    if reply.id != message.id || reply.message_type != MessageType::Response {
        return Err(unreachable(format!("{addr} answered another question")));
    }
    // A refused signature comes back unsigned, with the reason in the TSIG record.
    if let Some(error) = reply.signature().and_then(|tsig| tsig.data.error) {
        return Err(Refusal::Tsig(error));
    }
    if !matches!(reply.response_code, ResponseCode::NoError | ResponseCode::NXDomain) {
        return Err(Refusal::Code(reply.response_code));
    }
    if let Some(verifier) = verifier.as_mut() {
        // Otherwise anyone on the path could confirm an update that never happened.
        verifier.verify(&answer).map_err(|e| Refusal::Unsigned(e.to_string()))?;
    }
    Ok(reply)
}

/// A question, asked authoritatively (`recurse` false) or of a resolver.
fn question(name: &Name, kind: RecordType, recurse: bool) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = recurse;
    message.add_query(Query::query(name.clone(), kind));
    message
}

/// The zone `name` is in: the owner of the SOA record that `addr` answers
/// for it (in the answer at a zone's apex, in the authority section below it).
pub async fn zone_of(name: &Name, addr: SocketAddr, recurse: bool) -> Result<Name, String> {
    let mut asked = name.clone();
    // A resolver may answer NODATA without the SOA for a name that exists
    // (an empty non-terminal): then the parent is asked, up to the root.
    loop {
        let reply = exchange(addr, question(&asked, RecordType::SOA, recurse), None)
            .await
            .map_err(|e| format!("asking {addr} for the SOA of {asked}: {e}"))?;
        let soa = reply
            .answers
            .iter()
            .chain(reply.authorities.iter())
            .find(|r| matches!(r.data, RData::SOA(_)) && r.name.zone_of(name));
        if let Some(record) = soa {
            return Ok(record.name.clone());
        }
        if asked.is_root() {
            return Err(format!("{addr} names no zone for {name}: set acme.dns.zone"));
        }
        asked = asked.base_name();
    }
}

/// The servers authoritative for `zone`: its NS records as `addr` answers
/// them, each with its addresses (the glue in the answer, else the
/// system resolver's).
pub async fn name_servers(
    zone: &Name,
    addr: SocketAddr,
    recurse: bool,
) -> Result<Vec<(String, Vec<SocketAddr>)>, String> {
    let reply = exchange(addr, question(zone, RecordType::NS, recurse), None)
        .await
        .map_err(|e| format!("asking {addr} for the NS of {zone}: {e}"))?;
    let mut servers = Vec::new();
    for record in &reply.answers {
        let RData::NS(ns) = &record.data else { continue };
        let host = ns.0.clone();
        let glue: Vec<SocketAddr> = reply
            .additionals
            .iter()
            .filter(|r| r.name == host)
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(SocketAddr::new(IpAddr::V4(a.0), 53)),
                RData::AAAA(a) => Some(SocketAddr::new(IpAddr::V6(a.0), 53)),
                _ => None,
            })
            .collect();
        let label = host.to_string().trim_end_matches('.').to_string();
        let addrs = if glue.is_empty() {
            resolve(&DnsServer { host: label.clone(), port: 53 }).await.unwrap_or_default()
        } else {
            glue
        };
        servers.push((label, addrs));
    }
    if servers.is_empty() {
        return Err(format!("{addr} lists no NS records for {zone}: set acme.dns.check_servers"));
    }
    Ok(servers)
}

/// Whether `addr` answers `value` among the TXT records of `name`.
pub async fn txt_visible(name: &Name, value: &str, addr: SocketAddr) -> Result<bool, String> {
    let reply =
        exchange(addr, question(name, RecordType::TXT, false), None).await.map_err(|e| e.to_string())?;
    Ok(reply.answers.iter().any(|r| {
        r.name == *name && matches!(&r.data, RData::TXT(txt) if txt.txt_data.concat() == value.as_bytes())
    }))
}

/// The first `nameserver` of /etc/resolv.conf: where a hook's zone and its
/// name servers are looked up (the hook says nothing about them).
pub fn system_resolver() -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("cannot read /etc/resolv.conf ({e}): set acme.dns.check_servers"))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|ip| ip.trim().split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .ok_or_else(|| "/etc/resolv.conf names no nameserver: set acme.dns.check_servers".into())
}

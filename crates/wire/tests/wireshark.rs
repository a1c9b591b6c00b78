//! Wireshark as an independent judge of the encoder.
//!
//! At least one non-trivial instance of each of the 24 ASAP and ENRP message
//! types is encoded, written as a `text2pcap` hex dump, wrapped in SCTP DATA
//! chunks (ASAP: port 3863, PPID 11; ENRP: port 9901, PPID 12), and dissected
//! by `tshark -T fields`. Every packet must dissect without a malformed-packet
//! marker or expert warning, and the fields Wireshark reads must equal the
//! values the message was built from. The expected values are derived from the
//! typed messages, not from the encoded bytes.
//!
//! What Wireshark 4.0 cannot check (and so is not asserted):
//! * the S flag of ASAP_HANDLE_RESOLUTION and the A flag of
//!   ASAP_HANDLE_RESOLUTION_RESPONSE: it has no field for them, only the raw
//!   flags byte (`asap.message_flags`), which is asserted;
//! * the Opaque Transport (0x0010): shown as an unknown parameter, so only its
//!   type and raw value (`*.parameter_value`) are asserted;
//! * the values of the reference implementation's private policies it does
//!   not know (RPLU, RLUD, PLUD, RPLUD, LUD-DPF) and of unknown policies:
//!   only the raw `*.pool_member_selection_policy_value` bytes;
//! * the information of causes 4, 6, 8, 9 and 10, which it never shows (we
//!   send them without information, as RFC 5354 specifies).
//!
//! tshark comes from the Debian package `tshark`; `scripts/test.sh` installs
//! it. When it is missing the test tries to install it (as root) and fails if
//! that does not work: this test must never pass silently without Wireshark.

#[allow(dead_code)] // the strategies the round trip tests use and this file does not
mod common;

use bytes::Bytes;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use rserpool_wire::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------
// Expected field values.

/// A field value as Wireshark prints it, normalized for comparison.
#[derive(Debug, Clone)]
enum Val {
    Int(i64),
    /// Compared with a relative tolerance (Wireshark prints 15 digits).
    Float(f64),
    Ip(IpAddr),
    Hex(Vec<u8>),
    Bool(bool),
}

impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Val::Int(a), Val::Int(b)) => a == b,
            (Val::Float(a), Val::Float(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1e-9),
            (Val::Ip(a), Val::Ip(b)) => a == b,
            (Val::Hex(a), Val::Hex(b)) => a == b,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Float,
    Ip,
    Hex,
    Bool,
}

/// Fields compared for both protocols (prefixed with `asap.` or `enrp.`).
const COMMON_FIELDS: &[(&str, Kind)] = &[
    ("message_type", Kind::Int),
    ("message_flags", Kind::Int),
    ("message_length", Kind::Int),
    ("r_bit", Kind::Bool),
    ("parameter_type", Kind::Int),
    ("parameter_value", Kind::Hex),
    ("cause_code", Kind::Int),
    ("cause_length", Kind::Int),
    ("cause_info", Kind::Hex),
    ("ipv4_address", Kind::Ip),
    ("ipv6_address", Kind::Ip),
    ("sctp_transport_port", Kind::Int),
    ("transport_use", Kind::Int),
    ("tcp_transport_port", Kind::Int),
    ("udp_transport_port", Kind::Int),
    ("udp_lite_transport_port", Kind::Int),
    ("dccp_transport_port", Kind::Int),
    ("dccp_transport_service_code", Kind::Int),
    ("pool_member_selection_policy_type", Kind::Int),
    ("pool_member_selection_policy_weight", Kind::Int),
    ("pool_member_selection_policy_priority", Kind::Int),
    ("pool_member_selection_policy_load", Kind::Float),
    ("pool_member_selection_policy_degradation", Kind::Float),
    ("pool_member_selection_policy_load_dpf", Kind::Float),
    ("pool_member_selection_policy_weight_dpf", Kind::Float),
    ("pool_member_selection_policy_distance", Kind::Int),
    ("pool_member_selection_policy_value", Kind::Hex),
    ("pool_handle_pool_handle", Kind::Hex),
    ("pool_element_pe_identifier", Kind::Int),
    ("pool_element_home_enrp_server_identifier", Kind::Int),
    ("pool_element_registration_life", Kind::Int),
    ("cookie", Kind::Hex),
    ("pe_identifier", Kind::Int),
    ("pe_checksum", Kind::Int),
];

const ASAP_FIELDS: &[(&str, Kind)] = &[
    ("h_bit", Kind::Bool),
    ("hropt_items", Kind::Int),
    ("server_identifier", Kind::Int),
];

const ENRP_FIELDS: &[(&str, Kind)] = &[
    ("w_bit", Kind::Bool),
    ("m_bit", Kind::Bool),
    ("t_bit", Kind::Bool),
    ("sender_servers_id", Kind::Int),
    ("receiver_servers_id", Kind::Int),
    ("target_servers_id", Kind::Int),
    ("update_action", Kind::Int),
    ("reserved", Kind::Int),
    ("server_information_server_identifier", Kind::Int),
];

/// What a cause's information embeds, for the causes whose information
/// Wireshark dissects (1, 3, 5, 7: a parameter; 2: a message).
#[derive(Clone)]
enum Embedded {
    /// A parameter of a type Wireshark does not know: type and value.
    UnknownTlv(u16, Vec<u8>),
    PoolHandle(PoolHandle),
    Policy(Policy),
    Transport(UserTransport),
    Asap(AsapMessage),
    Enrp(EnrpMessage),
}

/// Builds the expected field lists of one message, in protocol tree order.
struct Expect<'a> {
    fields: BTreeMap<&'static str, Vec<Val>>,
    embedded: &'a HashMap<Bytes, Embedded>,
}

fn pct(v: u32) -> Val {
    Val::Float(100.0 * f64::from(v) / f64::from(u32::MAX))
}

fn frac(v: u32) -> Val {
    Val::Float(f64::from(v) / f64::from(u32::MAX))
}

fn int(v: impl Into<i64>) -> Val {
    Val::Int(v.into())
}

impl Expect<'_> {
    fn push(&mut self, field: &'static str, v: Val) {
        self.fields.entry(field).or_default().push(v);
    }

    fn param(&mut self, t: u16) {
        self.push("parameter_type", int(t));
    }

    fn header(&mut self, t: u8, flags: u8, len: usize) {
        self.push("message_type", int(t));
        self.push("message_flags", int(flags));
        self.push("message_length", int(len as i64));
    }

    fn handle(&mut self, h: &PoolHandle) {
        self.param(0x0009);
        self.push("pool_handle_pool_handle", Val::Hex(h.as_bytes().to_vec()));
    }

    fn pe_id(&mut self, id: PeId) {
        self.param(0x000E);
        self.push("pe_identifier", int(id.0));
    }

    fn address(&mut self, a: &IpAddr) {
        match a {
            IpAddr::V4(_) => {
                self.param(0x0001);
                self.push("ipv4_address", Val::Ip(*a));
            }
            IpAddr::V6(_) => {
                self.param(0x0002);
                self.push("ipv6_address", Val::Ip(*a));
            }
        }
    }

    fn transport(&mut self, t: &TransportAddress) {
        let port = int(t.port);
        match t.protocol {
            Protocol::Sctp(u) => {
                self.param(0x0004);
                self.push("sctp_transport_port", port);
                let u = match u {
                    TransportUse::DataOnly => 0,
                    TransportUse::DataPlusControl => 1,
                };
                self.push("transport_use", int(u));
            }
            Protocol::Tcp => {
                self.param(0x0005);
                self.push("tcp_transport_port", port);
                // Wireshark reads the reserved word as a transport use; we send 0.
                self.push("transport_use", int(0));
            }
            Protocol::Udp => {
                self.param(0x0006);
                self.push("udp_transport_port", port);
            }
            Protocol::UdpLite => {
                self.param(0x0007);
                self.push("udp_lite_transport_port", port);
            }
            Protocol::Dccp { service_code } => {
                self.param(0x0003);
                self.push("dccp_transport_port", port);
                self.push("dccp_transport_service_code", int(service_code));
            }
        }
        for a in &t.addresses {
            self.address(a);
        }
    }

    fn user_transport(&mut self, t: &UserTransport) {
        match t {
            UserTransport::Address(t) => self.transport(t),
            UserTransport::Opaque(b) => {
                // Wireshark 4.0 does not know the Opaque Transport: an unknown parameter.
                self.param(0x0010);
                if !b.is_empty() {
                    self.push("parameter_value", Val::Hex(b.to_vec()));
                }
            }
        }
    }

    fn policy(&mut self, p: &Policy) {
        use Policy as P;
        self.param(0x0008);
        self.push(
            "pool_member_selection_policy_type",
            int(p.policy_type().code()),
        );
        let raw = |vals: &[u32]| Val::Hex(vals.iter().flat_map(|v| v.to_be_bytes()).collect());
        match *p {
            P::RoundRobin | P::Random => {}
            P::WeightedRoundRobin { weight } | P::WeightedRandom { weight } => {
                self.push("pool_member_selection_policy_weight", int(weight));
            }
            P::Priority { priority } => {
                self.push("pool_member_selection_policy_priority", int(priority));
            }
            P::LeastUsed { load } | P::RandomizedLeastUsed { load } => {
                self.push("pool_member_selection_policy_load", pct(load));
            }
            P::LeastUsedWithDegradation { load, degradation }
            | P::PriorityLeastUsed { load, degradation } => {
                self.push("pool_member_selection_policy_load", pct(load));
                self.push("pool_member_selection_policy_degradation", pct(degradation));
            }
            P::LeastUsedDpf {
                load,
                load_dpf,
                distance,
            } => {
                self.push("pool_member_selection_policy_load", pct(load));
                self.push("pool_member_selection_policy_load_dpf", frac(load_dpf));
                self.push("pool_member_selection_policy_distance", int(distance));
            }
            P::WeightedRandomDpf {
                weight,
                weight_dpf,
                distance,
            } => {
                self.push("pool_member_selection_policy_weight", int(weight));
                self.push("pool_member_selection_policy_weight_dpf", frac(weight_dpf));
                self.push("pool_member_selection_policy_distance", int(distance));
            }
            // Policies Wireshark 4.0 shows only as raw values.
            P::RandomizedPriorityLeastUsed { load, degradation }
            | P::RandomizedLeastUsedWithDegradation { load, degradation }
            | P::PriorityLeastUsedWithDegradation { load, degradation }
            | P::RandomizedPriorityLeastUsedWithDegradation { load, degradation } => {
                self.push(
                    "pool_member_selection_policy_value",
                    raw(&[load, degradation]),
                );
            }
            P::LeastUsedWithDegradationDpf {
                load,
                degradation,
                load_dpf,
                distance,
            } => self.push(
                "pool_member_selection_policy_value",
                raw(&[load, degradation, load_dpf, distance]),
            ),
            P::Unknown { ref data, .. } => {
                // Wireshark shows the value up to the end of the parameter's
                // padding, not of its length: the zero padding is included.
                if !data.is_empty() {
                    let mut v = data.to_vec();
                    v.resize(v.len().div_ceil(4) * 4, 0);
                    self.push("pool_member_selection_policy_value", Val::Hex(v));
                }
            }
        }
    }

    fn pool_element(&mut self, pe: &PoolElement) {
        self.param(0x000A);
        self.push("pool_element_pe_identifier", int(pe.id.0));
        self.push(
            "pool_element_home_enrp_server_identifier",
            int(PrId::raw(pe.home_registrar)),
        );
        self.push(
            "pool_element_registration_life",
            int(pe.registration_life.0),
        );
        self.user_transport(&pe.user_transport);
        self.policy(&pe.policy);
        if let Some(t) = &pe.asap_transport {
            self.transport(t);
        }
    }

    fn server_info(&mut self, s: &ServerInformation) {
        self.param(0x000B);
        self.push(
            "server_information_server_identifier",
            int(s.server_id.get()),
        );
        self.transport(&s.transport);
    }

    fn causes(&mut self, causes: &[ErrorCause]) {
        self.param(0x000C);
        for c in causes {
            let code = c.code.code();
            self.push("cause_code", int(code));
            self.push("cause_length", int(4 + c.info.len() as i64));
            match code {
                1 | 2 | 3 | 5 | 7 => {
                    let e = self.embedded.get(&c.info).cloned().unwrap_or_else(|| {
                        panic!("cause {code} needs registered information to be dissected")
                    });
                    match e {
                        Embedded::UnknownTlv(t, v) => {
                            self.param(t);
                            if !v.is_empty() {
                                self.push("parameter_value", Val::Hex(v));
                            }
                        }
                        Embedded::PoolHandle(h) => self.handle(&h),
                        Embedded::Policy(p) => self.policy(&p),
                        Embedded::Transport(t) => self.user_transport(&t),
                        Embedded::Asap(m) => self.asap(&m),
                        Embedded::Enrp(m) => self.enrp(&m),
                    }
                }
                // Wireshark never shows the information of these causes.
                4 | 6 | 8 | 9 | 10 => {}
                _ => {
                    if !c.info.is_empty() {
                        self.push("cause_info", Val::Hex(c.info.to_vec()));
                    }
                }
            }
        }
    }

    fn asap(&mut self, m: &AsapMessage) {
        use AsapMessage as M;
        let len = m.to_vec().unwrap().len();
        let flag = match m {
            M::RegistrationResponse { rejected: f, .. }
            | M::HandleResolution { subscribe: f, .. }
            | M::HandleResolutionResponse { accepted: f, .. }
            | M::EndpointKeepAlive { home: f, .. } => *f,
            _ => false,
        };
        self.header(m.message_type() as u8, u8::from(flag), len);
        match m {
            M::Registration {
                pool_handle,
                pool_element,
            } => {
                self.handle(pool_handle);
                self.pool_element(pool_element);
            }
            M::Deregistration { pool_handle, pe_id }
            | M::EndpointKeepAliveAck { pool_handle, pe_id }
            | M::EndpointUnreachable { pool_handle, pe_id } => {
                self.handle(pool_handle);
                self.pe_id(*pe_id);
            }
            M::RegistrationResponse {
                rejected,
                pool_handle,
                pe_id,
                error,
            } => {
                self.push("r_bit", Val::Bool(*rejected));
                self.handle(pool_handle);
                self.pe_id(*pe_id);
                if let Some(c) = error {
                    self.causes(c);
                }
            }
            M::DeregistrationResponse {
                pool_handle,
                pe_id,
                error,
            } => {
                self.handle(pool_handle);
                self.pe_id(*pe_id);
                if let Some(c) = error {
                    self.causes(c);
                }
            }
            M::HandleResolution {
                pool_handle, items, ..
            } => {
                // The S flag is only visible in the flags byte (see the module comment).
                self.handle(pool_handle);
                if let Some(n) = items {
                    self.param(0x803F);
                    self.push("hropt_items", int(*n));
                }
            }
            M::HandleResolutionResponse {
                pool_handle,
                policy,
                pool_elements,
                error,
                ..
            } => {
                self.handle(pool_handle);
                if let Some(p) = policy {
                    self.policy(p);
                }
                for pe in pool_elements {
                    self.pool_element(pe);
                }
                if let Some(c) = error {
                    self.causes(c);
                }
            }
            M::EndpointKeepAlive {
                home,
                server_id,
                pool_handle,
                pe_id,
            } => {
                self.push("h_bit", Val::Bool(*home));
                self.push("server_identifier", int(server_id.get()));
                self.handle(pool_handle);
                if let Some(id) = pe_id {
                    self.pe_id(*id);
                }
            }
            M::ServerAnnounce {
                server_id,
                transports,
            } => {
                self.push("server_identifier", int(server_id.get()));
                for t in transports {
                    self.transport(t);
                }
            }
            M::Cookie { cookie } | M::CookieEcho { cookie } => {
                self.param(0x000D);
                if !cookie.is_empty() {
                    self.push("cookie", Val::Hex(cookie.to_vec()));
                }
            }
            M::BusinessCard {
                pool_handle,
                policy,
                pool_elements,
            } => {
                self.handle(pool_handle);
                if let Some(p) = policy {
                    self.policy(p);
                }
                for pe in pool_elements {
                    self.pool_element(pe);
                }
            }
            M::Error { causes } => self.causes(causes),
        }
    }

    fn enrp(&mut self, m: &EnrpMessage) {
        use EnrpMessage as M;
        let bytes = m.to_vec().unwrap();
        let mut flags = 0u8;
        let mut bits: Vec<(&'static str, bool, u8)> = Vec::new();
        match m {
            M::Presence { reply_required, .. } => bits.push(("r_bit", *reply_required, 0x01)),
            M::HandleTableRequest {
                own_children_only, ..
            } => bits.push(("w_bit", *own_children_only, 0x01)),
            M::HandleTableResponse {
                rejected,
                more_to_send,
                ..
            } => {
                bits.push(("m_bit", *more_to_send, 0x02));
                bits.push(("r_bit", *rejected, 0x01));
            }
            M::HandleUpdate {
                takeover_suggested, ..
            } => bits.push(("t_bit", *takeover_suggested, 0x01)),
            M::ListResponse { rejected, .. } => bits.push(("r_bit", *rejected, 0x01)),
            _ => {}
        }
        for (_, on, mask) in &bits {
            if *on {
                flags |= mask;
            }
        }
        self.header(m.message_type() as u8, flags, bytes.len());
        for (name, on, _) in bits {
            self.push(name, Val::Bool(on));
        }
        let s = m.servers();
        self.push("sender_servers_id", int(s.sender.get()));
        self.push("receiver_servers_id", int(PrId::raw(s.receiver)));
        match m {
            M::Presence {
                checksum,
                server_info,
                ..
            } => {
                if let Some(c) = checksum {
                    self.param(0x000F);
                    self.push("pe_checksum", int(*c));
                }
                if let Some(si) = server_info {
                    self.server_info(si);
                }
            }
            M::HandleTableRequest { .. } | M::ListRequest { .. } => {}
            M::HandleTableResponse { pools, .. } => {
                for p in pools {
                    self.handle(&p.pool_handle);
                    for pe in &p.pool_elements {
                        self.pool_element(pe);
                    }
                }
            }
            M::HandleUpdate {
                action,
                pool_handle,
                pool_element,
                ..
            } => {
                let a = match action {
                    UpdateAction::AddPe => 0,
                    UpdateAction::DelPe => 1,
                };
                self.push("update_action", int(a));
                self.push("reserved", int(0));
                self.handle(pool_handle);
                self.pool_element(pool_element);
            }
            M::ListResponse { peers, .. } => {
                for p in peers {
                    self.server_info(p);
                }
            }
            M::InitTakeover { target, .. }
            | M::InitTakeoverAck { target, .. }
            | M::TakeoverServer { target, .. } => {
                self.push("target_servers_id", int(target.get()));
            }
            M::Error { causes, .. } => self.causes(causes),
        }
    }
}

// ---------------------------------------------------------------------------
// The sample messages.

fn ph(s: &str) -> PoolHandle {
    PoolHandle::try_from(s).unwrap()
}

fn pr(v: u32) -> PrId {
    PrId::new(v).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tlv(t: u16, value: &[u8]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&t.to_be_bytes());
    b.extend_from_slice(&(4 + value.len() as u16).to_be_bytes());
    b.extend_from_slice(value);
    b.resize(b.len().div_ceil(4) * 4, 0);
    Bytes::from(b)
}

struct Samples {
    asap: Vec<AsapMessage>,
    enrp: Vec<EnrpMessage>,
    embedded: HashMap<Bytes, Embedded>,
}

impl Samples {
    fn cause(&mut self, code: CauseCode, e: Embedded) -> ErrorCause {
        let info = match &e {
            Embedded::UnknownTlv(t, v) => tlv(*t, v),
            Embedded::PoolHandle(h) => tlv(0x0009, h.as_bytes()),
            Embedded::Policy(p) => ErrorCause::inconsistent_policy(p).info,
            Embedded::Transport(t) => ErrorCause::inconsistent_transport(t).info,
            Embedded::Asap(m) => Bytes::from(m.to_vec().unwrap()),
            Embedded::Enrp(m) => Bytes::from(m.to_vec().unwrap()),
        };
        self.embedded.insert(info.clone(), e);
        ErrorCause { code, info }
    }
}

fn sctp(port: u16, ctrl: bool, addrs: &[&str]) -> TransportAddress {
    let u = if ctrl {
        TransportUse::DataPlusControl
    } else {
        TransportUse::DataOnly
    };
    TransportAddress::sctp(port, u, addrs.iter().map(|a| ip(a)).collect::<IpAddrs>())
}

fn other(protocol: Protocol, port: u16, addr: &str) -> UserTransport {
    UserTransport::Address(TransportAddress {
        protocol,
        port,
        addresses: vec![ip(addr)].into(),
    })
}

fn pe(id: u32, home: u32, life: i32, ut: UserTransport, policy: Policy, asap: bool) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: PrId::new(home),
        registration_life: RegistrationLife(life),
        user_transport: ut,
        policy,
        asap_transport: asap.then(|| sctp(40000, false, &["192.0.2.7", "2001:db8::7"])),
    }
}

fn samples() -> Samples {
    let mut s = Samples {
        asap: Vec::new(),
        enrp: Vec::new(),
        embedded: HashMap::new(),
    };
    let echo = ph("EchoPool");
    // A handle that is not text, with bytes that look like padding and all ones.
    let binary = PoolHandle::new(vec![0x00, 0xFF, 0x10, 0x00, 0x7F]).unwrap();
    let pe_lu = pe(
        0x1122_3344,
        0,
        30000,
        UserTransport::Address(sctp(5000, true, &["10.0.0.1", "2001:db8::1", "10.0.0.2"])),
        Policy::LeastUsed { load: 0x4000_0000 },
        false,
    );
    let pe_wrr = pe(
        0x5566_7788,
        0xAABB_CCDD,
        -1,
        other(Protocol::Tcp, 80, "2001:db8::80"),
        Policy::WeightedRoundRobin { weight: 7 },
        true,
    );
    let pe_prio = pe(
        0x0000_0001,
        0x0102_0304,
        0,
        other(Protocol::Udp, 53, "198.51.100.53"),
        Policy::Priority {
            priority: 0xFFFF_FFFF,
        },
        true,
    );
    let pe_wrand_dpf = pe(
        0xFFFF_FFFF,
        0x0102_0304,
        i32::MAX,
        other(
            Protocol::Dccp {
                service_code: 0x0001_0002,
            },
            5004,
            "203.0.113.9",
        ),
        Policy::WeightedRandomDpf {
            weight: 100,
            weight_dpf: 0x0100_0000,
            distance: 150,
        },
        true,
    );
    let pe_lud = pe(
        0x0BAD_CAFE,
        0x0102_0304,
        60000,
        other(Protocol::UdpLite, 9, "fe80::1"),
        Policy::LeastUsedWithDegradation {
            load: 0x8000_0000,
            degradation: 0x0100_0000,
        },
        true,
    );
    let pe_lu_dpf = pe(
        0x0000_BEEF,
        0x0A0B_0C0D,
        1000,
        UserTransport::Address(sctp(6000, false, &["::ffff:192.0.2.1"])),
        Policy::LeastUsedDpf {
            load: 0xFFFF_FFFF,
            load_dpf: 0x0000_1000,
            distance: 50,
        },
        true,
    );
    let pe_wrand = pe(
        0x0000_0002,
        0,
        5000,
        UserTransport::Address(sctp(7000, true, &["10.9.8.7"])),
        Policy::WeightedRandom { weight: 3 },
        false,
    );
    // Wireshark 4.0 shows Opaque Transport and the private policies as raw values.
    let pe_opaque = pe(
        0x0000_0003,
        0,
        5000,
        UserTransport::Opaque(Bytes::from_static(b"opaque!")),
        Policy::PriorityLeastUsedWithDegradation {
            load: 1,
            degradation: 2,
        },
        false,
    );
    let pe_rr = pe(
        0x0000_0004,
        0x0102_0304,
        5000,
        other(Protocol::Tcp, 8080, "192.0.2.80"),
        Policy::RoundRobin,
        true,
    );
    let pe_unknown_policy = pe(
        0x0000_0005,
        0x0102_0304,
        5000,
        other(Protocol::Udp, 5353, "2001:db8::53"),
        Policy::Unknown {
            code: 0x8000_0042,
            data: Box::new([1, 2, 3, 4, 5]),
        },
        false,
    );

    // ASAP.
    let c_invalid = s.cause(CauseCode::InvalidValues, Embedded::PoolHandle(echo.clone()));
    let c_policy = s.cause(
        CauseCode::InconsistentPoolingPolicy,
        Embedded::Policy(Policy::LeastUsedDpf {
            load: 0x1000_0000,
            load_dpf: 0x2000,
            distance: 10,
        }),
    );
    let c_transport = s.cause(
        CauseCode::InconsistentTransportType,
        Embedded::Transport(other(Protocol::Tcp, 443, "192.0.2.44")),
    );
    let c_param = s.cause(
        CauseCode::UnrecognizedParameter,
        Embedded::UnknownTlv(0x4444, b"xyz".to_vec()),
    );
    let c_message = s.cause(
        CauseCode::UnrecognizedMessage,
        Embedded::Asap(AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: ph("Inner"),
            items: Some(1),
        }),
    );
    let bare = ErrorCause::new;
    let other_cause = |code: u16, info: &'static [u8]| ErrorCause {
        code: CauseCode::from_code(code),
        info: Bytes::from_static(info),
    };
    s.asap = vec![
        AsapMessage::Registration {
            pool_handle: echo.clone(),
            pool_element: pe_lu.clone(),
        },
        AsapMessage::Registration {
            pool_handle: binary.clone(),
            pool_element: pe_opaque.clone(),
        },
        AsapMessage::Deregistration {
            pool_handle: echo.clone(),
            pe_id: PeId(0x1122_3344),
        },
        AsapMessage::RegistrationResponse {
            rejected: true,
            pool_handle: echo.clone(),
            pe_id: PeId(0x1122_3344),
            error: Some(vec![c_invalid, c_policy, c_transport]),
        },
        AsapMessage::RegistrationResponse {
            rejected: false,
            pool_handle: echo.clone(),
            pe_id: PeId(0x1122_3344),
            error: None,
        },
        AsapMessage::DeregistrationResponse {
            pool_handle: echo.clone(),
            pe_id: PeId(7),
            error: Some(vec![bare(CauseCode::NonUniquePeId)]),
        },
        AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: echo.clone(),
            items: Some(3),
        },
        AsapMessage::HandleResolution {
            subscribe: true,
            pool_handle: binary.clone(),
            items: Some(u32::MAX),
        },
        AsapMessage::HandleResolutionResponse {
            accepted: true,
            pool_handle: echo.clone(),
            policy: Some(Policy::WeightedRandom { weight: 0 }),
            pool_elements: vec![pe_wrand.clone(), pe_wrr.clone(), pe_lu_dpf.clone()],
            error: None,
        },
        AsapMessage::HandleResolutionResponse {
            accepted: false,
            pool_handle: ph("NoSuchPool"),
            policy: None,
            pool_elements: vec![],
            error: Some(vec![bare(CauseCode::UnknownPoolHandle)]),
        },
        AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: pr(0xAABB_CCDD),
            pool_handle: echo.clone(),
            pe_id: Some(PeId(0x1122_3344)),
        },
        AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: pr(1),
            pool_handle: echo.clone(),
            pe_id: None,
        },
        AsapMessage::EndpointKeepAliveAck {
            pool_handle: echo.clone(),
            pe_id: PeId(0x1122_3344),
        },
        AsapMessage::EndpointUnreachable {
            pool_handle: binary.clone(),
            pe_id: PeId(0xDEAD_BEEF),
        },
        AsapMessage::ServerAnnounce {
            server_id: pr(0x0102_0304),
            transports: vec![
                sctp(3863, true, &["192.0.2.1", "2001:db8::1"]),
                TransportAddress {
                    protocol: Protocol::Tcp,
                    port: 3863,
                    addresses: vec![ip("192.0.2.1")].into(),
                },
            ],
        },
        AsapMessage::ServerAnnounce {
            server_id: pr(0xFFFF_FFFF),
            transports: vec![],
        },
        AsapMessage::Cookie {
            cookie: Bytes::from_static(b"abcde"),
        },
        AsapMessage::CookieEcho {
            cookie: Bytes::from_static(&[0, 0xFF, 0, 0xFF, 1, 2, 3, 4]),
        },
        AsapMessage::BusinessCard {
            pool_handle: echo.clone(),
            policy: Some(Policy::Priority { priority: 5 }),
            pool_elements: vec![pe_prio.clone(), pe_wrand_dpf.clone(), pe_rr.clone()],
        },
        AsapMessage::BusinessCard {
            pool_handle: echo.clone(),
            policy: None,
            pool_elements: vec![pe_unknown_policy.clone()],
        },
        AsapMessage::Error {
            causes: vec![
                c_param,
                c_message,
                bare(CauseCode::LackOfResources),
                bare(CauseCode::InconsistentDataControl),
                bare(CauseCode::RejectedSecurity),
                other_cause(0, b""),
                other_cause(0x1234, b"odd"),
            ],
        },
    ];

    // ENRP.
    let servers = Servers {
        sender: pr(0x0102_0304),
        receiver: Some(pr(0x0506_0708)),
    };
    let groupcast = Servers {
        sender: pr(0x0102_0304),
        receiver: None,
    };
    let peer = |id: u32, addrs: &[&str]| ServerInformation {
        server_id: pr(id),
        transport: sctp(9901, false, addrs),
    };
    let e_message = s.cause(
        CauseCode::UnrecognizedMessage,
        Embedded::Enrp(EnrpMessage::ListRequest { servers }),
    );
    let e_param = s.cause(
        CauseCode::UnrecognizedParameter,
        Embedded::UnknownTlv(0x7FFF, vec![]),
    );
    s.enrp = vec![
        EnrpMessage::Presence {
            servers: groupcast,
            reply_required: true,
            checksum: Some(0xBEEF),
            server_info: Some(peer(0x0102_0304, &["10.0.0.9", "2001:db8::9"])),
        },
        EnrpMessage::Presence {
            servers,
            reply_required: false,
            checksum: Some(0xFFFF),
            server_info: None,
        },
        EnrpMessage::HandleTableRequest {
            servers,
            own_children_only: true,
        },
        EnrpMessage::HandleTableRequest {
            servers,
            own_children_only: false,
        },
        EnrpMessage::HandleTableResponse {
            servers,
            rejected: false,
            more_to_send: true,
            pools: vec![
                PoolEntry {
                    pool_handle: echo.clone(),
                    pool_elements: vec![pe_lu_dpf.clone(), pe_wrand_dpf.clone()],
                },
                PoolEntry {
                    pool_handle: binary.clone(),
                    pool_elements: vec![pe_lud.clone()],
                },
            ],
        },
        EnrpMessage::HandleTableResponse {
            servers,
            rejected: true,
            more_to_send: false,
            pools: vec![],
        },
        EnrpMessage::HandleUpdate {
            servers,
            takeover_suggested: true,
            action: UpdateAction::AddPe,
            pool_handle: echo.clone(),
            pool_element: pe_prio.clone(),
        },
        EnrpMessage::HandleUpdate {
            servers: groupcast,
            takeover_suggested: false,
            action: UpdateAction::DelPe,
            pool_handle: echo.clone(),
            pool_element: pe_lud.clone(),
        },
        EnrpMessage::ListRequest { servers },
        EnrpMessage::ListResponse {
            servers,
            rejected: false,
            peers: vec![
                peer(0x0000_0011, &["10.0.0.11"]),
                peer(0x0000_0012, &["2001:db8::12", "10.0.0.12"]),
            ],
        },
        EnrpMessage::ListResponse {
            servers,
            rejected: true,
            peers: vec![],
        },
        EnrpMessage::InitTakeover {
            servers: groupcast,
            target: pr(0x0909_0909),
        },
        EnrpMessage::InitTakeoverAck {
            servers,
            target: pr(0x0909_0909),
        },
        EnrpMessage::TakeoverServer {
            servers: groupcast,
            target: pr(0x0909_0909),
        },
        EnrpMessage::Error {
            servers,
            causes: vec![e_message, e_param, bare(CauseCode::LackOfResources)],
        },
    ];
    s
}

// ---------------------------------------------------------------------------
// Running Wireshark.

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn have_tools() -> bool {
    have("tshark") && have("text2pcap")
}

/// Makes sure tshark and text2pcap are there, installing them if we can.
///
/// Both tests of this file may get here at once (as threads, or as processes
/// under nextest): the install runs once per process, and a process that
/// loses the race for the dpkg lock waits for the other one to finish.
fn ensure_tshark() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let outcome = INSTALLED.get_or_init(|| {
        if have_tools() {
            return Ok(());
        }
        eprintln!("wireshark test: tshark missing, trying apt-get install tshark");
        let script = "export DEBIAN_FRONTEND=noninteractive; \
                      echo 'wireshark-common wireshark-common/install-setuid boolean false' \
                      | debconf-set-selections; apt-get update -qq && \
                      apt-get install -y -qq --no-install-recommends tshark";
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let status = if root {
            Command::new("sh").args(["-c", script]).status()
        } else {
            Command::new("sudo")
                .args(["-n", "sh", "-c", script])
                .status()
        };
        for _ in 0..30 {
            if have_tools() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        Err(format!(
            "tshark/text2pcap are required for this test and could not be installed \
             ({status:?}); install the Debian package `tshark` (scripts/test.sh does)"
        ))
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

/// Writes the messages as a text2pcap hex dump (one packet per message).
fn hex_dump(messages: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for m in messages {
        for (i, chunk) in m.chunks(16).enumerate() {
            write!(out, "{:06x} ", i * 16).unwrap();
            for b in chunk {
                write!(out, " {b:02x}").unwrap();
            }
            out.push('\n');
        }
    }
    out
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Dissects the messages; returns, per packet, each requested field's values.
fn dissect(
    dir: &Path,
    name: &str,
    port: u16,
    ppid: u32,
    messages: &[Vec<u8>],
    fields: &[String],
) -> Vec<BTreeMap<String, Vec<String>>> {
    let txt = dir.join(format!("{name}.txt"));
    let pcap = dir.join(format!("{name}.pcap"));
    std::fs::write(&txt, hex_dump(messages)).unwrap();
    run(Command::new("text2pcap")
        .arg("-q")
        .arg("-S")
        .arg(format!("{port},{port},{ppid}"))
        .arg(&txt)
        .arg(&pcap));
    let mut cmd = Command::new("tshark");
    cmd.arg("-n")
        .arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"])
        .args(["-E", "separator=/t"]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = run(&mut cmd);
    out.lines()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), fields.len(), "tshark line: {line}");
            fields
                .iter()
                .zip(cols)
                .map(|(f, c)| {
                    let vals = if c.is_empty() {
                        vec![]
                    } else {
                        c.split('|').map(str::to_string).collect()
                    };
                    (f.clone(), vals)
                })
                .collect()
        })
        .collect()
}

fn parse(kind: Kind, s: &str) -> Val {
    fn bad<T>(s: &str) -> T {
        panic!("cannot parse {s:?}")
    }
    match kind {
        Kind::Int => Val::Int(if let Some(h) = s.strip_prefix("0x") {
            i64::from_str_radix(h, 16).unwrap_or_else(|_| bad(s))
        } else {
            s.parse().unwrap_or_else(|_| bad(s))
        }),
        Kind::Float => Val::Float(s.parse().unwrap_or_else(|_| bad(s))),
        Kind::Ip => Val::Ip(s.parse().unwrap_or_else(|_| bad(s))),
        Kind::Hex => Val::Hex(hex::decode(s.replace(':', "")).unwrap_or_else(|_| bad(s))),
        Kind::Bool => Val::Bool(match s {
            "1" | "True" | "true" => true,
            "0" | "False" | "false" => false,
            _ => bad(s),
        }),
    }
}

const HEALTH_FIELDS: [&str; 4] = [
    "_ws.malformed",
    "_ws.expert",
    "_ws.expert.severity",
    "_ws.expert.message",
];

/// A message Wireshark must flag: a Pool Handle parameter longer than the
/// message. It proves that the health check below can see a problem.
fn broken_message(proto_asap: bool) -> Vec<u8> {
    if proto_asap {
        hex::decode("050000100009000d4563686f506f6f6c").unwrap()
    } else {
        hex::decode("0400001800000001000000020000000000090010").unwrap()
    }
}

/// Encodes, dissects and compares one protocol's messages; returns the
/// mismatches found (empty when Wireshark agrees on everything).
fn judge(
    dir: &Path,
    proto: &'static str,
    port: u16,
    ppid: u32,
    encoded: &[Vec<u8>],
    expected: &[BTreeMap<&'static str, Vec<Val>>],
    names: &[String],
) -> Vec<String> {
    let specific = if proto == "asap" {
        ASAP_FIELDS
    } else {
        ENRP_FIELDS
    };
    let kinds: Vec<(String, &str, Kind)> = COMMON_FIELDS
        .iter()
        .chain(specific)
        .map(|(f, k)| (format!("{proto}.{f}"), *f, *k))
        .collect();
    let mut fields: Vec<String> = HEALTH_FIELDS.iter().map(|s| s.to_string()).collect();
    fields.push("frame.protocols".into());
    let paddings = [
        format!("{proto}.parameter_padding"),
        format!("{proto}.cause_padding"),
    ];
    fields.extend(paddings.iter().cloned());
    fields.extend(kinds.iter().map(|(f, _, _)| f.clone()));

    let mut packets = encoded.to_vec();
    packets.push(broken_message(proto == "asap"));
    let got = dissect(dir, proto, port, ppid, &packets, &fields);
    assert_eq!(got.len(), packets.len(), "one dissected frame per message");

    let mut problems = Vec::new();
    // The deliberately broken last packet must be flagged, or the check is blind.
    let last = got.last().unwrap();
    assert!(
        !last["_ws.malformed"].is_empty() || !last["_ws.expert"].is_empty(),
        "{proto}: Wireshark did not flag the broken control packet: {last:?}"
    );
    for (i, (pkt, want)) in got.iter().zip(expected).enumerate() {
        let who = format!("{proto} frame {} ({})", i + 1, names[i]);
        let protocols = pkt["frame.protocols"].join("|");
        if !protocols.ends_with(&format!(":sctp:{proto}")) {
            problems.push(format!("{who}: not dissected as {proto}: {protocols}"));
        }
        for h in HEALTH_FIELDS {
            if !pkt[h].is_empty() {
                problems.push(format!("{who}: {h} = {:?}", pkt[h]));
            }
        }
        // W-03, W-07, W-08: every padding Wireshark finds is 1-3 zero bytes.
        for f in &paddings {
            for p in &pkt[f] {
                let Val::Hex(b) = parse(Kind::Hex, p) else {
                    unreachable!()
                };
                if b.is_empty() || b.len() > 3 || b.iter().any(|&x| x != 0) {
                    problems.push(format!("{who}: {f} = {p}"));
                }
            }
        }
        for (full, short, kind) in &kinds {
            let got: Vec<Val> = pkt[full].iter().map(|s| parse(*kind, s)).collect();
            let want = want.get(short).cloned().unwrap_or_default();
            if got != want {
                problems.push(format!(
                    "{who}: {full}\n      wireshark: {got:?}\n      expected:  {want:?}"
                ));
            }
        }
    }
    problems
}

/// Dissects both protocols' samples; returns every disagreement.
fn check_with_wireshark(tag: &str, s: &Samples) -> Vec<String> {
    ensure_tshark();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("wireshark-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let expect = |f: &dyn Fn(&mut Expect<'_>)| {
        let mut e = Expect {
            fields: BTreeMap::new(),
            embedded: &s.embedded,
        };
        f(&mut e);
        e.fields
    };
    let mut problems = judge(
        &dir,
        "asap",
        ASAP_PORT,
        PPID_ASAP,
        &s.asap
            .iter()
            .map(|m| m.to_vec().unwrap())
            .collect::<Vec<_>>(),
        &s.asap
            .iter()
            .map(|m| expect(&|e| e.asap(m)))
            .collect::<Vec<_>>(),
        &s.asap.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
    );
    problems.extend(judge(
        &dir,
        "enrp",
        ENRP_PORT,
        PPID_ENRP,
        &s.enrp
            .iter()
            .map(|m| m.to_vec().unwrap())
            .collect::<Vec<_>>(),
        &s.enrp
            .iter()
            .map(|m| expect(&|e| e.enrp(m)))
            .collect::<Vec<_>>(),
        &s.enrp.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
    ));
    // WIRESHARK_KEEP=1 keeps the pcaps for a look with `tshark -V -r`.
    if std::env::var_os("WIRESHARK_KEEP").is_some() {
        eprintln!("pcaps kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    problems
}

/// W-01, W-02, W-03, W-07, W-08, W-15..W-17, W-20..W-27 judged by
/// Wireshark: hand-picked instances of all 24 message types.
#[test]
fn w01_wireshark_agrees_on_every_message_type() {
    let s = samples();
    let asap_types: BTreeSet<u8> = s.asap.iter().map(|m| m.message_type() as u8).collect();
    let enrp_types: BTreeSet<u8> = s.enrp.iter().map(|m| m.message_type() as u8).collect();
    assert_eq!(asap_types, (1..=14).collect(), "all 14 ASAP types");
    assert_eq!(enrp_types, (1..=10).collect(), "all 10 ENRP types");
    let problems = check_with_wireshark("samples", &s);
    assert!(
        problems.is_empty(),
        "Wireshark disagrees:\n  {}",
        problems.join("\n  ")
    );
}

/// Rewrites the information of the causes Wireshark dissects (1, 2, 3, 5,
/// 7) into something it can dissect, and registers what it embeds.
fn dissectable(causes: &mut [ErrorCause], registry: &mut HashMap<Bytes, Embedded>, asap: bool) {
    for c in causes {
        let e = match c.code.code() {
            1 | 3 | 5 | 7 => Embedded::UnknownTlv(0x4321, c.info.to_vec()),
            2 if asap => Embedded::Asap(AsapMessage::Cookie {
                cookie: c.info.clone(),
            }),
            2 => Embedded::Enrp(EnrpMessage::ListRequest {
                servers: Servers {
                    sender: pr(1),
                    receiver: None,
                },
            }),
            _ => continue,
        };
        c.info = match &e {
            Embedded::UnknownTlv(t, v) => tlv(*t, v),
            Embedded::Asap(m) => Bytes::from(m.to_vec().unwrap()),
            Embedded::Enrp(m) => Bytes::from(m.to_vec().unwrap()),
            _ => unreachable!("only the kinds built above"),
        };
        registry.insert(c.info.clone(), e);
    }
}

/// Messages with arbitrary contents (the proptest strategies of the round
/// trip tests, sampled with a fixed seed) judged by Wireshark.
/// Set WIRESHARK_SEED=<u64> to try other seeds.
#[test]
fn w01_wireshark_agrees_on_random_messages() {
    let seed: u64 = std::env::var("WIRESHARK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0001);
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    let mut s = Samples {
        asap: Vec::new(),
        enrp: Vec::new(),
        embedded: HashMap::new(),
    };
    let asap_strategy = common::asap_message();
    let enrp_strategy = common::enrp_message();
    for _ in 0..300 {
        let mut m = asap_strategy.new_tree(&mut runner).unwrap().current();
        match &mut m {
            AsapMessage::RegistrationResponse { error: Some(c), .. }
            | AsapMessage::DeregistrationResponse { error: Some(c), .. }
            | AsapMessage::HandleResolutionResponse { error: Some(c), .. }
            | AsapMessage::Error { causes: c } => dissectable(c, &mut s.embedded, true),
            _ => {}
        }
        s.asap.push(m);
        let mut m = enrp_strategy.new_tree(&mut runner).unwrap().current();
        if let EnrpMessage::Error { causes, .. } = &mut m {
            dissectable(causes, &mut s.embedded, false);
        }
        s.enrp.push(m);
    }
    let problems = check_with_wireshark("random", &s);
    assert!(
        problems.is_empty(),
        "Wireshark disagrees (seed {seed}, WIRESHARK_SEED={seed} reproduces):\n  {}",
        problems.join("\n  ")
    );
}

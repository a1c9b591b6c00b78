//! Proptest strategies for every message, parameter and field of the crate.
//!
//! The strategies produce only values the encoder accepts (the rules of
//! RFC 5354 that the types do not enforce themselves: SCTP transports carry
//! 1..8 addresses here, other transports exactly one; a Business Card and a
//! handle table pool entry hold at least one PE; an Operation Error at least
//! one cause), and only values that decode back to themselves (an unknown
//! policy or cause code is one the crate really does not know).

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use rserpool_wire::limits::MAX_POOL_HANDLE_LEN;
use rserpool_wire::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Opaque bytes of `0..=max` length; any byte value, with 0x00 and 0xFF runs
/// made likely so that "looks like padding" and "all ones" are exercised.
pub fn opaque(max: usize) -> BoxedStrategy<Bytes> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..=max),
        1 => (0..=max).prop_map(|n| vec![0x00; n]),
        1 => (0..=max).prop_map(|n| vec![0xFF; n]),
    ]
    .prop_map(Bytes::from)
    .boxed()
}

/// A pool handle of 1..=MAX_POOL_HANDLE_LEN arbitrary bytes, lengths near
/// the padding boundaries and the limit made likely.
pub fn pool_handle() -> BoxedStrategy<PoolHandle> {
    let len = prop_oneof![
        3 => 1..=16usize,
        1 => 1..=MAX_POOL_HANDLE_LEN,
        1 => (MAX_POOL_HANDLE_LEN - 4)..=MAX_POOL_HANDLE_LEN,
    ];
    len.prop_flat_map(|n| {
        prop_oneof![
            4 => vec(any::<u8>(), n),
            1 => Just(vec![0x00; n]),
            1 => Just(vec![0xFF; n]),
        ]
    })
    .prop_map(|b| PoolHandle::new(b).expect("length is within 1..=MAX_POOL_HANDLE_LEN"))
    .boxed()
}

/// A registrar ID (never zero).
pub fn pr_id() -> BoxedStrategy<PrId> {
    prop_oneof![
        1 => Just(1u32),
        1 => Just(u32::MAX),
        6 => 1..=u32::MAX,
    ]
    .prop_map(|v| PrId::new(v).expect("non-zero"))
    .boxed()
}

/// A PE ID (any value, zero included: the wire does not forbid it).
pub fn pe_id() -> BoxedStrategy<PeId> {
    any::<u32>().prop_map(PeId).boxed()
}

/// An IPv4 or IPv6 address.
pub fn ip() -> BoxedStrategy<IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
    .boxed()
}

/// Either transport use.
pub fn transport_use() -> BoxedStrategy<TransportUse> {
    prop_oneof![
        Just(TransportUse::DataOnly),
        Just(TransportUse::DataPlusControl)
    ]
    .boxed()
}

/// Every transport protocol, DCCP with an arbitrary service code.
pub fn protocol() -> BoxedStrategy<Protocol> {
    prop_oneof![
        transport_use().prop_map(Protocol::Sctp),
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::UdpLite),
        any::<u32>().prop_map(|service_code| Protocol::Dccp { service_code }),
    ]
    .boxed()
}

/// An SCTP transport with 1..=8 addresses (IPv4 and IPv6 mixed).
pub fn sctp_transport() -> BoxedStrategy<TransportAddress> {
    (transport_use(), any::<u16>(), vec(ip(), 1..=8))
        .prop_map(|(u, port, addresses)| TransportAddress::sctp(port, u, addresses))
        .boxed()
}

/// A transport of any protocol: SCTP with 1..=8 addresses, others with one.
pub fn transport() -> BoxedStrategy<TransportAddress> {
    protocol()
        .prop_flat_map(|protocol| {
            let n = match protocol {
                Protocol::Sctp(_) => 1..=8usize,
                _ => 1..=1usize,
            };
            (any::<u16>(), vec(ip(), n)).prop_map(move |(port, addresses)| TransportAddress {
                protocol,
                port,
                addresses: addresses.into(),
            })
        })
        .boxed()
}

/// A PE's user transport: any address transport or an Opaque Transport.
pub fn user_transport() -> BoxedStrategy<UserTransport> {
    prop_oneof![
        4 => transport().prop_map(UserTransport::Address),
        1 => opaque(40).prop_map(UserTransport::Opaque),
    ]
    .boxed()
}

/// A policy type code the crate does not know.
pub fn unknown_policy_code() -> BoxedStrategy<u32> {
    prop_oneof![
        any::<u32>(),
        // Neighbours of known codes, in both the IETF and the private ranges.
        prop::sample::select(vec![
            0x0000_0000u32,
            0x0000_0006,
            0x4000_0000,
            0x4000_0005,
            0x8000_0000,
            0xB000_1000,
            0xB000_1005,
            0xB000_2000,
            0xB000_2004,
            0xB000_2005,
            0xFFFF_FFFF,
        ]),
    ]
    .prop_filter("must be unknown to the crate", |c| {
        matches!(PolicyType::from_code(*c), PolicyType::Unknown(_))
    })
    .boxed()
}

/// Every policy variant with arbitrary values.
pub fn policy() -> BoxedStrategy<Policy> {
    use Policy as P;
    let u = any::<u32>;
    prop_oneof![
        Just(P::RoundRobin),
        u().prop_map(|weight| P::WeightedRoundRobin { weight }),
        Just(P::Random),
        u().prop_map(|weight| P::WeightedRandom { weight }),
        u().prop_map(|priority| P::Priority { priority }),
        u().prop_map(|load| P::LeastUsed { load }),
        (u(), u())
            .prop_map(|(load, degradation)| P::LeastUsedWithDegradation { load, degradation }),
        (u(), u()).prop_map(|(load, degradation)| P::PriorityLeastUsed { load, degradation }),
        u().prop_map(|load| P::RandomizedLeastUsed { load }),
        (u(), u())
            .prop_map(|(load, degradation)| P::RandomizedPriorityLeastUsed { load, degradation }),
        (u(), u()).prop_map(
            |(load, degradation)| P::RandomizedLeastUsedWithDegradation { load, degradation }
        ),
        (u(), u()).prop_map(|(load, degradation)| P::PriorityLeastUsedWithDegradation {
            load,
            degradation
        }),
        (u(), u()).prop_map(
            |(load, degradation)| P::RandomizedPriorityLeastUsedWithDegradation {
                load,
                degradation
            }
        ),
        (u(), u(), u()).prop_map(|(weight, weight_dpf, distance)| P::WeightedRandomDpf {
            weight,
            weight_dpf,
            distance
        }),
        (u(), u(), u()).prop_map(|(load, load_dpf, distance)| P::LeastUsedDpf {
            load,
            load_dpf,
            distance
        }),
        (u(), u(), u(), u()).prop_map(|(load, degradation, load_dpf, distance)| {
            P::LeastUsedWithDegradationDpf {
                load,
                degradation,
                load_dpf,
                distance,
            }
        }),
        (unknown_policy_code(), opaque(24)).prop_map(|(code, data)| P::Unknown {
            code,
            data: data[..].into()
        }),
    ]
    .boxed()
}

/// A cause code: every named one, and arbitrary 16-bit codes.
pub fn cause_code() -> BoxedStrategy<CauseCode> {
    prop_oneof![
        3 => 0u16..=10,
        1 => any::<u16>(),
    ]
    .prop_map(CauseCode::from_code)
    .boxed()
}

/// An error cause with arbitrary information (empty included).
pub fn error_cause() -> BoxedStrategy<ErrorCause> {
    (cause_code(), opaque(40))
        .prop_map(|(code, info)| ErrorCause { code, info })
        .boxed()
}

/// The causes of an Operation Error (at least one).
pub fn causes() -> BoxedStrategy<Vec<ErrorCause>> {
    vec(error_cause(), 1..=4).boxed()
}

/// An optional Operation Error.
pub fn maybe_error() -> BoxedStrategy<Option<Vec<ErrorCause>>> {
    prop::option::of(causes()).boxed()
}

/// A registration life: any 32-bit signed value, the infinite one made likely.
pub fn registration_life() -> BoxedStrategy<RegistrationLife> {
    prop_oneof![
        1 => Just(RegistrationLife::INFINITE),
        1 => Just(RegistrationLife(0)),
        1 => Just(RegistrationLife(i32::MIN)),
        5 => any::<i32>().prop_map(RegistrationLife),
    ]
    .boxed()
}

/// A pool element with every optional part present or absent.
pub fn pool_element() -> BoxedStrategy<PoolElement> {
    (
        pe_id(),
        prop::option::of(pr_id()),
        registration_life(),
        user_transport(),
        policy(),
        prop::option::of(sctp_transport()),
    )
        .prop_map(
            |(id, home_registrar, registration_life, user_transport, policy, asap_transport)| {
                PoolElement {
                    id,
                    home_registrar,
                    registration_life,
                    user_transport,
                    policy,
                    asap_transport,
                }
            },
        )
        .boxed()
}

/// 0..=3 pool elements.
pub fn pool_elements() -> BoxedStrategy<Vec<PoolElement>> {
    vec(pool_element(), 0..=3).boxed()
}

/// A registrar's server information.
pub fn server_information() -> BoxedStrategy<ServerInformation> {
    (pr_id(), sctp_transport())
        .prop_map(|(server_id, transport)| ServerInformation {
            server_id,
            transport,
        })
        .boxed()
}

/// Every ASAP message type (all 14) with arbitrary contents and flags.
pub fn asap_message() -> BoxedStrategy<AsapMessage> {
    use AsapMessage as M;
    let b = any::<bool>;
    prop_oneof![
        (pool_handle(), pool_element()).prop_map(|(pool_handle, pool_element)| M::Registration {
            pool_handle,
            pool_element
        }),
        (pool_handle(), pe_id())
            .prop_map(|(pool_handle, pe_id)| M::Deregistration { pool_handle, pe_id }),
        (b(), pool_handle(), pe_id(), maybe_error()).prop_map(
            |(rejected, pool_handle, pe_id, error)| M::RegistrationResponse {
                rejected,
                pool_handle,
                pe_id,
                error
            }
        ),
        (pool_handle(), pe_id(), maybe_error()).prop_map(|(pool_handle, pe_id, error)| {
            M::DeregistrationResponse {
                pool_handle,
                pe_id,
                error,
            }
        }),
        (b(), pool_handle(), prop::option::of(any::<u32>())).prop_map(
            |(subscribe, pool_handle, items)| M::HandleResolution {
                subscribe,
                pool_handle,
                items
            }
        ),
        (
            b(),
            pool_handle(),
            prop::option::of(policy()),
            pool_elements(),
            maybe_error()
        )
            .prop_map(|(accepted, pool_handle, policy, pool_elements, error)| {
                M::HandleResolutionResponse {
                    accepted,
                    pool_handle,
                    policy,
                    pool_elements,
                    error,
                }
            }),
        (b(), pr_id(), pool_handle(), prop::option::of(pe_id())).prop_map(
            |(home, server_id, pool_handle, pe_id)| M::EndpointKeepAlive {
                home,
                server_id,
                pool_handle,
                pe_id
            }
        ),
        (pool_handle(), pe_id())
            .prop_map(|(pool_handle, pe_id)| M::EndpointKeepAliveAck { pool_handle, pe_id }),
        (pool_handle(), pe_id())
            .prop_map(|(pool_handle, pe_id)| M::EndpointUnreachable { pool_handle, pe_id }),
        (pr_id(), vec(transport(), 0..=4)).prop_map(|(server_id, transports)| {
            M::ServerAnnounce {
                server_id,
                transports,
            }
        }),
        opaque(64).prop_map(|cookie| M::Cookie { cookie }),
        opaque(64).prop_map(|cookie| M::CookieEcho { cookie }),
        (
            pool_handle(),
            prop::option::of(policy()),
            vec(pool_element(), 1..=3)
        )
            .prop_map(|(pool_handle, policy, pool_elements)| M::BusinessCard {
                pool_handle,
                policy,
                pool_elements
            }),
        causes().prop_map(|causes| M::Error { causes }),
    ]
    .boxed()
}

/// Sender and receiver IDs, the receiver present or not (group-cast).
pub fn servers() -> BoxedStrategy<Servers> {
    (pr_id(), prop::option::of(pr_id()))
        .prop_map(|(sender, receiver)| Servers { sender, receiver })
        .boxed()
}

/// Every ENRP message type (all 10) with arbitrary contents and flags.
pub fn enrp_message() -> BoxedStrategy<EnrpMessage> {
    use EnrpMessage as M;
    let b = any::<bool>;
    let pool_entry =
        (pool_handle(), vec(pool_element(), 1..=2)).prop_map(|(pool_handle, pool_elements)| {
            PoolEntry {
                pool_handle,
                pool_elements,
            }
        });
    prop_oneof![
        (
            servers(),
            b(),
            prop::option::of(any::<u16>()),
            prop::option::of(server_information())
        )
            .prop_map(
                |(servers, reply_required, checksum, server_info)| M::Presence {
                    servers,
                    reply_required,
                    checksum,
                    server_info
                }
            ),
        (servers(), b()).prop_map(|(servers, own_children_only)| M::HandleTableRequest {
            servers,
            own_children_only
        }),
        (servers(), b(), b(), vec(pool_entry, 0..=3)).prop_map(
            |(servers, rejected, more_to_send, pools)| M::HandleTableResponse {
                servers,
                rejected,
                more_to_send,
                pools
            }
        ),
        (
            servers(),
            b(),
            prop_oneof![Just(UpdateAction::AddPe), Just(UpdateAction::DelPe)],
            pool_handle(),
            pool_element()
        )
            .prop_map(
                |(servers, takeover_suggested, action, pool_handle, pool_element)| {
                    M::HandleUpdate {
                        servers,
                        takeover_suggested,
                        action,
                        pool_handle,
                        pool_element,
                    }
                }
            ),
        servers().prop_map(|servers| M::ListRequest { servers }),
        (servers(), b(), vec(server_information(), 0..=4)).prop_map(
            |(servers, rejected, peers)| M::ListResponse {
                servers,
                rejected,
                peers
            }
        ),
        (servers(), pr_id()).prop_map(|(servers, target)| M::InitTakeover { servers, target }),
        (servers(), pr_id()).prop_map(|(servers, target)| M::InitTakeoverAck { servers, target }),
        (servers(), pr_id()).prop_map(|(servers, target)| M::TakeoverServer { servers, target }),
        (servers(), causes()).prop_map(|(servers, causes)| M::Error { servers, causes }),
    ]
    .boxed()
}

/// Any message of either protocol.
pub fn message() -> BoxedStrategy<Message> {
    prop_oneof![
        asap_message().prop_map(Message::Asap),
        enrp_message().prop_map(Message::Enrp),
    ]
    .boxed()
}

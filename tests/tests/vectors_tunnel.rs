//! Test vectors for tunnel-server names and URLs (hybrid-protocol.md §4).
//! One test per vector name in `tests/vectors/hybrid-vectors.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hybrid_tests::{arr, s, vector};
use hybrid_tunnel::names::{domain_name, HEADER_ROUTING_ID};
use hybrid_tunnel::{RoutingId, TunnelBase, TunnelId};

fn check_domain_table(name: &str) {
    let v = vector(name);
    for row in v["table"].as_array().unwrap() {
        let id = u16::try_from(row["id"].as_u64().unwrap()).unwrap();
        match row["domain"].as_str() {
            Some(expected) => assert_eq!(domain_name(id).unwrap(), expected, "id {id}"),
            None => assert!(domain_name(id).is_err(), "id {id} must be invalid"),
        }
    }
}

#[test]
fn tunnel_domains() {
    check_domain_table("tunnel_domains");
    // The hash input the vector spells out for 266.
    let v = vector("tunnel_domains");
    let mut input = b"caBLEv2 tunnel server domain".to_vec();
    input.extend_from_slice(&266u16.to_le_bytes());
    input.push(0);
    assert_eq!(hex::encode(input), s(&v, "/hash_input_for_266_hex"));
}

#[test]
fn tunnel_domains_extra() {
    check_domain_table("tunnel_domains_extra");
}

#[test]
fn tunnel_test_server_routing_id() {
    let v = vector("tunnel_test_server_routing_id");
    assert_eq!(HEADER_ROUTING_ID, s(&v, "/header_name"));
    let rid = RoutingId::from_header(s(&v, "/header_value")).unwrap();
    assert_eq!(rid.0, arr::<3>(&v, "/routing_id_hex"));
    assert_eq!(rid.to_hex(), s(&v, "/header_value"));
}

/// URL fields of the advert vectors (the crypto fields are checked in
/// `vectors_core.rs`, one test per vector name there).
#[test]
fn advert_vector_urls() {
    let v = vector("advert_zero_secret");
    let tid = TunnelId(arr(&v, "/tunnel_id_hex"));
    let rid = RoutingId(arr(&v, "/routing_id_hex"));
    assert_eq!(
        TunnelBase::Domain(0xF980).new_url(&tid).unwrap(),
        s(&v, "/new_tunnel_url_domain_f980")
    );
    for (id, key) in [
        (0xF980u16, "/connect_url_domain_f980"),
        (0, "/connect_url_domain_0"),
        (1, "/connect_url_domain_1"),
    ] {
        assert_eq!(
            TunnelBase::Domain(id).connect_url(&rid, &tid).unwrap(),
            s(&v, key)
        );
    }
    let v = vector("advert_decrypt_known");
    let tid = TunnelId(arr(&v, "/tunnel_id_hex"));
    let rid = RoutingId(arr(&v, "/expected_routing_id_hex"));
    assert_eq!(
        TunnelBase::Domain(0).new_url(&tid).unwrap(),
        s(&v, "/new_tunnel_url")
    );
    assert_eq!(
        TunnelBase::Domain(0).connect_url(&rid, &tid).unwrap(),
        s(&v, "/connect_url")
    );
    assert_eq!(
        TunnelId::from_hex(&tid.to_hex().to_lowercase()).unwrap(),
        tid
    );
}

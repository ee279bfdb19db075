#![no_main]
//! The tunnel server's own WebSocket reader (crates/hybrid-tunnel/src/server/ws.rs):
//! a client's bytes never make it panic, however they are cut it gives the
//! same events, every message is within the limit and is re-framed in
//! place as exactly the server frame of its payload.
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// The message limit, small so the fuzzer reaches it.
    max: u16,
    cuts: Vec<u8>,
    bytes: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let cuts: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c)).collect();
    let max = usize::from(input.max % 2048).max(1);
    hybrid_tunnel::server::fuzzing::websocket(input.bytes, &cuts, max);
});

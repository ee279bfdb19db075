#![no_main]
//! The tunnel server's parsers of client bytes (request head, routing,
//! upgrade checks, `X-Forwarded-For`) never panic, and its frame tracker
//! (slow-frame protection) ends in the same state however the bytes are cut.
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    cuts: Vec<u8>,
    bytes: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    hybrid_tunnel::server::fuzzing::request(input.bytes);
    let cuts: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c)).collect();
    hybrid_tunnel::server::fuzzing::frames(input.bytes, &cuts);
});

//! Fuzzes `EnrpMessage::decode`: see `rserpool_wire_fuzz::check`.
#![no_main]

use rserpool_wire::EnrpMessage;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rserpool_wire_fuzz::check::<EnrpMessage>(data);
});

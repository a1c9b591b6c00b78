//! Fuzzes `AsapMessage::decode`: see `rserpool_wire_fuzz::check`.
#![no_main]

use rserpool_wire::AsapMessage;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rserpool_wire_fuzz::check::<AsapMessage>(data);
});

//! The registrar machine driven by arbitrary input (see
//! `rserpool_core::fuzzing`): raw and well-formed ASAP/ENRP messages on
//! several associations, associations coming and going, time passing; the
//! registrar's invariants are checked after every step.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rserpool_core::fuzzing::drive_registrar(data);
});

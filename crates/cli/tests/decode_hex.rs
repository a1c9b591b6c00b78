//! `rserpool decode` on hex input: the Wireshark-checked vectors of
//! `docs/spec/WIRE.md` §11, bad hex, and messages that do not decode.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn rserpool(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rserpool"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rserpool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// WIRE.md §11: (protocol, hex, expected summary line).
const VECTORS: &[(&str, &str, &str)] = &[
    (
        "--enrp",
        "040100600102030405060708000000000009000c4563686f506f6f6c000a004411223344aabbccdd000075300004001813880001000100080a000001000100080a0000020008000c4000000180000000000400109c400000000100080a000001",
        "ENRP_HANDLE_UPDATE [T] from=0x01020304 to=0x05060708 ADD_PE handle=EchoPool pe=0x11223344 home=0xaabbccdd life=30000 LU",
    ),
    (
        "--enrp",
        "0101002c0102030400000000000f0006beef0000000b0018010203040004001026ad0000000100080a000009",
        "ENRP_PRESENCE [R] from=0x01020304 checksum=0xbeef SCTP:10.0.0.9:9901",
    ),
    (
        "--enrp",
        "0201000c0000000100000002",
        "ENRP_HANDLE_TABLE_REQUEST [W] from=0x00000001 to=0x00000002",
    ),
    (
        "--enrp",
        "0301000c0000000200000001",
        "ENRP_HANDLE_TABLE_RESPONSE [R] from=0x00000002 to=0x00000001",
    ),
    (
        "--enrp",
        "07000010000000010000000000000009",
        "ENRP_INIT_TAKEOVER from=0x00000001 target=0x00000009",
    ),
    (
        "--asap",
        "050000180009000c4563686f506f6f6c803f000800000003",
        "ASAP_HANDLE_RESOLUTION handle=EchoPool items=3",
    ),
    (
        "--asap",
        "060000180009000c4563686f506f6f6c000c000800090004",
        "ASAP_HANDLE_RESOLUTION_RESPONSE handle=EchoPool error=Unknown Pool Handle (0x0009)",
    ),
    (
        "--asap",
        "0701001caabbccdd0009000c4563686f506f6f6c000e000811223344",
        "ASAP_ENDPOINT_KEEP_ALIVE [H] server=0xaabbccdd handle=EchoPool pe=0x11223344",
    ),
    (
        "--asap",
        "080000180009000c4563686f506f6f6c000e000811223344",
        "ASAP_ENDPOINT_KEEP_ALIVE_ACK handle=EchoPool pe=0x11223344",
    ),
    (
        "--asap",
        "0b000010000d00096162636465000000",
        "ASAP_COOKIE cookie[5]",
    ),
    (
        "--asap",
        "0e000014000c00100001000c4444000778797a00",
        "ASAP_ERROR Unrecognized Parameter (0x0001)[8 bytes]",
    ),
];

#[test]
fn wire_md_vectors_as_arguments() {
    for (proto, hex, want) in VECTORS {
        let o = rserpool(&["decode", proto, hex], "");
        assert!(o.status.success(), "{hex}: {}", stderr(&o));
        let got = stdout(&o);
        assert!(got.starts_with(want), "{hex}:\n got {got}\nwant {want}");
        assert_eq!(got.lines().count(), 1);
    }
}

#[test]
fn wire_md_vectors_with_ppid_and_guessed_protocol() {
    for (proto, hex, want) in VECTORS {
        let ppid = if *proto == "--asap" { "11" } else { "12" };
        let o = rserpool(&["decode", "--ppid", ppid, hex], "");
        assert!(
            stdout(&o).starts_with(want),
            "--ppid {ppid} {hex}: {}",
            stdout(&o)
        );
        // Without a protocol each vector is tried as ASAP, then ENRP; every one
        // of them fits only its own protocol.
        let o = rserpool(&["decode", hex], "");
        assert!(o.status.success(), "{hex}: {}{}", stdout(&o), stderr(&o));
        assert!(
            stdout(&o).starts_with(want),
            "guessing {hex}: {}",
            stdout(&o)
        );
        assert!(!stdout(&o).contains("also decodes as"), "{}", stdout(&o));
    }
}

#[test]
fn bytes_valid_as_both_protocols_say_so() {
    // As ASAP: ENDPOINT_KEEP_ALIVE_ACK, pool handle "ABCD", PE 0x80010004.
    // As ENRP: INIT_TAKEOVER_ACK whose last word is a skippable unknown parameter.
    let hex = "080000140009000841424344000e000880010004";
    let o = rserpool(&["decode", hex], "");
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        "ASAP_ENDPOINT_KEEP_ALIVE_ACK handle=ABCD pe=0x80010004 (also decodes as ENRP: pass --enrp)\n"
    );
    let o = rserpool(&["decode", "--enrp", hex], "");
    assert!(
        stdout(&o).starts_with("ENRP_INIT_TAKEOVER_ACK from=0x00090008"),
        "{}",
        stdout(&o)
    );
    let o = rserpool(&["decode", "--json", hex], "");
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["also_decodes_as"], "ENRP");
}

#[test]
fn stdin_lines_with_separators_and_comments() {
    let input = "# WIRE.md vectors, reformatted\n\
                 05:00:00:18 0009000c 4563686f 506f6f6c 803f0008 00000003\n\
                 \n\
                 0x0b000010 000d0009 61626364 65000000   # cookie \"abcde\"\n";
    let o = rserpool(&["decode", "--asap"], input);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "ASAP_HANDLE_RESOLUTION handle=EchoPool items=3\nASAP_COOKIE cookie[5]\n"
    );
    assert!(
        stderr(&o).contains("2 messages: 2 decoded, 0 errors"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn json_lines_name_type_flags_and_fields() {
    let o = rserpool(&["decode", "--json", "--enrp", VECTORS[0].1], "");
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["protocol"], "ENRP");
    assert_eq!(v["type"], "ENRP_HANDLE_UPDATE");
    assert_eq!(v["flags"]["T"], true);
    assert_eq!(v["fields"]["pool_element"]["pe_id"], "0x11223344");
    assert_eq!(
        v["fields"]["pool_element"]["policy"]["load"],
        0x8000_0000u32
    );
    assert_eq!(v["length"], 96);
}

#[test]
fn verbose_prints_the_debug_form() {
    let o = rserpool(&["decode", "-v", "-x", "--asap", VECTORS[9].1], "");
    let out = stdout(&o);
    assert!(out.contains("Cookie {"), "{out}");
    assert!(
        out.contains("hex: 0b000010000d00096162636465000000"),
        "{out}"
    );
}

#[test]
fn bad_hex_is_a_usage_error() {
    let o = rserpool(&["decode", "--asap", "0b00zz"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid hex digit 'z' at column 5"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());

    let o = rserpool(&["decode", "--asap", "0b0"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("odd number of hex digits"),
        "{}",
        stderr(&o)
    );

    // On stdin a bad line is reported with its number; the good lines still decode.
    let o = rserpool(
        &["decode", "--asap"],
        "0b000010000d00096162636465000000\nnot hex\n",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 2: invalid hex digit 'n' at column 1"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "ASAP_COOKIE cookie[5]\n");

    let o = rserpool(&["decode", "no/such/file.pcap"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no/such/file.pcap: no such file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_message_exits_nonzero_with_offset() {
    // ASAP_HANDLE_RESOLUTION whose second parameter has type 0x4033: unknown,
    // high bits 01 = stop and report (RFC 5354 §3).
    let hex = "050000180009000c4563686f506f6f6c4033000800000003";
    let o = rserpool(&["decode", "--asap", hex], "");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "error at offset 16: unrecognized parameter type 0x4033 (stop and report)\n"
    );
    // --allow-errors still prints the error but succeeds.
    let o = rserpool(&["decode", "--asap", "--allow-errors", hex], "");
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("offset 16"));

    // A truncated message.
    let o = rserpool(&["decode", "--enrp", "0201000c00000001"], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("error at offset "), "{}", stdout(&o));

    // Guessing reports both attempts.
    let o = rserpool(&["decode", "ff000004"], "");
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.starts_with("error: not ASAP (at offset 0: unknown message type 0xff"),
        "{out}"
    );
    assert!(out.contains("not ENRP (at offset 0"), "{out}");

    // JSON carries the offset, a kind name and the bytes.
    let o = rserpool(&["decode", "--asap", "--json", hex], "");
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["errors"][0]["offset"], 16);
    assert_eq!(v["errors"][0]["kind"], "unrecognized_parameter");
    assert_eq!(v["payload"], hex);
}

#[test]
fn mixed_stdin_counts_errors_with_line_numbers() {
    let input = format!("{}\n0e00000c0000000000000000\n", VECTORS[5].1);
    let o = rserpool(&["decode", "--asap"], &input);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[1].starts_with("line 2: error at offset "), "{out}");
    assert!(
        stderr(&o).contains("2 messages: 1 decoded, 1 error"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_has_examples_and_exit_status() {
    let o = rserpool(&["decode", "--help"], "");
    assert!(o.status.success());
    let h = stdout(&o);
    assert!(
        h.contains("Examples:") && h.contains("Exit status:") && h.contains("--pcap"),
        "{h}"
    );
}

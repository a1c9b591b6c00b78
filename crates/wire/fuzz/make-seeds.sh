#!/usr/bin/env bash
# Regenerates the seed corpus in seeds/{asap,enrp}/ from
#  - the hex test vectors of shared/spec/WIRE.md §11 (rows named ASAP_* / ENRP_*),
#  - a few messages composed from them (below),
#  - one dense message that stresses the allocation budget, and
#  - the SCTP DATA payloads with PPID 11 (ASAP) / 12 (ENRP) of the real capture
#    shared/data/rsplib-demo-2007.pcap (pre-RFC type codes: good error-path seeds),
#    if tshark is installed.
# Each seed is named by the SHA-1 of its bytes, as libFuzzer names corpus files.
# Usage: crates/wire/fuzz/make-seeds.sh [path/to/shared]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${1:-$here/../../../../shared}
wire_md=$shared/spec/WIRE.md
pcap=$shared/data/rsplib-demo-2007.pcap

write_seed() { # protocol hex
    local dir=$here/seeds/$1 tmp
    mkdir -p "$dir"
    tmp=$(mktemp)
    printf '%b' "$(sed 's/../\\x&/g' <<<"$2")" >"$tmp"
    mv "$tmp" "$dir/$(sha1sum "$tmp" | cut -d' ' -f1)"
}

n=0
# Table rows of §11: "| ENRP_... | `hex` |".
while IFS=$'\t' read -r proto hex; do
    write_seed "$proto" "$hex"
    n=$((n + 1))
done < <(awk '/^## 11\./{on=1; next} /^## /{on=0} on' "$wire_md" |
    sed -n 's/^| *\(ASAP\|ENRP\)_[^|]*| *`\([0-9a-f]*\)` *|.*/\1\t\2/p' |
    tr 'A-Z' 'a-z')
echo "WIRE.md §11: $n vectors"

# Composed from the §11 Pool Element and Server Information with this crate's
# encoder (and checked to decode back): ASAP_REGISTRATION, ASAP_BUSINESS_CARD,
# a positive ASAP_HANDLE_RESOLUTION_RESPONSE, a rejected
# ASAP_REGISTRATION_RESPONSE, an ENRP_HANDLE_TABLE_RESPONSE page and an
# ENRP_LIST_RESPONSE. Mutation alone rarely assembles a whole valid Pool
# Element inside these (10 minutes did not reach the first two).
n=0
while IFS=$'\t' read -r proto hex; do
    write_seed "$proto" "$hex"
    n=$((n + 1))
done <<'COMPOSED'
asap	010000400009000c4563686f506f6f6c000a00305566778800000000000075300004001813880001000100080a000001000100080a0000020008000800000001
asap	0d0000900009000c4563686f506f6f6c0008000c4000000180000000000a004411223344aabbccdd000075300004001813880001000100080a000001000100080a0000020008000c4000000180000000000400109c400000000100080a000001000a00305566778800000000000075300004001813880001000100080a000001000100080a0000020008000800000001
asap	060100900009000c4563686f506f6f6c0008000c4000000180000000000a004411223344aabbccdd000075300004001813880001000100080a000001000100080a0000020008000c4000000180000000000400109c400000000100080a000001000a00305566778800000000000075300004001813880001000100080a000001000100080a0000020008000800000001
asap	030100280009000c4563686f506f6f6c000e000811223344000c00100005000c0008000800000001
enrp	030200c801020304050607080009000c4563686f506f6f6c000a004411223344aabbccdd000075300004001813880001000100080a000001000100080a0000020008000c4000000180000000000400109c400000000100080a000001000a00305566778800000000000075300004001813880001000100080a000001000100080a0000020008000800000001000900094f74686572000000000a00305566778800000000000075300004001813880001000100080a000001000100080a0000020008000800000001
enrp	0600003c0102030405060708000b0018010203040004001026ad0000000100080a000009000b0018010203040004001026ad0000000100080a000009
COMPOSED
echo "composed: $n messages"

# The most heap per wire byte found so far (docs/FUZZING.md, allocation
# budget): an ENRP_HANDLE_TABLE_RESPONSE of 83 pools, each one minimal PE with
# an empty Opaque Transport; 3000 bytes that decode to about 18.5 times as much heap.
entry=0009000561000000000a001c11223344aabbccdd00007530001000040008000800000001
write_seed enrp "03000bb80102030405060708$(for _ in $(seq 83); do printf %s "$entry"; done)"
echo "dense: 1 message"

if command -v tshark >/dev/null && [ -f "$pcap" ]; then
    n=0
    # ulp_dissection off: otherwise port heuristics (V5UA, ...) claim some
    # payloads and data.data comes back empty.
    while IFS=$'\t' read -r ppid hex; do
        case $ppid in 11) proto=asap ;; 12) proto=enrp ;; *) continue ;; esac
        write_seed "$proto" "$hex"
        n=$((n + 1))
    done < <(tshark -r "$pcap" -o sctp.ulp_dissection:FALSE \
        -Y 'sctp.data_payload_proto_id == 11 || sctp.data_payload_proto_id == 12' \
        -T fields -e sctp.data_payload_proto_id -e data.data 2>/dev/null | sort -u)
    echo "capture: $n distinct payloads"
else
    echo "tshark or $pcap missing: capture payloads skipped"
fi
ls "$here/seeds/asap" | wc -l | sed 's/^/asap seeds: /'
ls "$here/seeds/enrp" | wc -l | sed 's/^/enrp seeds: /'

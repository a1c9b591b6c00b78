#!/usr/bin/env bash
# Regenerates the seed corpus in seeds/{asap,enrp}/ from
#  - the hex test vectors of shared/spec/WIRE.md §11 (rows named ASAP_* / ENRP_*), and
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

#!/usr/bin/env bash
# Makes the certificates of a TLS cluster (README, "Security").
#
#   scripts/make-certs.sh DIR HOST[,ALTNAME...] [HOST[,ALTNAME...]...]
#
# One HOST[,ALTNAME...] argument per member, in MEMBERS order: member i gets
# nodeI.crt/nodeI.key with every name of its argument as a SAN (addresses
# as IP SANs, anything else as DNS SANs), because clients and peers check
# the name they dial against it.  Files in DIR:
#   ca.crt ca.key                the cluster CA (keep ca.key off the nodes)
#   nodeI.crt nodeI.key          member I: server and client auth, URI SAN dht:peer
#   coordinator.crt .key         the fan-out client: client auth, URI SAN dht:peer
#   client.crt client.key        a client without the peer role (KeyValue only)
#   other-ca.crt other-ca.key    a second, unrelated CA, for tests
#   other-peer.crt .key          a peer-role certificate of the second CA, for tests
# A CA already in DIR is reused, so running it again issues new member
# certificates that the running cluster still trusts (rotation).  Keys are
# written with mode 600; certificates 644.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 DIR HOST[,ALTNAME...] [HOST[,ALTNAME...]...]" >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "$0: openssl is missing (scripts/deps.sh installs it)" >&2; exit 1; }
dir=$1
shift
umask 077 # keys are never readable by others, not even for a moment
mkdir -p "$dir"
DAYS=${DAYS:-825}
ROLE=URI:dht:peer

# newkey FILE: a P-256 key, readable by its owner only.
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# ca NAME CN: DIR/NAME.crt and .key, unless they exist.
ca() {
    if [ -s "$dir/$1.crt" ] && [ -s "$dir/$1.key" ]; then
        echo "using the existing $dir/$1.crt"
        return
    fi
    newkey "$dir/$1.key"
    openssl req -x509 -new -key "$dir/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$dir/$1.crt"
}

# sans HOST,ALT,...: the subjectAltName list of those names and the role.
sans() {
    local out="" n names
    IFS=, read -ra names <<<"$1"
    for n in "${names[@]}"; do
        n=${n#[}
        n=${n%]}
        [ -n "$n" ] || continue
        if [[ $n =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || $n == *:* ]]; then
            out="$out,IP:$n"
        else
            out="$out,DNS:$n"
        fi
    done
    echo "${out#,}${out:+,}$ROLE"
}

# leaf NAME CA CN EKU SAN: DIR/NAME.crt and .key signed by DIR/CA.
leaf() {
    local name=$1 issuer=$2 cn=$3 eku=$4 san=$5 ext
    ext=$(mktemp)
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=$eku"
        [ -n "$san" ] && echo "subjectAltName=$san"
    } >"$ext"
    newkey "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/CN=$cn" |
        openssl x509 -req -CA "$dir/$issuer.crt" -CAkey "$dir/$issuer.key" \
            -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -sha256 \
            -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
    rm -f "$ext"
}

ca ca "dht cluster CA"
i=0
for member in "$@"; do
    i=$((i + 1))
    leaf "node$i" ca "dht member $i" serverAuth,clientAuth "$(sans "$member")"
done
leaf coordinator ca "dht coordinator" clientAuth "$ROLE"
leaf client ca "dht client" clientAuth ""
ca other-ca "another CA"
leaf other-peer other-ca "dht member from another CA" serverAuth,clientAuth "$(sans "$1")"
chmod 600 "$dir"/*.key
chmod 644 "$dir"/*.crt
echo "made in $dir: ca.crt, node1..node$i, coordinator, client, other-ca, other-peer (.crt/.key)"

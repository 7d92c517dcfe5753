#!/usr/bin/env bash
# Installs the Debian packages the project needs, if any is missing.
# Usage: scripts/deps.sh [extra packages...]
set -euo pipefail
pkgs=(build-essential cmake pkg-config libgrpc-dev libprotobuf-c-dev protobuf-c-compiler
      protobuf-compiler clang libclang-rt-14-dev iproute2 nftables procps tmux python3-grpcio python3-h2 openssl "$@")
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Installs what building and testing volplugin needs on a Debian machine, and
# only what is missing: apt packages (Ceph client libraries for go-ceph, the
# filesystem and loop-device tools the local backend runs) and Go modules.
set -euo pipefail

packages=(gcc make pkg-config librados-dev librbd-dev e2fsprogs xfsprogs util-linux mount)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if ! command -v go >/dev/null 2>&1; then
	# Debian's go is older than go.mod asks; it fetches the right toolchain
	# itself (GOTOOLCHAIN=auto) through the module proxy.
	missing+=(golang-go)
fi
if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "deps: missing packages ${missing[*]}; run as root or install them" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq -o DPkg::Lock::Timeout=120
	apt-get install -y -qq -o DPkg::Lock::Timeout=120 --no-install-recommends "${missing[@]}" >/dev/null
fi
go mod download

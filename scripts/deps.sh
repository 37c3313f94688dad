#!/usr/bin/env bash
# Installs what building and testing volplugin needs on a Debian machine, and
# only what is missing: apt packages (Ceph client libraries for go-ceph, the
# filesystem and loop-device tools the local backend runs) and Go modules.
set -euo pipefail

packages=(gcc make pkg-config librados-dev librbd-dev e2fsprogs xfsprogs util-linux mount)

# shellcheck source=lib/apt.sh
source "$(dirname "$(realpath "$0")")/lib/apt.sh"
mapfile -t missing < <(apt_missing "${packages[@]}")
# A Go that can fetch the toolchain go.mod asks for (GOTOOLCHAIN=auto, through
# the module proxy) must be 1.21 or newer: Debian 12's golang-go is 1.19, its
# bookworm-backports one is new enough.
go_ok() {
	local v
	v=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null) && [[ $v =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= 21))
}
backports=0
if ! go_ok; then
	# shellcheck source=/dev/null
	[[ $(. /etc/os-release && echo "${VERSION_CODENAME:-}") == bookworm ]] ||
		{ echo "deps: no Go >= 1.21 here and this is not Debian 12: install one first" >&2; exit 1; }
	backports=1
fi
if ((${#missing[@]} || backports)); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "deps: missing packages ${missing[*]}$( ((backports)) && echo " golang-go (>= 1.21)"); run as root or install them" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	if ((backports)); then
		list=/etc/apt/sources.list.d/bookworm-backports.list
		grep -rqsE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ ||
			echo "deb http://deb.debian.org/debian bookworm-backports main" >"$list"
	fi
	apt-get update -qq -o DPkg::Lock::Timeout=120
	if ((${#missing[@]})); then
		echo "deps: installing ${missing[*]}"
		apt-get install -y -qq -o DPkg::Lock::Timeout=120 --no-install-recommends "${missing[@]}" >/dev/null
	fi
	if ((backports)); then
		echo "deps: installing golang-go from bookworm-backports (Go >= 1.21)"
		apt-get install -y -qq -o DPkg::Lock::Timeout=120 --no-install-recommends -t bookworm-backports golang-go >/dev/null
		hash -r
		go_ok || { echo "deps: the installed go is still older than 1.21" >&2; exit 1; }
	fi
fi
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
go mod download

# shellcheck shell=bash
# Sourced by the project's scripts: Debian packages, installed only when
# missing, the same way everywhere.

# apt_missing PKG...: prints those of PKG that are not installed, one a line.
apt_missing() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
	done
}

# apt_ensure WHO PKG...: installs those of PKG that are missing (needs root;
# WHO names the calling script in its messages). apt's own output goes to
# stderr, so a caller's stdout stays its own.
apt_ensure() {
	local who=$1 missing
	shift
	mapfile -t missing < <(apt_missing "$@")
	((${#missing[@]})) || return 0
	if [[ $(id -u) -ne 0 ]]; then
		echo "$who: missing packages ${missing[*]}; run as root or install them" >&2
		return 1
	fi
	echo "$who: installing ${missing[*]}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get update -qq -o DPkg::Lock::Timeout=120 >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=120 \
		--no-install-recommends "${missing[@]}" >&2
}

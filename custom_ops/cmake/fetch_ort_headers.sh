#!/usr/bin/env bash
# Fetch the onnxruntime C/C++ API headers from Debian trixie's libonnxruntime-dev
# (onnxruntime 1.21, ORT_API_VERSION 21) into a cache folder, without touching the
# system's apt configuration. Prints the include directory on stdout.
#
# The mirror and keyring are read from the system's own Debian apt source so that
# no host is hard-coded here. Usage: fetch_ort_headers.sh [CACHE_DIR]
set -euo pipefail

cache_dir="${1:-${ONNXPRED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/onnxpred}/ort-headers-trixie}"
include_dir="$cache_dir/root/usr/include/onnxruntime"
if [[ -f "$include_dir/onnxruntime_c_api.h" ]]; then
  echo "$include_dir"
  exit 0
fi

die() { echo "fetch_ort_headers: $*" >&2; exit 1; }
command -v apt-get >/dev/null || die "apt-get not found; set ONNXRUNTIME_INCLUDE_DIR to onnxruntime's include folder"

# The first deb822 stanza (or one-line entry) of the system's Debian source, not -security.
uri="" keyring=""
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
  read -r uri keyring < <(awk '
    BEGIN { RS = ""; FS = "\n" }
    {
      u = ""; k = ""; s = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^URIs:/)      { u = $i; sub(/^URIs:[ \t]*/, "", u); sub(/[ \t].*/, "", u) }
        if ($i ~ /^Signed-By:/) { k = $i; sub(/^Signed-By:[ \t]*/, "", k) }
        if ($i ~ /^Suites:/)    { s = $i }
      }
      if (u != "" && s !~ /security/) { print u, k; exit }
    }' /etc/apt/sources.list.d/debian.sources)
elif [[ -f /etc/apt/sources.list ]]; then
  uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
fi
[[ -n "$uri" ]] || die "no Debian apt source found; set ONNXRUNTIME_INCLUDE_DIR to onnxruntime's include folder"
[[ -n "$keyring" ]] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg

work="$cache_dir/apt"
rm -rf "$work" && mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/etc"
echo "deb [signed-by=$keyring] $uri trixie main" > "$work/etc/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1
          -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update >&2 || die "apt-get update of trixie failed"
(cd "$work" && apt-get "${apt_opts[@]}" download libonnxruntime-dev >&2) || die "download of libonnxruntime-dev failed"
deb=$(ls "$work"/libonnxruntime-dev_*.deb | head -n 1)
rm -rf "$cache_dir/root" && dpkg -x "$deb" "$cache_dir/root"
rm -rf "$work"
[[ -f "$include_dir/onnxruntime_c_api.h" ]] || die "libonnxruntime-dev holds no onnxruntime_c_api.h"
echo "$include_dir"

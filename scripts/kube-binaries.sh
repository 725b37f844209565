#!/usr/bin/env bash
# Builds a real kube-apiserver and kube-controller-manager (v1.20.2, Debian's `kubernetes` source
# package) into a cache outside the repository, for tests/k8s_real. Idempotent: a warm cache
# returns at once. Prints the folder holding the binaries on its last line.
#
# Why from source: no registry or release download is reachable here, but Debian's archive is;
# Debian ships the source and Go 1.19 but no server binaries. The vendored modern-go/reflect2
# 1.0.1 crashes under Go >= 1.18, so it and json-iterator are swapped for Debian's packaged ones.
set -euo pipefail

VERSION=1.20.2
CACHE="${TRAINPORT_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trainport/kube-$VERSION}"
BIN="$CACHE/bin"
if [[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" && -x "$BIN/etcd" ]]; then
  echo "$BIN"; exit 0
fi

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }

packages=(golang-go etcd-server dpkg-dev rsync golang-github-modern-go-reflect2-dev
          golang-github-json-iterator-go-dev)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "kube-binaries: installing ${missing[*]}" >&2
  as_root apt-get update -q >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

if ! apt-cache showsrc kubernetes 2>/dev/null | grep -q "^Version: .*$VERSION"; then
  echo "kube-binaries: adding Debian's deb-src entry to fetch the kubernetes source" >&2
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  as_root tee /etc/apt/sources.list.d/trainport-debsrc.sources >/dev/null <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  as_root apt-get update -q >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kube-src.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "kube-binaries: fetching and unpacking the kubernetes source package" >&2
apt-get source -q kubernetes >/dev/null 2>&1
src=$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
cd "$src"

gocode=/usr/share/gocode/src/github.com
rm -rf vendor/github.com/modern-go/reflect2 vendor/github.com/json-iterator/go
cp -r "$gocode/modern-go/reflect2" vendor/github.com/modern-go/reflect2
cp -r "$gocode/json-iterator/go" vendor/github.com/json-iterator/go

echo "kube-binaries: building (about 15 minutes on 2 cores)" >&2
export GOFLAGS=-mod=vendor GO111MODULE=on GOCACHE="$CACHE/gocache" KUBE_GIT_VERSION="v$VERSION"
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2

mkdir -p "$BIN"
cp _output/bin/kube-apiserver _output/bin/kube-controller-manager "$BIN/"
ln -sf "$(command -v etcd)" "$BIN/etcd"
rm -rf "$CACHE/gocache"
echo "$BIN"

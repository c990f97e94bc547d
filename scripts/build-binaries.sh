#!/usr/bin/env bash
# Builds the Go binaries of the local world from the Go module proxy, pinned in
# tools/versions.env, into a cache folder outside the work tree so that fresh
# clones (CI) reuse them; a rebuild happens only when a pin changes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC1091
source "$here/tools/versions.env"
bin_dir=${MULTUS_ENI_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/multus-eni/bin}
mkdir -p "$bin_dir"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

build() {  # build <name> <module dir> <package> <version>
  local name=$1 dir=$2 pkg=$3 version=$4
  local out="$bin_dir/$name-$version"
  if [ -x "$out" ]; then echo "$name $version: cached at $out"; return; fi
  echo "$name $version: building (first time only; several minutes on 2 cores)..."
  # go.mod and go.sum are committed: the build verifies every module's hash.
  (cd "$dir" && go build -mod=mod -trimpath -ldflags="-s -w" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo "$name $version: built $out"
}

build kube-apiserver "$here/tools/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$KUBERNETES_VERSION"
build multus "$here/tools/multus" gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus "$MULTUS_VERSION"

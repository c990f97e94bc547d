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

build() {  # build <name> <module dir> <package> <version> [extra ldflags] [expected `--version` output]
  local name=$1 dir=$2 pkg=$3 version=$4 ldflags=${5:-} expect=${6:-}
  local out="$bin_dir/$name-$version"
  # A cached binary built without the version stamp is rebuilt (only the link step reruns).
  if [ -x "$out" ] && { [ -z "$expect" ] || [ "$("$out" --version 2>/dev/null)" = "$expect" ]; }; then
    echo "$name $version: cached at $out"; return
  fi
  echo "$name $version: building (first time only; several minutes on 2 cores)..."
  # go.mod and go.sum are committed: the build verifies every module's hash.
  (cd "$dir" && go build -mod=mod -trimpath -ldflags="-s -w $ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo "$name $version: built $out"
}

# Stamp the version as Kubernetes' hack/lib/version.sh does; otherwise /version says v0.0.0-master.
kube_ver=${KUBERNETES_VERSION#v}
kube_ldflags=""
for vpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $vpkg.gitVersion=$KUBERNETES_VERSION -X $vpkg.gitMajor=${kube_ver%%.*}"
  kube_ldflags+=" -X $vpkg.gitMinor=$(echo "$kube_ver" | cut -d. -f2) -X $vpkg.gitTreeState=clean"
done
build kube-apiserver "$here/tools/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$KUBERNETES_VERSION" \
  "$kube_ldflags" "Kubernetes $KUBERNETES_VERSION"
build multus "$here/tools/multus" gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus "$MULTUS_VERSION"
build helm "$here/tools/helm" helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"

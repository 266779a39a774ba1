#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) and helm
# from their pinned Go modules (hack/tools/*/go.mod) into a cache outside the repo, keyed by version.
#
# Prints the asset directory on stdout. A cached run takes well under a second.
# KUBEBUILDER_ASSETS pointing at a directory that already holds every binary is used as it is.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools="$here/tools"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler helm)

have_all() { local d=$1 b; for b in "${bins[@]}"; do [[ -x "$d/$b" ]] || return 1; done; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && have_all "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

# The version a wrapper module pins for one of its requirements.
pinned() { (cd "$tools/$1" && GOTOOLCHAIN=local go list -m -f '{{.Version}}' "$2"); }

kube=$(pinned kubernetes k8s.io/kubernetes)
etcd=$(pinned etcd go.etcd.io/etcd/server/v3)
helm=$(pinned helm helm.sh/helm/v3)
cache="${SELFGUIDE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/selfguide}/tools/kube-$kube-etcd-$etcd-helm-$helm"

if have_all "$cache"; then
  echo "$cache"
  exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
mkdir -p "$cache"
work=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

build() { # module-dir package binary ldflags
  local dir=$1 pkg=$2 bin=$3 ldflags=$4
  [[ -x "$cache/$bin" ]] && return 0
  echo "building $bin ($pkg)" >&2
  local start=$SECONDS
  (cd "$tools/$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$work/$bin" "$pkg")
  mv -f "$work/$bin" "$cache/$bin"   # atomic: a killed build leaves no half-written binary
  echo "built $bin in $((SECONDS - start))s" >&2
}

minor=${kube#v1.}; minor=${minor%%.*}
v=k8s.io/component-base/version
kube_ldflags="-X $v.gitVersion=$kube -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
kube_ldflags="$kube_ldflags -X k8s.io/client-go/pkg/version.gitVersion=$kube"

build etcd go.etcd.io/etcd/server/v3 etcd ""
for component in kube-apiserver kube-controller-manager kube-scheduler; do
  build kubernetes "k8s.io/kubernetes/cmd/$component" "$component" "$kube_ldflags"
done
build helm helm.sh/helm/v3/cmd/helm helm "-X helm.sh/helm/v3/internal/version.version=$helm"

echo "$cache"

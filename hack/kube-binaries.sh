#!/usr/bin/env bash
# Builds the test bed's kube-apiserver, kube-controller-manager and etcd from the Go module proxy (no
# prebuilt binaries exist on our machines) into a versioned cache directory
# outside the work tree, and prints that directory. A second run finds the
# binaries and returns at once.
#
#   K8S_VERSION (default 1.37.1)  ETCD_VERSION (default 3.6.16)
#   CACHE_DIR   (default ~/.cache/clustermesh)
#
# kube-apiserver: a wrapper module requires k8s.io/kubernetes vX and replaces
# every staging module k8s.io/<m> (which kubernetes' go.mod points at
# ./staging) with k8s.io/<m> v0.Y.Z from the proxy. The first build downloads
# about 1.1 GB of modules and takes 7-12 minutes on 2 cores.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-1.37.1}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/clustermesh}
out="$CACHE_DIR/envtest/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
start=$(date +%s)
log() { printf '[kube-binaries +%4ss] %s\n' "$(( $(date +%s) - start ))" "$*" >&2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
export GOFLAGS=-mod=mod GOWORK=off

# progress prints every 100th package go build -v compiles.
progress() { awk -v what="$1" '{ n++; if (n % 100 == 0) { printf "[kube-binaries] %s: %d packages compiled\n", what, n > "/dev/stderr" } }'; }

if [ ! -x "$out/etcd" ]; then
  log "etcd v$ETCD_VERSION: resolving modules"
  mkdir -p "$work/etcd"
  cat > "$work/etcd/go.mod" <<MOD
module clustermesh.local/etcd-binary

go 1.26.0
MOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$work/etcd/tools.go"
  (cd "$work/etcd" && go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1 && go mod tidy >/dev/null)
  log "etcd v$ETCD_VERSION: building"
  (cd "$work/etcd" && CGO_ENABLED=0 go build -v -trimpath -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3 2>&1 | progress etcd)
  mv "$out/etcd.tmp" "$out/etcd"
  log "etcd ready: $out/etcd"
fi

if [ ! -x "$out/kube-apiserver" ] || [ ! -x "$out/kube-controller-manager" ]; then
  log "kube-apiserver v$K8S_VERSION: reading k8s.io/kubernetes' staging modules"
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging="v0.${K8S_VERSION#1.}"
  mkdir -p "$work/kube"
  {
    printf 'module clustermesh.local/kube-binaries\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
    grep -E '^[[:space:]]*k8s.io/[^ ]+ => ./staging/' "$gomod" | awk -v v="$staging" '{ printf "\t%s => %s %s\n", $1, $1, v }'
    printf ')\n'
  } > "$work/kube/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n)\n' > "$work/kube/tools.go"
  log "kube-apiserver: downloading modules (about 1.1 GB the first time)"
  (cd "$work/kube" && go mod tidy >/dev/null)
  ver="v$K8S_VERSION"
  minor=${K8S_VERSION#1.}; minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  for bin in kube-apiserver kube-controller-manager; do
    [ -x "$out/$bin" ] && continue
    log "$bin: building (7-12 minutes on 2 cores the first time; the second shares most packages)"
    (cd "$work/kube" && CGO_ENABLED=0 go build -v -trimpath -ldflags "$ldflags" -o "$out/$bin.tmp" "k8s.io/kubernetes/cmd/$bin" 2>&1 | progress "$bin")
    mv "$out/$bin.tmp" "$out/$bin"
    log "$bin ready: $out/$bin"
  done
fi
echo "$out"

// Package version is what a binary says of its build: the version, the
// commit, the Go version and the hash of the eBPF objects it carries.
//
// The version is the VERSION file next to this package (embedded), unless
// the build sets another with
//
//	-ldflags "-X github.com/clustermesh/clustermesh/internal/version.version=v1.2.3"
//
// The commit is the one Go stamps into the binary (vcs.revision, with
// "-dirty" when the tree had changes), unless set the same way (commit).
// The BPF objects' hash is set by the build (bpfObjects: make computes it
// from bpf/*_bpfel.o), or registered at run time by a binary that embeds
// the objects (RegisterBPFObjects).
package version

import (
	_ "embed"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
)

//go:embed VERSION
var file string

// Set by the build (-ldflags -X); empty otherwise.
var (
	version    string
	commit     string
	bpfObjects string
)

var (
	mu         sync.Mutex
	bpfRuntime func() string
)

// RegisterBPFObjects gives the hash of the BPF objects the binary embeds,
// for builds that did not set it. Package bpf calls it.
func RegisterBPFObjects(hash func() string) {
	mu.Lock()
	defer mu.Unlock()
	bpfRuntime = hash
}

// Info describes a build. Its JSON names are stable (status APIs).
type Info struct {
	Version    string `json:"version"`
	Commit     string `json:"commit"`
	GoVersion  string `json:"goVersion"`
	BPFObjects string `json:"bpfObjects"`
}

// Get is this binary's Info.
func Get() Info {
	i := Info{Version: version, Commit: commit, GoVersion: runtime.Version(), BPFObjects: bpfObjects}
	if i.Version == "" {
		i.Version = strings.TrimSpace(file)
	}
	if i.Commit == "" {
		i.Commit = vcsCommit()
	}
	if i.BPFObjects == "" {
		mu.Lock()
		h := bpfRuntime
		mu.Unlock()
		if h != nil {
			i.BPFObjects = h()
		}
	}
	return i
}

// vcsCommit is the commit Go stamped into the binary, "unknown" if none.
func vcsCommit() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// String is the one line of --version.
func (i Info) String() string {
	bpf := i.BPFObjects
	if bpf == "" {
		bpf = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, %s, BPF objects %s)", i.Version, i.Commit, i.GoVersion, bpf)
}

// MinorSkew is how many minor versions a and b ("v1.2.3", "1.2",
// "v1.2.0-dev") are apart, and false when either does not parse or their
// major versions differ (then any skew is too much).
func MinorSkew(a, b string) (int, bool) {
	amaj, amin, ok1 := majorMinor(a)
	bmaj, bmin, ok2 := majorMinor(b)
	if !ok1 || !ok2 || amaj != bmaj {
		return 0, false
	}
	if amin > bmin {
		return amin - bmin, true
	}
	return bmin - amin, true
}

func majorMinor(v string) (int, int, bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	minor, _, _ := strings.Cut(parts[1], "-")
	maj, err1 := strconv.Atoi(parts[0])
	mnr, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil || maj < 0 || mnr < 0 {
		return 0, 0, false
	}
	return maj, mnr, true
}

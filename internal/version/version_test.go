package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestGetFallsBackToTheBuild(t *testing.T) {
	i := Get()
	if i.Version != strings.TrimSpace(file) || i.Version == "" {
		t.Errorf("Version %q, want the VERSION file's %q", i.Version, strings.TrimSpace(file))
	}
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", i.GoVersion, runtime.Version())
	}
	if i.Commit == "" {
		t.Error("no commit: want the stamped one or \"unknown\"")
	}
	if _, _, ok := majorMinor(i.Version); !ok {
		t.Errorf("the VERSION file's %q is not vMAJOR.MINOR.PATCH", i.Version)
	}
}

func TestRegisteredBPFObjects(t *testing.T) {
	t.Cleanup(func() { RegisterBPFObjects(nil) })
	RegisterBPFObjects(func() string { return "sha256:abc" })
	if got := Get().BPFObjects; got != "sha256:abc" {
		t.Errorf("BPFObjects %q, want the registered hash", got)
	}
	if s := Get().String(); !strings.Contains(s, "BPF objects sha256:abc") {
		t.Errorf("String %q does not name the BPF objects", s)
	}
}

func TestMinorSkew(t *testing.T) {
	for _, c := range []struct {
		a, b string
		skew int
		ok   bool
	}{
		{"v1.2.3", "v1.2.9", 0, true},
		{"v1.2.3", "1.4.0", 2, true},
		{"v1.5.0-dev", "v1.3.1", 2, true},
		{"v1.2.0", "v2.2.0", 0, false},
		{"dev", "v1.2.0", 0, false},
		{"v1", "v1.2.0", 0, false},
	} {
		skew, ok := MinorSkew(c.a, c.b)
		if skew != c.skew || ok != c.ok {
			t.Errorf("MinorSkew(%q, %q) = %d, %v; want %d, %v", c.a, c.b, skew, ok, c.skew, c.ok)
		}
	}
}

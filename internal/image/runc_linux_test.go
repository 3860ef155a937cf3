package image_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/clustermesh/clustermesh/internal/image"
)

// layoutEnv names the OCI layout TestImageUnderRunc runs; make image-test
// builds the image and sets it.
const layoutEnv = "CLUSTERMESH_IMAGE_LAYOUT"

// TestImageUnderRunc unpacks the host's platform of the image `make image`
// built and runs, under runc as a container runtime would, --version and
// --help of every binary, and the CNI install step of the agent
// DaemonSet's init container into a host directory.
func TestImageUnderRunc(t *testing.T) {
	dir := os.Getenv(layoutEnv)
	if dir == "" {
		t.Skipf("%s is not set: run make image-test (it builds the image, then runs this test)", layoutEnv)
	}
	if os.Geteuid() != 0 {
		t.Fatal("runc needs root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatal("runc is not installed: make runc (apt-get install --no-install-recommends runc)")
	}
	idx, err := image.ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := image.Platform(idx, v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	version := cfg.Config.Labels["org.opencontainers.image.version"]
	commit := cfg.Config.Labels["org.opencontainers.image.revision"]
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	if err := image.Unpack(img, rootfs); err != nil {
		t.Fatal(err)
	}
	cniBin := t.TempDir()
	r := newRunc(t, bundle, cfg.Config.Env, cniBin)

	binaries, err := os.ReadDir(filepath.Join(rootfs, image.BinDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(binaries) != 4 {
		t.Errorf("the image has %d binaries, want 4: %v", len(binaries), binaries)
	}
	for _, b := range binaries {
		name := b.Name()
		t.Run(name, func(t *testing.T) {
			out := r.run(t, name, "--version")
			want := fmt.Sprintf("%s %s (commit %s, go", name, version, commit)
			if !strings.HasPrefix(out, want) || !strings.Contains(out, "BPF objects sha256:") {
				t.Errorf("%s --version: %q, want %q... with the BPF objects' hash", name, out, want)
			}
			if out := r.run(t, name, "--help"); !strings.Contains(strings.ToLower(out), "usage") {
				t.Errorf("%s --help: %q", name, out)
			}
		})
	}

	// The agent DaemonSet's init container: clustermesh-cni install
	// /host/cni-bin, a host directory.
	out := r.run(t, "clustermesh-cni", "install", "/host/cni-bin")
	if !strings.Contains(out, "installed clustermesh-cni into /host/cni-bin") {
		t.Errorf("cni install: %q", out)
	}
	got, err := os.ReadFile(filepath.Join(cniBin, "clustermesh-cni"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(rootfs, image.BinDir, "clustermesh-cni"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the installed plugin differs from the image's")
	}
}

type runc struct {
	bundle, state string
	n             int
}

// newRunc writes the bundle's config.json: runc's default spec (new
// namespaces, read-only root) with the image's environment and cniBin
// mounted at /host/cni-bin.
func newRunc(t *testing.T, bundle string, env []string, cniBin string) *runc {
	t.Helper()
	if out, err := exec.CommandContext(t.Context(), "runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["env"] = env
	spec["root"] = map[string]any{"path": "rootfs", "readonly": true}
	spec["mounts"] = append(spec["mounts"].([]any), map[string]any{
		"destination": "/host/cni-bin", "type": "bind", "source": cniBin, "options": []string{"rbind", "rw"},
	})
	if b, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return &runc{bundle: bundle, state: t.TempDir()}
}

// run runs args in a fresh container of the bundle and returns its
// output; it fails the test when the process fails.
func (r *runc) run(t *testing.T, args ...string) string {
	t.Helper()
	path := filepath.Join(r.bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	spec["process"].(map[string]any)["args"] = args
	if b, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r.n++
	id := fmt.Sprintf("clustermesh-image-test-%d-%d", os.Getpid(), r.n)
	cmd := exec.CommandContext(t.Context(), "runc", "--root", r.state, "run", "--bundle", r.bundle, id)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("runc run %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

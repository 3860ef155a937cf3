package image_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/clustermesh/clustermesh/internal/image"
)

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64"}
)

// binDir writes fake binaries (their content names them and the platform)
// with the given modification time and mode.
func binDir(t *testing.T, p v1.Platform, mtime time.Time, mode os.FileMode, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		path := filepath.Join(dir, n)
		if err := os.WriteFile(path, []byte("#!binary "+n+" "+p.String()), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func options(t *testing.T, mtime time.Time, mode os.FileMode) image.Options {
	t.Helper()
	bins := []string{"clustermesh", "clustermesh-agent"}
	return image.Options{
		Repository: image.DefaultRepository, Version: "v1.2.3", Commit: "abc", Epoch: time.Unix(1700000000, 0),
		Binaries: bins,
		Platforms: []image.PlatformDir{
			{Platform: amd64, Dir: binDir(t, amd64, mtime, mode, bins...)},
			{Platform: arm64, Dir: binDir(t, arm64, mtime, mode, bins...)},
		},
	}
}

func digest(t *testing.T, o image.Options) v1.Hash {
	t.Helper()
	idx, err := image.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBuildReproducible: the digest depends on the binaries' contents and
// the options, not on the files' times, modes or directories.
func TestBuildReproducible(t *testing.T) {
	a := digest(t, options(t, time.Unix(1, 0), 0o700))
	b := digest(t, options(t, time.Now(), 0o755))
	if a != b {
		t.Fatalf("same binaries, different digests: %s, %s", a, b)
	}
	o := options(t, time.Now(), 0o755)
	o.Version = "v1.2.4"
	if digest(t, o) == a {
		t.Error("another version, same digest")
	}
	o = options(t, time.Now(), 0o755)
	if err := os.WriteFile(filepath.Join(o.Platforms[1].Dir, "clustermesh"), []byte("other"), 0o755); err != nil {
		t.Fatal(err)
	}
	if digest(t, o) == a {
		t.Error("another binary, same digest")
	}
}

type file struct {
	Name     string
	Mode     int64
	UID, GID int
	Uname    string
	ModTime  time.Time
	Content  string
}

func layerFiles(t *testing.T, l v1.Layer) []file {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []file
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, file{Name: h.Name, Mode: h.Mode, UID: h.Uid, GID: h.Gid, Uname: h.Uname, ModTime: h.ModTime.UTC(), Content: string(b)})
	}
}

// TestBuildContents: one image per platform, OCI media types, the
// binaries in /usr/local/bin owned by root with the fixed time, the
// config naming the platform, the PATH and the version.
func TestBuildContents(t *testing.T) {
	o := options(t, time.Now(), 0o755)
	idx, err := image.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("index media type %s", mt)
	}
	for _, p := range []v1.Platform{amd64, arm64} {
		img, err := image.Platform(idx, p)
		if err != nil {
			t.Fatal(err)
		}
		if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
			t.Errorf("%s: manifest media type %s", p, mt)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OS != p.OS || cfg.Architecture != p.Architecture || !cfg.Created.Equal(o.Epoch) {
			t.Errorf("%s: config %s/%s created %v", p, cfg.OS, cfg.Architecture, cfg.Created)
		}
		if !slices.Contains(cfg.Config.Env, "PATH=/usr/local/bin:/usr/bin:/bin") || cfg.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" ||
			cfg.Config.Labels["org.opencontainers.image.revision"] != "abc" {
			t.Errorf("%s: config %+v", p, cfg.Config)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if len(layers) != 1+len(o.Binaries) || len(cfg.History) != len(layers) {
			t.Fatalf("%s: %d layers, %d history entries", p, len(layers), len(cfg.History))
		}
		var names []string
		for i, l := range layers {
			if mt, _ := l.MediaType(); mt != types.OCILayer {
				t.Errorf("layer %d media type %s", i, mt)
			}
			files := layerFiles(t, l)
			if !slices.IsSortedFunc(files, func(a, b file) int { return strings.Compare(a.Name, b.Name) }) {
				t.Errorf("layer %d entries not sorted", i)
			}
			for _, f := range files {
				if f.UID != 0 || f.GID != 0 || f.Uname != "" || !f.ModTime.Equal(o.Epoch) {
					t.Errorf("%s: %+v", f.Name, f)
				}
				names = append(names, f.Name)
				if f.Name == "usr/local/bin/clustermesh" && (f.Mode != 0o755 || f.Content != "#!binary clustermesh "+p.String()) {
					t.Errorf("%s: %+v", f.Name, f)
				}
				if f.Name == "tmp/" && f.Mode != 0o1777 {
					t.Errorf("/tmp mode %o", f.Mode)
				}
			}
		}
		if diff := cmp.Diff([]string{"etc/", "etc/group", "etc/passwd", "tmp/", "usr/", "usr/local/", "usr/local/bin/",
			"usr/local/bin/clustermesh", "usr/local/bin/clustermesh-agent"}, names); diff != "" {
			t.Errorf("%s: files (-want +got):\n%s", p, diff)
		}
	}
	if _, err := image.Platform(idx, v1.Platform{OS: "linux", Architecture: "riscv64"}); err == nil || !strings.Contains(err.Error(), "linux/riscv64") {
		t.Errorf("missing platform: %v", err)
	}
}

// TestWriteAndUnpack: the OCI layout reads back with the same digest, a
// tarball per platform loads, and the unpacked file system has the files
// with their modes.
func TestWriteAndUnpack(t *testing.T) {
	o := options(t, time.Now(), 0o755)
	idx, err := image.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := o.Reference()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := image.WriteLayout(filepath.Join(out, "oci"), ref, idx); err != nil {
		t.Fatal(err)
	}
	back, err := image.ReadLayout(filepath.Join(out, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if got, _ := back.Digest(); got != want {
		t.Errorf("layout digest %s, built %s", got, want)
	}
	index, err := os.ReadFile(filepath.Join(out, "oci", "index.json"))
	if err != nil || !strings.Contains(string(index), `"org.opencontainers.image.ref.name": "v1.2.3"`) ||
		!strings.Contains(string(index), `"io.containerd.image.name": "ghcr.io/clustermesh/clustermesh:v1.2.3"`) {
		t.Errorf("index.json %s (%v)", index, err)
	}
	tars, err := image.WriteTarballs(out, "clustermesh", ref, idx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{filepath.Join(out, "clustermesh-linux-amd64.tar"), filepath.Join(out, "clustermesh-linux-arm64.tar")}, tars); diff != "" {
		t.Errorf("tarballs (-want +got):\n%s", diff)
	}
	img, err := tarball.ImageFromPath(tars[1], &ref)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := img.ConfigFile(); err != nil || cfg.Architecture != "arm64" {
		t.Errorf("tarball config: %v %v", cfg, err)
	}

	amd, err := image.Platform(back, amd64)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := image.Unpack(amd, root); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/clustermesh-agent": 0o755, "etc/passwd": 0o644, "tmp": os.ModeDir | os.ModeSticky | 0o777,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for _, h := range []tar.Header{
		{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "a/../../evil", Typeflag: tar.TypeReg, Mode: 0o644},
	} {
		t.Run(h.Name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			b := buf.Bytes()
			l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
			if err != nil {
				t.Fatal(err)
			}
			img, err := mutate.AppendLayers(empty.Image, l)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := image.Unpack(img, filepath.Join(dir, "root")); err == nil || !strings.Contains(err.Error(), "unsafe tar path") {
				t.Errorf("unpack %q: %v, want a refusal", h.Name, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "evil")); err == nil {
				t.Error("an entry was written outside the root")
			}
		})
	}
}

// TestOptionsErrors: bad options fail naming the bad value.
func TestOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*image.Options)
		want   string
	}{
		{"repository", func(o *image.Options) { o.Repository = "Not/Valid" }, `"Not/Valid"`},
		{"version", func(o *image.Options) { o.Version = "" }, `version ""`},
		{"binary", func(o *image.Options) { o.Binaries = []string{"../x"} }, `binary name "../x"`},
		{"no binaries", func(o *image.Options) { o.Binaries = nil }, "no binaries"},
		{"platform twice", func(o *image.Options) { o.Platforms[1].Platform = amd64 }, "linux/amd64 given twice"},
		{"platform", func(o *image.Options) { o.Platforms[0].Platform = v1.Platform{OS: "linux"} }, "want os/arch"},
		{"missing binary", func(o *image.Options) { o.Binaries = append(o.Binaries, "clustermesh-cni") }, "binary clustermesh-cni"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t, time.Now(), 0o755)
			tc.change(&o)
			if _, err := image.Build(o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

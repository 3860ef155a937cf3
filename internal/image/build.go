package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BinDir is where the image holds the binaries; the image's PATH.
const BinDir = "/usr/local/bin"

// DefaultRepository is the repository `make image` tags the image with,
// and the chart's default image.repository.
const DefaultRepository = "ghcr.io/clustermesh/clustermesh"

// SourceURL is the image's org.opencontainers.image.source label.
const SourceURL = "https://github.com/clustermesh/clustermesh"

// Options describe the image.
type Options struct {
	// Repository and Version make the image reference repository:version;
	// Version is also the org.opencontainers.image.version label.
	Repository string
	Version    string
	// Commit is the org.opencontainers.image.revision label.
	Commit string
	// Epoch is every timestamp of the image (files and config), so that
	// the digest depends on the binaries only.
	Epoch time.Time
	// Binaries are the names of the binaries, each in every Platforms
	// directory; each becomes /usr/local/bin/<name>.
	Binaries []string
	// Platforms to pack, each with the directory holding its binaries.
	Platforms []PlatformDir
}

// PlatformDir is a platform and the directory of its binaries.
type PlatformDir struct {
	Platform v1.Platform
	Dir      string
}

// Reference is the image's repository:tag, validated.
func (o Options) Reference() (name.Tag, error) {
	ref := o.Repository + ":" + o.Version
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image reference %q (repository %q, version %q): %w", ref, o.Repository, o.Version, err)
	}
	return tag, nil
}

func (o Options) validate() error {
	if _, err := o.Reference(); err != nil {
		return err
	}
	if len(o.Binaries) == 0 {
		return errors.New("image: no binaries given")
	}
	for _, b := range o.Binaries {
		if b == "" || b != filepath.Base(b) || b == "." || b == ".." {
			return fmt.Errorf("image: binary name %q: want a plain file name", b)
		}
	}
	if len(o.Platforms) == 0 {
		return errors.New("image: no platforms given")
	}
	seen := map[string]bool{}
	for _, p := range o.Platforms {
		if p.Platform.OS == "" || p.Platform.Architecture == "" {
			return fmt.Errorf("image: platform %q: want os/arch", p.Platform.String())
		}
		if seen[p.Platform.String()] {
			return fmt.Errorf("image: platform %s given twice", p.Platform.String())
		}
		seen[p.Platform.String()] = true
	}
	return nil
}

// Build packs the binaries of every platform into one image each and
// returns the index of them, in the order of o.Platforms.
func Build(o Options) (v1.ImageIndex, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	var adds []mutate.IndexAddendum
	for _, p := range o.Platforms {
		img, err := buildImage(o, p)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", p.Platform.String(), err)
		}
		plat := p.Platform
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	return idx, nil
}

func buildImage(o Options, p PlatformDir) (v1.Image, error) {
	ref, _ := o.Reference()
	epoch := v1.Time{Time: o.Epoch.UTC()}
	cfg := &v1.ConfigFile{
		Architecture: p.Platform.Architecture,
		OS:           p.Platform.OS,
		Variant:      p.Platform.Variant,
		Created:      epoch,
		Config: v1.Config{
			Env:        []string{"PATH=" + BinDir + ":/usr/bin:/bin"},
			Cmd:        []string{"clustermesh", "--help"},
			WorkingDir: "/",
			Labels: map[string]string{
				"org.opencontainers.image.title":       "clustermesh",
				"org.opencontainers.image.description": "clustermesh binaries: " + fmt.Sprint(o.Binaries),
				"org.opencontainers.image.version":     o.Version,
				"org.opencontainers.image.revision":    o.Commit,
				"org.opencontainers.image.source":      SourceURL,
				"org.opencontainers.image.ref.name":    ref.TagStr(),
			},
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)

	base, err := layer(baseEntries(o.Epoch))
	if err != nil {
		return nil, err
	}
	adds := []mutate.Addendum{{Layer: base, History: v1.History{Created: epoch, CreatedBy: "clustermesh image: /etc, /tmp, " + BinDir}}}
	for _, b := range o.Binaries {
		path := filepath.Join(p.Dir, b)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("binary %s: %w (build it for %s first)", b, err, p.Platform.String())
		}
		l, err := layer([]entry{{name: BinDir[1:] + "/" + b, mode: 0o755, data: data, mtime: o.Epoch}})
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{Created: epoch, CreatedBy: "clustermesh image: " + BinDir + "/" + b}})
	}
	return mutate.Append(img, adds...)
}

// entry is a file or (name ending in /) a directory of a layer.
type entry struct {
	name  string
	mode  int64
	data  []byte
	mtime time.Time
}

func baseEntries(epoch time.Time) []entry {
	return []entry{
		{name: "etc/", mode: 0o755, mtime: epoch},
		{name: "etc/group", mode: 0o644, mtime: epoch, data: []byte("root:x:0:\nnobody:x:65534:\n")},
		{name: "etc/passwd", mode: 0o644, mtime: epoch, data: []byte("root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")},
		{name: "tmp/", mode: 0o1777, mtime: epoch},
		{name: "usr/", mode: 0o755, mtime: epoch},
		{name: "usr/local/", mode: 0o755, mtime: epoch},
		{name: "usr/local/bin/", mode: 0o755, mtime: epoch},
	}
}

// layer is a gzip-compressed OCI layer of the entries, sorted by name,
// owned by root, with no names for the owner and group.
func layer(entries []entry) (v1.Layer, error) {
	entries = slices.Clone(entries)
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: e.mtime.UTC(), Format: tar.FormatUSTAR}
		if e.name[len(e.name)-1] == '/' {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

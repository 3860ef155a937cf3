package clustermesh_test

import (
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"

	chart "github.com/clustermesh/clustermesh/charts/clustermesh"
	"github.com/clustermesh/clustermesh/internal/image"
	"github.com/clustermesh/clustermesh/internal/version"
)

// values are the ones the chart requires (clustermesh install sets them).
func values() map[string]any {
	return map[string]any{
		"cluster":   map[string]any{"name": "c1", "id": 7, "podCIDRs": []any{"10.1.0.0/16"}},
		"apiserver": map[string]any{"etcdEndpoints": []any{"https://203.0.113.1:32379"}},
		"tls": map[string]any{
			"ca":     map[string]any{"cert": "CA-CERT", "key": "CA-KEY"},
			"server": map[string]any{"cert": "SERVER-CERT", "key": "SERVER-KEY"},
			"admin":  map[string]any{"cert": "ADMIN-CERT", "key": "ADMIN-KEY"},
			"local":  map[string]any{"cert": "LOCAL-CERT", "key": "LOCAL-KEY"},
		},
	}
}

// TestLint runs `helm lint` (Helm's SDK): the chart file, the values
// against values.schema.json, the templates, the CRDs. Nothing above
// information is allowed.
func TestLint(t *testing.T) {
	for name, v := range map[string]map[string]any{"the required values": values(), "the defaults": nil} {
		res := lint.RunAll(".", v, "mesh-system")
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint with %s: %s", name, m)
			} else {
				t.Logf("helm lint with %s: %s", name, m)
			}
		}
	}
}

// TestDefaultImage: the chart's default image is the one `make image`
// builds: its repository, tagged with the version of the binaries.
func TestDefaultImage(t *testing.T) {
	c, err := chart.Load()
	if err != nil {
		t.Fatal(err)
	}
	img, _ := c.Values["image"].(map[string]any)
	if repo := img["repository"]; repo != image.DefaultRepository {
		t.Errorf("values.yaml image.repository %v, make image builds %s", repo, image.DefaultRepository)
	}
	if tag := img["tag"]; tag != "" {
		t.Errorf("values.yaml image.tag %v: leave it empty, the chart's appVersion is the default", tag)
	}
	v := version.Get().Version
	if c.Metadata.AppVersion != v {
		t.Errorf("Chart.yaml appVersion %q, the binaries' version (internal/version/VERSION) %q: make image tags the image with the latter", c.Metadata.AppVersion, v)
	}
	if c.Metadata.Version != strings.TrimPrefix(v, "v") {
		t.Errorf("Chart.yaml version %q, want %q (the binaries' version without the v)", c.Metadata.Version, strings.TrimPrefix(v, "v"))
	}
}

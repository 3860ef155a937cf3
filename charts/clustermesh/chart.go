// Package clustermesh holds the Helm chart of the mesh (the files next to
// this one) and embeds it, so that `clustermesh install` installs, through
// Helm's SDK, the same chart that `helm install charts/clustermesh` would.
package clustermesh

import (
	"embed"
	"fmt"
	"io/fs"

	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
)

// Files is the chart: Chart.yaml, values.yaml, values.schema.json,
// templates/ (with _helpers.tpl, which a plain directory embed would
// skip) and crds/.
//
//go:embed Chart.yaml values.yaml values.schema.json all:templates crds
var Files embed.FS

// Load is the embedded chart, loaded by Helm's loader.
func Load() (*chart.Chart, error) {
	var files []*archive.BufferedFile
	err := fs.WalkDir(Files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Files, path)
		if err != nil {
			return err
		}
		files = append(files, &archive.BufferedFile{Name: path, Data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the embedded chart: %w", err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("load the embedded chart: %w", err)
	}
	return c, nil
}

// Package clustermesh holds the Helm chart of the mesh (the files next to
// this one) and embeds it, so that `clustermesh install` renders the same
// chart that `helm install` would.
package clustermesh

import "embed"

// Files is the chart: Chart.yaml, values.yaml, templates/ (with
// _helpers.tpl, which a plain directory embed would skip) and crds/.
//
//go:embed Chart.yaml values.yaml all:templates crds
var Files embed.FS

package examples

import "embed"

// Manifests are the example manifests, for the demo and the end-to-end
// tests, which apply them as users would.
//
//go:embed *.yaml
var Manifests embed.FS

package status

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/clustermesh/clustermesh/internal/version"
)

// VersionCount is how many of the nodes that answered run an agent of a
// version.
type VersionCount struct {
	Version string   `json:"version"`
	Nodes   []string `json:"nodes"`
}

// maxMinorSkew is the skew supported between the parts of a mesh (agents
// of every node, the CLI): one minor version, as upgrades go one minor at
// a time.
const maxMinorSkew = 1

// versions counts the agents' versions, and warns of every pair of
// versions (the CLI's, cli, among them) that differ by more than
// maxMinorSkew or by their major version.
func versions(cli string, nodes []NodeStatus) ([]VersionCount, []Problem) {
	byVersion := map[string][]string{}
	for _, n := range nodes {
		if n.Err == nil && n.Status != nil {
			v := cmp.Or(n.Status.Version.Version, "unknown (an agent older than version reporting)")
			byVersion[v] = append(byVersion[v], n.Node)
		}
	}
	var out []VersionCount
	for _, v := range slices.Sorted(maps.Keys(byVersion)) {
		nodes := byVersion[v]
		slices.Sort(nodes)
		out = append(out, VersionCount{Version: v, Nodes: nodes})
	}
	all := slices.Collect(maps.Keys(byVersion))
	if cli != "" && byVersion[cli] == nil {
		all = append(all, cli)
	}
	slices.Sort(all)
	var warnings []Problem
	for i, a := range all {
		for _, b := range all[i+1:] {
			if skew, ok := version.MinorSkew(a, b); ok && skew <= maxMinorSkew {
				continue
			}
			warnings = append(warnings, Problem{
				Message: fmt.Sprintf("versions differ by more than %d minor: %s and %s", maxMinorSkew, who(a, cli, byVersion), who(b, cli, byVersion)),
				Hint:    "upgrade one minor version at a time, the agents of every node and the CLI (clustermesh --version)",
			})
		}
	}
	return out, warnings
}

// who says what runs version v: the CLI, agents of nodes, or both.
func who(v, cli string, byVersion map[string][]string) string {
	var parts []string
	if nodes := byVersion[v]; len(nodes) > 0 {
		parts = append(parts, fmt.Sprintf("agents on %s", strings.Join(nodes, ", ")))
	}
	if v == cli {
		parts = append(parts, "this CLI")
	}
	return fmt.Sprintf("%s (%s)", v, strings.Join(parts, " and "))
}

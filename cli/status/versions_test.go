package status

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func agentOf(node, v string) NodeStatus {
	return NodeStatus{Node: node, Status: &AgentStatus{Node: node, Version: AgentVersion{Version: v}}}
}

func TestVersions(t *testing.T) {
	for _, c := range []struct {
		name     string
		cli      string
		nodes    []NodeStatus
		counts   []VersionCount
		warnings []string
	}{
		{name: "one version", cli: "v1.3.0",
			nodes:  []NodeStatus{agentOf("n2", "v1.3.0"), agentOf("n1", "v1.3.0"), {Node: "n3", Err: errors.New("down")}},
			counts: []VersionCount{{Version: "v1.3.0", Nodes: []string{"n1", "n2"}}}},
		{name: "one minor apart: an upgrade in progress", cli: "v1.4.0",
			nodes:  []NodeStatus{agentOf("n1", "v1.3.2"), agentOf("n2", "v1.4.0")},
			counts: []VersionCount{{Version: "v1.3.2", Nodes: []string{"n1"}}, {Version: "v1.4.0", Nodes: []string{"n2"}}}},
		{name: "agents two minors apart", cli: "v1.4.0",
			nodes:    []NodeStatus{agentOf("n1", "v1.2.0"), agentOf("n2", "v1.4.0")},
			counts:   []VersionCount{{Version: "v1.2.0", Nodes: []string{"n1"}}, {Version: "v1.4.0", Nodes: []string{"n2"}}},
			warnings: []string{"versions differ by more than 1 minor: v1.2.0 (agents on n1) and v1.4.0 (agents on n2 and this CLI)"}},
		{name: "the CLI too new", cli: "v1.6.0",
			nodes:    []NodeStatus{agentOf("n1", "v1.4.0")},
			counts:   []VersionCount{{Version: "v1.4.0", Nodes: []string{"n1"}}},
			warnings: []string{"versions differ by more than 1 minor: v1.4.0 (agents on n1) and v1.6.0 (this CLI)"}},
		{name: "another major, and an agent that does not say", cli: "v2.0.0",
			nodes:  []NodeStatus{agentOf("n1", "v2.0.1"), agentOf("n2", "")},
			counts: []VersionCount{{Version: "unknown (an agent older than version reporting)", Nodes: []string{"n2"}}, {Version: "v2.0.1", Nodes: []string{"n1"}}},
			warnings: []string{"versions differ by more than 1 minor: unknown (an agent older than version reporting) (agents on n2) and v2.0.0 (this CLI)",
				"versions differ by more than 1 minor: unknown (an agent older than version reporting) (agents on n2) and v2.0.1 (agents on n1)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			counts, problems := versions(c.cli, c.nodes)
			if !reflect.DeepEqual(counts, c.counts) {
				t.Errorf("counts %+v, want %+v", counts, c.counts)
			}
			var got []string
			for _, p := range problems {
				got = append(got, p.Message)
				if !strings.Contains(p.Hint, "one minor version at a time") {
					t.Errorf("hint %q", p.Hint)
				}
			}
			if !reflect.DeepEqual(got, c.warnings) {
				t.Errorf("warnings\n%q\nwant\n%q", got, c.warnings)
			}
		})
	}
}

package identity

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustLabels(t *testing.T, ss ...string) Labels {
	t.Helper()
	ls, err := ParseLabels(ss...)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// TestSelectorMatches follows the semantics documented for Kubernetes label
// selectors (k8s.io/apimachinery/pkg/labels).
func TestSelectorMatches(t *testing.T) {
	pod := []string{"k8s:app=web", "k8s:tier=frontend", "k8s:env=prod", "container:runtime=docker"}
	tests := []struct {
		name        string
		matchLabels map[string]string
		exprs       []Requirement
		labels      []string
		want        bool
	}{
		{name: "empty selector matches all", labels: pod, want: true},
		{name: "empty selector matches empty set", labels: nil, want: true},
		{name: "matchLabels equal", matchLabels: map[string]string{"app": "web"}, labels: pod, want: true},
		{name: "matchLabels differ", matchLabels: map[string]string{"app": "db"}, labels: pod, want: false},
		{name: "matchLabels missing key", matchLabels: map[string]string{"zone": "a"}, labels: pod, want: false},
		{name: "matchLabels all must match", matchLabels: map[string]string{"app": "web", "env": "dev"}, labels: pod, want: false},
		{name: "In value in set", exprs: []Requirement{{"env", OpIn, []string{"dev", "prod"}}}, labels: pod, want: true},
		{name: "In value not in set", exprs: []Requirement{{"env", OpIn, []string{"dev", "qa"}}}, labels: pod, want: false},
		{name: "In key missing", exprs: []Requirement{{"zone", OpIn, []string{"a"}}}, labels: pod, want: false},
		{name: "In empty value", exprs: []Requirement{{"flag", OpIn, []string{""}}}, labels: []string{"k8s:flag"}, want: true},
		{name: "NotIn value in set", exprs: []Requirement{{"env", OpNotIn, []string{"prod"}}}, labels: pod, want: false},
		{name: "NotIn value not in set", exprs: []Requirement{{"env", OpNotIn, []string{"dev"}}}, labels: pod, want: true},
		{name: "NotIn missing key matches", exprs: []Requirement{{"zone", OpNotIn, []string{"a"}}}, labels: pod, want: true},
		{name: "Exists present", exprs: []Requirement{{"tier", OpExists, nil}}, labels: pod, want: true},
		{name: "Exists absent", exprs: []Requirement{{"zone", OpExists, nil}}, labels: pod, want: false},
		{name: "DoesNotExist absent", exprs: []Requirement{{"zone", OpDoesNotExist, nil}}, labels: pod, want: true},
		{name: "DoesNotExist present", exprs: []Requirement{{"tier", OpDoesNotExist, nil}}, labels: pod, want: false},
		{
			name: "requirements ANDed: all true",
			exprs: []Requirement{
				{"env", OpIn, []string{"prod"}}, {"tier", OpExists, nil}, {"zone", OpDoesNotExist, nil},
			},
			labels: pod, want: true,
		},
		{
			name: "requirements ANDed: one false",
			exprs: []Requirement{
				{"env", OpIn, []string{"prod"}}, {"tier", OpExists, nil}, {"app", OpNotIn, []string{"web"}},
			},
			labels: pod, want: false,
		},
		{
			name:        "matchLabels and matchExpressions combined: true",
			matchLabels: map[string]string{"app": "web"},
			exprs:       []Requirement{{"env", OpNotIn, []string{"dev"}}},
			labels:      pod, want: true,
		},
		{
			name:        "matchLabels and matchExpressions combined: expression false",
			matchLabels: map[string]string{"app": "web"},
			exprs:       []Requirement{{"env", OpIn, []string{"dev"}}},
			labels:      pod, want: false,
		},
		{
			name:        "matchLabels and matchExpressions on same key contradict",
			matchLabels: map[string]string{"env": "prod"},
			exprs:       []Requirement{{"env", OpIn, []string{"dev"}}},
			labels:      pod, want: false,
		},
		{name: "k8s prefix matches k8s label", matchLabels: map[string]string{"k8s:app": "web"}, labels: pod, want: true},
		{name: "any prefix matches k8s label", matchLabels: map[string]string{"any:app": "web"}, labels: pod, want: true},
		{name: "other source does not match", matchLabels: map[string]string{"container:app": "web"}, labels: pod, want: false},
		{name: "bare key matches other source", matchLabels: map[string]string{"runtime": "docker"}, labels: pod, want: true},
		{name: "sourced key matches its source", exprs: []Requirement{{"container:runtime", OpExists, nil}}, labels: pod, want: true},
		{name: "wrong source counts as absent for Exists", exprs: []Requirement{{"k8s:runtime", OpExists, nil}}, labels: pod, want: false},
		{name: "wrong source counts as absent for NotIn", exprs: []Requirement{{"k8s:runtime", OpNotIn, []string{"docker"}}}, labels: pod, want: true},
		{name: "wrong source counts as absent for DoesNotExist", exprs: []Requirement{{"k8s:runtime", OpDoesNotExist, nil}}, labels: pod, want: true},
		{
			name:   "cluster label",
			exprs:  []Requirement{{"k8s:" + ClusterLabelKey, OpIn, []string{"c1", "c3"}}},
			labels: []string{"k8s:app=baz", "k8s:" + ClusterLabelKey + "=c3"}, want: true,
		},
		{
			name:   "namespace label prefix",
			exprs:  []Requirement{{NamespaceLabelsPrefix + "team", OpIn, []string{"red"}}},
			labels: []string{"k8s:" + NamespaceLabelsPrefix + "team=red"}, want: true,
		},
		{name: "any with colon key", exprs: []Requirement{{"any:a:b", OpExists, nil}}, labels: []string{"k8s:a:b=c"}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSelector(tt.matchLabels, tt.exprs)
			if err != nil {
				t.Fatalf("NewSelector: %v", err)
			}
			ls := mustLabels(t, tt.labels...)
			if got := s.Matches(ls); got != tt.want {
				t.Errorf("selector %q Matches(%v) = %v, want %v", s, ls, got, tt.want)
			}
		})
	}
}

func TestSelectorZeroValueMatchesAll(t *testing.T) {
	var s Selector
	if !s.Matches(mustLabels(t, "k8s:a=b")) || !s.Empty() || s.String() != "" {
		t.Errorf("zero Selector: Matches/Empty/String wrong (%q)", s)
	}
}

func TestNewSelectorErrors(t *testing.T) {
	tests := []struct {
		name        string
		matchLabels map[string]string
		exprs       []Requirement
		wantErr     string
		wantNamed   string
	}{
		{"unknown operator", nil, []Requirement{{"app", "Equals", []string{"a"}}}, "unknown operator", `"Equals"`},
		{"lowercase operator", nil, []Requirement{{"app", "in", []string{"a"}}}, "use one of In, NotIn, Exists, DoesNotExist", `"in"`},
		{"In without values", nil, []Requirement{{"app", OpIn, nil}}, "needs at least one value", `"app"`},
		{"NotIn without values", nil, []Requirement{{"app", OpNotIn, []string{}}}, "needs at least one value", `"app"`},
		{"Exists with values", nil, []Requirement{{"app", OpExists, []string{"a"}}}, "takes no values", `"app"`},
		{"DoesNotExist with values", nil, []Requirement{{"app", OpDoesNotExist, []string{"a"}}}, "takes no values", `"app"`},
		{"empty key", nil, []Requirement{{"", OpExists, nil}}, "empty key", `""`},
		{"empty key after source", nil, []Requirement{{"k8s:", OpExists, nil}}, "empty key", `"k8s:"`},
		{"empty source", nil, []Requirement{{":app", OpExists, nil}}, "empty source", `":app"`},
		{"key with space", map[string]string{"a b": "x"}, nil, "whitespace", `"a b"`},
		{"key with comma", map[string]string{"a,b": "x"}, nil, "not allowed", `"a,b"`},
		{"key with bang", nil, []Requirement{{"!app", OpExists, nil}}, "not allowed", `"!app"`},
		{"key with equals", nil, []Requirement{{"a=b", OpExists, nil}}, "not allowed", `"a=b"`},
		{"value with comma", map[string]string{"app": "a,b"}, nil, "not allowed", `"app"`},
		{"value with semicolon", nil, []Requirement{{"app", OpIn, []string{"a;"}}}, "not allowed", `"app"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSelector(tt.matchLabels, tt.exprs)
			if err == nil {
				t.Fatalf("NewSelector: no error, want %q", tt.wantErr)
			}
			for _, want := range []string{tt.wantErr, tt.wantNamed} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestSelectorCanonical(t *testing.T) {
	a, err := NewSelector(
		map[string]string{"app": "web", "k8s:env": "prod"},
		[]Requirement{
			{"zone", OpDoesNotExist, nil},
			{"tier", OpIn, []string{"b", "a", "b"}},
			{"any:app", OpIn, []string{"web"}}, // duplicate of matchLabels app=web
			{"team", OpNotIn, []string{"x"}},
			{"role", OpNotIn, []string{"y", "x"}},
			{"owner", OpExists, nil},
			{"any:a:b", OpExists, nil},
		},
	)
	if err != nil {
		t.Fatal(err)
	}
	const want = "any:a:b,app=web,k8s:env=prod,owner,role notin (x,y),team!=x,tier in (a,b),!zone"
	if got := a.String(); got != want {
		t.Errorf("String() =\n%q, want\n%q", got, want)
	}
	wantReqs := []Requirement{
		{"any:a:b", OpExists, nil},
		{"app", OpIn, []string{"web"}},
		{"k8s:env", OpIn, []string{"prod"}},
		{"owner", OpExists, nil},
		{"role", OpNotIn, []string{"x", "y"}},
		{"team", OpNotIn, []string{"x"}},
		{"tier", OpIn, []string{"a", "b"}},
		{"zone", OpDoesNotExist, nil},
	}
	if d := cmp.Diff(wantReqs, a.Requirements()); d != "" {
		t.Errorf("Requirements (-want +got):\n%s", d)
	}

	// The same selector written differently is Equal and prints the same.
	b, err := NewSelector(nil, wantReqs)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Equal(b) || a.String() != b.String() {
		t.Errorf("equivalent selectors differ: %q vs %q", a, b)
	}
	if d := cmp.Diff(a, b); d != "" {
		t.Errorf("cmp.Diff on Selector:\n%s", d)
	}

	// Requirements returns copies.
	r := a.Requirements()
	r[4].Values[0] = "mutated"
	if a.String() != want {
		t.Errorf("Requirements aliases the selector: %q", a)
	}
}

func TestSelectorHasKey(t *testing.T) {
	s, err := NewSelector(map[string]string{"k8s:" + ClusterLabelKey: "c1"}, []Requirement{{"app", OpExists, nil}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want bool
	}{
		{ClusterLabelKey, true},
		{"k8s:" + ClusterLabelKey, true},
		{"any:" + ClusterLabelKey, true},
		{"container:" + ClusterLabelKey, false},
		{"app", true},
		{"k8s:app", true}, // "app" is an any-source requirement
		{"container:app", true},
		{"other", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := s.HasKey(tt.key); got != tt.want {
			t.Errorf("HasKey(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
	if (Selector{}).HasKey(ClusterLabelKey) {
		t.Error("empty selector HasKey = true")
	}
}

package identity

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestSortedKVStoreString(t *testing.T) {
	tests := []struct {
		name string
		ls   Labels
		want string
	}{
		{"empty", Labels{}, ""},
		{
			"pod",
			NewLabels(
				Label{"k8s", NamespaceLabelKey, "bar"},
				Label{"k8s", "app", "baz"},
				Label{"k8s", ClusterLabelKey, "c3"},
			),
			"k8s:app=baz;k8s:io.cilium.k8s.policy.cluster=c3;k8s:io.kubernetes.pod.namespace=bar;",
		},
		{"empty value keeps '='", NewLabels(Label{"reserved", "host", ""}), "reserved:host=;"},
		{
			// Cilium sorts by bare key, not by "source:key".
			"sorted by key not source",
			NewLabels(Label{"reserved", "aaa", ""}, Label{"k8s", "zzz", "1"}),
			"reserved:aaa=;k8s:zzz=1;",
		},
		{"unspec source", NewLabels(Label{"", "a", "b"}), "unspec:a=b;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.ls.SortedKVStoreString()
			if got != tt.want {
				t.Errorf("SortedKVStoreString() = %q, want %q", got, tt.want)
			}
			back, err := ParseKVStoreLabels(got)
			if err != nil {
				t.Fatalf("ParseKVStoreLabels(%q): %v", got, err)
			}
			if d := cmp.Diff(tt.ls.Slice(), back.Slice()); d != "" {
				t.Errorf("round trip (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseKVStoreLabels(t *testing.T) {
	tests := []struct {
		in   string
		want []Label
	}{
		{"", nil},
		{"k8s:app=baz;", []Label{{"k8s", "app", "baz"}}},
		{"reserved:host=;", []Label{{"reserved", "host", ""}}},
		{"k8s:a:b=c;", []Label{{"k8s", "a:b", "c"}}},
		{"k8s:a=b=c;", []Label{{"k8s", "a", "b=c"}}},
		// Unsorted input is accepted and comes back sorted.
		{"k8s:z=1;k8s:a=2;", []Label{{"k8s", "a", "2"}, {"k8s", "z", "1"}}},
		{
			"k8s:app=baz;k8s:io.cilium.k8s.policy.cluster=c3;k8s:io.kubernetes.pod.namespace=bar;",
			[]Label{{"k8s", "app", "baz"}, {"k8s", ClusterLabelKey, "c3"}, {"k8s", NamespaceLabelKey, "bar"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKVStoreLabels(tt.in)
			if err != nil {
				t.Fatalf("ParseKVStoreLabels(%q): %v", tt.in, err)
			}
			if d := cmp.Diff(tt.want, got.Slice(), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("ParseKVStoreLabels(%q) (-want +got):\n%s", tt.in, d)
			}
		})
	}
}

func TestParseKVStoreLabelsRejects(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"k8s:app=baz", "missing trailing ';'"},
		{"k8s:app=baz;k8s:x=1", "missing trailing ';'"},
		{";", "empty label"},
		{"k8s:a=1;;", "empty label"},
		{";k8s:a=1;", "empty label"},
		{"k8s:app=a;k8s:app=b;", "same key"},
		{"k8s:app=a;container:app=b;", "same key"},
		{"k8s:=v;", "empty key"},
		{":app=v;", "empty source"},
		{"app=v;", "no source"},
		{"a=b:c;", "no source"},
		{"k8s:app;", "no '='"},
		{"reserved:host;", "no '='"},
		// A value containing ';' splits into a malformed label.
		{"k8s:app=a;b;", "no source"},
		{"k8s:app=a;b=c;", "no source"},
		{"k8s:a b=c;", "whitespace"},
		{"k8s:a=\x00;", "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKVStoreLabels(tt.in)
			checkErr(t, err, tt.wantErr, tt.in)
			if got.Len() != 0 {
				t.Errorf("got labels %v with the error", got)
			}
		})
	}
}

func TestPodLabels(t *testing.T) {
	got := PodLabels("c3", "bar", "sa1",
		map[string]string{"app": "baz", NamespaceLabelKey: "spoofed"},
		map[string]string{"team": "red", "kubernetes.io/metadata.name": "bar"},
	)
	want := []Label{
		{"k8s", "app", "baz"},
		{"k8s", "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name", "bar"},
		{"k8s", "io.cilium.k8s.namespace.labels.team", "red"},
		{"k8s", ClusterLabelKey, "c3"},
		{"k8s", ServiceAccountLabelKey, "sa1"},
		{"k8s", NamespaceLabelKey, "bar"},
	}
	if d := cmp.Diff(want, got.Slice()); d != "" {
		t.Errorf("PodLabels (-want +got):\n%s", d)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	// Empty service account (and cluster, namespace) are omitted.
	got = PodLabels("", "bar", "", nil, nil)
	if d := cmp.Diff([]Label{{"k8s", NamespaceLabelKey, "bar"}}, got.Slice()); d != "" {
		t.Errorf("PodLabels without service account (-want +got):\n%s", d)
	}
}

package identity

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseLabel checks that ParseLabel never panics and that every label it
// accepts prints to a string that parses back to the same label, in both the
// label and the kvstore form.
func FuzzParseLabel(f *testing.F) {
	for _, s := range []string{
		"k8s:app=baz", "reserved:host", "app=baz", "app", "k8s:app=", "",
		"k8s:io.cilium.k8s.policy.cluster=c3", "k8s:io.cilium.k8s.namespace.labels.team=red",
		"a=b:c", "k8s:a:b=c", "k8s:a=b=c", ":app=x", "k8s:=v", "k8s:a;b", "k8s::x", "k8s:a:",
		"k8s:a=b c", "k8s:a=\n", "k8s:a=\xff", "$host", "any:app", "k8s:app.kubernetes.io/name=web",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLabel(s)
		if err != nil {
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("ParseLabel(%q) = %#v, which fails Validate: %v", s, l, err)
		}
		printed := l.String()
		again, err := ParseLabel(printed)
		if err != nil {
			t.Fatalf("ParseLabel(%q) = %#v, printed %q, which does not parse: %v", s, l, printed, err)
		}
		if d := cmp.Diff(l, again); d != "" {
			t.Fatalf("round trip of %q via %q (-first +second):\n%s", s, printed, d)
		}
		kv := NewLabels(l).SortedKVStoreString()
		set, err := ParseKVStoreLabels(kv)
		if err != nil {
			t.Fatalf("kvstore form %q of %q does not parse: %v", kv, s, err)
		}
		if d := cmp.Diff([]Label{l}, set.Slice()); d != "" {
			t.Fatalf("kvstore round trip of %q via %q (-want +got):\n%s", s, kv, d)
		}
	})
}

// FuzzParseKVStoreLabels checks that ParseKVStoreLabels never panics and that
// every set it accepts prints to its canonical form, which parses back to an
// equal set and prints identically.
func FuzzParseKVStoreLabels(f *testing.F) {
	for _, s := range []string{
		"",
		"k8s:app=baz;k8s:io.cilium.k8s.policy.cluster=c3;k8s:io.kubernetes.pod.namespace=bar;",
		"reserved:host=;",
		"k8s:z=1;k8s:a=2;",
		"k8s:a:b=c;unspec:x==;",
		"k8s:app=baz",
		";", "k8s:a=1;;", "k8s:app=a;k8s:app=b;", "k8s:app;", "app=v;", "k8s:app=a;b;",
		":a=b;", "k8s:=b;", "k8s:a=\x00;", "k8s:a=\xff;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ls, err := ParseKVStoreLabels(s)
		if err != nil {
			if ls.Len() != 0 {
				t.Fatalf("ParseKVStoreLabels(%q) returned labels with error %v", s, err)
			}
			return
		}
		if err := ls.Validate(); err != nil {
			t.Fatalf("ParseKVStoreLabels(%q) = %v, which fails Validate: %v", s, ls, err)
		}
		out := ls.SortedKVStoreString()
		if len(out) != len(s) {
			t.Fatalf("ParseKVStoreLabels(%q) printed as %q: lengths differ", s, out)
		}
		again, err := ParseKVStoreLabels(out)
		if err != nil {
			t.Fatalf("ParseKVStoreLabels(%q) printed as %q, which does not parse: %v", s, out, err)
		}
		if d := cmp.Diff(ls.Slice(), again.Slice()); d != "" {
			t.Fatalf("round trip of %q via %q (-first +second):\n%s", s, out, d)
		}
		if out2 := again.SortedKVStoreString(); out2 != out {
			t.Fatalf("canonical form not stable: %q then %q", out, out2)
		}
	})
}

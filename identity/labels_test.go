package identity

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLabel(t *testing.T) {
	tests := []struct {
		in      string
		want    Label
		wantErr string // substring; "" means success
	}{
		{in: "k8s:app=baz", want: Label{"k8s", "app", "baz"}},
		{in: "reserved:host", want: Label{"reserved", "host", ""}},
		{in: "k8s:app=", want: Label{"k8s", "app", ""}},
		{in: "app=baz", want: Label{"unspec", "app", "baz"}},
		{in: "app", want: Label{"unspec", "app", ""}},
		{in: "k8s:io.cilium.k8s.policy.cluster=c3", want: Label{"k8s", ClusterLabelKey, "c3"}},
		{in: "k8s:io.cilium.k8s.namespace.labels.team=a", want: Label{"k8s", "io.cilium.k8s.namespace.labels.team", "a"}},
		{in: "k8s:app.kubernetes.io/name=web", want: Label{"k8s", "app.kubernetes.io/name", "web"}},
		// The source is before the first ':' only if no '=' comes first.
		{in: "a=b:c", want: Label{"unspec", "a", "b:c"}},
		{in: "k8s:a:b=c", want: Label{"k8s", "a:b", "c"}},
		{in: "k8s:a=b=c", want: Label{"k8s", "a", "b=c"}},
		{in: "k8s:a=b c", want: Label{"k8s", "a", "b c"}},
		{in: "container:x=1", want: Label{"container", "x", "1"}},

		{in: "", wantErr: "empty key"},
		{in: "k8s:", wantErr: "empty key"},
		{in: "k8s:=v", wantErr: "empty key"},
		{in: "=v", wantErr: "empty key"},
		{in: ":app=x", wantErr: "empty source"},
		{in: "k8s:a;b=c", wantErr: `contains ';'`},
		{in: "k8s:a=b;", wantErr: `contains ';'`},
		{in: "k 8s:a=b", wantErr: "whitespace"},
		{in: "k8s:a b=c", wantErr: "whitespace"},
		{in: "k8s:a=\nb", wantErr: "control character"},
		{in: "k8s:a=\xff", wantErr: "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLabel(tt.in)
			if tt.wantErr != "" {
				checkErr(t, err, tt.wantErr, tt.in)
				return
			}
			if err != nil {
				t.Fatalf("ParseLabel(%q): %v", tt.in, err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("ParseLabel(%q) (-want +got):\n%s", tt.in, d)
			}
			// Round trip through String.
			again, err := ParseLabel(got.String())
			if err != nil {
				t.Fatalf("ParseLabel(%q) (printed): %v", got.String(), err)
			}
			if d := cmp.Diff(got, again); d != "" {
				t.Errorf("round trip via %q (-first +second):\n%s", got.String(), d)
			}
		})
	}
}

// checkErr fails unless err is non-nil, contains want and quotes input.
func checkErr(t *testing.T, err error, want, input string) {
	t.Helper()
	if err == nil {
		t.Fatalf("input %q: got no error, want one containing %q", input, want)
	}
	msg := err.Error()
	if !strings.Contains(msg, want) {
		t.Errorf("input %q: error %q does not contain %q", input, msg, want)
	}
	if input != "" && !strings.Contains(msg, strings.Trim(strconv.Quote(input), `"`)) {
		t.Errorf("error %q does not name the input %q", msg, input)
	}
	if msg != "" && strings.ToLower(msg[:1]) != msg[:1] {
		t.Errorf("error %q does not start lowercase", msg)
	}
}

func TestLabelString(t *testing.T) {
	tests := []struct {
		l    Label
		want string
	}{
		{Label{"k8s", "app", "baz"}, "k8s:app=baz"},
		{Label{"reserved", "host", ""}, "reserved:host"},
		{Label{"", "app", "x"}, "unspec:app=x"},
		{Label{"unspec", "a:b", "c"}, "unspec:a:b=c"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.l.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewLabelValidates(t *testing.T) {
	l, err := NewLabel("", "app", "x")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Label{SourceUnspec, "app", "x"}, l); d != "" {
		t.Errorf("NewLabel (-want +got):\n%s", d)
	}
	if _, err := NewLabel("k8s", "a=b", "x"); err == nil || !strings.Contains(err.Error(), "contains '='") {
		t.Errorf("NewLabel with '=' in key: err = %v, want one about '='", err)
	}
	if _, err := NewLabel("k:8s", "a", "x"); err == nil {
		t.Error("NewLabel with ':' in source: no error")
	}
}

func TestLabelsSet(t *testing.T) {
	ls := NewLabels(
		Label{"k8s", "app", "old"},
		Label{"reserved", "host", ""},
		Label{"", "tier", "web"},
		Label{"k8s", "app", "new"}, // same key: last wins
	)
	wantSlice := []Label{{"k8s", "app", "new"}, {"reserved", "host", ""}, {"unspec", "tier", "web"}}
	if d := cmp.Diff(wantSlice, ls.Slice()); d != "" {
		t.Errorf("Slice (-want +got):\n%s", d)
	}
	var keys []string
	for l := range ls.All() {
		keys = append(keys, l.Key)
		if l.Key == "host" {
			break
		}
	}
	if d := cmp.Diff([]string{"app", "host"}, keys); d != "" {
		t.Errorf("All with break (-want +got):\n%s", d)
	}
	if ls.Len() != 3 {
		t.Errorf("Len = %d, want 3", ls.Len())
	}
	if got := ls.String(); got != "k8s:app=new,reserved:host,unspec:tier=web" {
		t.Errorf("String = %q", got)
	}

	gets := []struct {
		key    string
		want   Label
		wantOK bool
	}{
		{"app", Label{"k8s", "app", "new"}, true},
		{"k8s:app", Label{"k8s", "app", "new"}, true},
		{"any:app", Label{"k8s", "app", "new"}, true},
		{"reserved:app", Label{}, false},
		{"unspec:app", Label{}, false},
		{"unspec:tier", Label{"unspec", "tier", "web"}, true},
		{"host", Label{"reserved", "host", ""}, true},
		{"missing", Label{}, false},
		{"", Label{}, false},
	}
	for _, g := range gets {
		t.Run("Get/"+g.key, func(t *testing.T) {
			got, ok := ls.Get(g.key)
			if ok != g.wantOK {
				t.Fatalf("Get(%q) ok = %v, want %v", g.key, ok, g.wantOK)
			}
			if d := cmp.Diff(g.want, got); d != "" {
				t.Errorf("Get(%q) (-want +got):\n%s", g.key, d)
			}
		})
	}

	has := []struct {
		l    Label
		want bool
	}{
		{Label{"k8s", "app", "new"}, true},
		{Label{"any", "app", "new"}, true},
		{Label{"k8s", "app", "old"}, false},
		{Label{"container", "app", "new"}, false},
		{Label{"", "tier", "web"}, true},
		{Label{"reserved", "host", ""}, true},
	}
	for _, h := range has {
		if got := ls.Has(h.l); got != h.want {
			t.Errorf("Has(%v) = %v, want %v", h.l, got, h.want)
		}
	}

	// Immutability: changing the returned slice does not change the set.
	s := ls.Slice()
	s[0].Value = "mutated"
	if l, _ := ls.Get("app"); l.Value != "new" {
		t.Errorf("Slice aliases the set: app = %q", l.Value)
	}
}

func TestLabelsMergeEqual(t *testing.T) {
	a := NewLabels(Label{"k8s", "app", "a"}, Label{"k8s", "x", "1"})
	b := NewLabels(Label{"container", "app", "b"}, Label{"k8s", "y", "2"})
	got := a.Merge(b)
	want := NewLabels(Label{"container", "app", "b"}, Label{"k8s", "x", "1"}, Label{"k8s", "y", "2"})
	if d := cmp.Diff(want.Slice(), got.Slice()); d != "" {
		t.Errorf("Merge (-want +got):\n%s", d)
	}
	if !got.Equal(want) {
		t.Error("Equal = false for equal sets")
	}
	if got.Equal(a) {
		t.Error("Equal = true for different sets")
	}
	if a.Len() != 2 || b.Len() != 2 {
		t.Error("Merge changed its operands")
	}
	if !NewLabels().Equal(Labels{}) {
		t.Error("empty sets differ")
	}
	if d := cmp.Diff(want, got); d != "" { // go-cmp uses Labels.Equal
		t.Errorf("cmp.Diff on Labels:\n%s", d)
	}
}

func TestParseLabels(t *testing.T) {
	got, err := ParseLabels("k8s:app=baz", "reserved:host")
	if err != nil {
		t.Fatal(err)
	}
	want := NewLabels(Label{"k8s", "app", "baz"}, Label{"reserved", "host", ""})
	if d := cmp.Diff(want.Slice(), got.Slice()); d != "" {
		t.Errorf("ParseLabels (-want +got):\n%s", d)
	}
	_, err = ParseLabels("k8s:app=a", "container:app=b")
	checkErr(t, err, "same key", "container:app=b")
	_, err = ParseLabels("k8s:app=a", "k8s:=b")
	checkErr(t, err, "empty key", "k8s:=b")
}

func TestLabelsValidate(t *testing.T) {
	if err := NewLabels(Label{"k8s", "a", "b"}).Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	err := NewLabels(Label{"k8s", "a", "b;c"}).Validate()
	checkErr(t, err, "contains ';'", "k8s:a=b;c")
}

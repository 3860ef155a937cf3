package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func mustCIDR(t testing.TB, s string) *CIDR {
	t.Helper()
	c, err := ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// diff describes how got and want differ, or returns "" when they are equal.
func diff(got, want any) string {
	if reflect.DeepEqual(got, want) {
		return ""
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	return fmt.Sprintf("\n got: %#v\nwant: %#v\n got JSON: %s\nwant JSON: %s", got, want, g, w)
}

func checkEqual(t testing.TB, what string, got, want any) {
	t.Helper()
	if d := diff(got, want); d != "" {
		t.Errorf("%s differs:%s", what, d)
	}
}

// checkMalformed asserts err is a *DecodeError for key that matches
// ErrMalformed, quotes the key and mentions every fragment.
func checkMalformed(t testing.TB, err error, key string, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error for key %q, got nil", key)
	}
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("errors.Is(%v, ErrMalformed) = false", err)
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Errorf("error %v is not a *DecodeError", err)
	} else if de.Key != key {
		t.Errorf("DecodeError.Key = %q, want %q", de.Key, key)
	}
	msg := err.Error()
	if !strings.Contains(msg, strconv.Quote(key)) {
		t.Errorf("error %q does not quote the key %q", msg, key)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not mention %q", msg, f)
		}
	}
}

func TestDecodeErrorFormat(t *testing.T) {
	_, err := DecodeNode("cilium/state/nodes/v1/c1/n1", []byte(`{"Name":"x","Cluster":"c1"}`))
	want := `invalid value at etcd key "cilium/state/nodes/v1/c1/n1": node name "x" does not match the key's node "n1"`
	if err == nil || err.Error() != want {
		t.Errorf("got error %v\nwant      %s", err, want)
	}
	_, _, err = ParseNodeKey("cilium/state/nodes/v1/c1")
	want = `invalid etcd key "cilium/state/nodes/v1/c1": want 2 segment(s) <cluster>/<node> after "cilium/state/nodes/v1/", got 1`
	if err == nil || err.Error() != want {
		t.Errorf("got error %v\nwant      %s", err, want)
	}
	var de *DecodeError
	if !errors.As(err, &de) || !errors.Is(err, ErrMalformed) {
		t.Errorf("key error %v is not a *DecodeError matching ErrMalformed", err)
	}
	// The underlying encoding/json error stays reachable.
	_, err = DecodeNode("cilium/state/nodes/v1/c1/n1", []byte(`{"ClusterID":-1}`))
	var ute *json.UnmarshalTypeError
	if !errors.As(err, &ute) {
		t.Errorf("error %v does not wrap *json.UnmarshalTypeError", err)
	}
}

func TestCIDR(t *testing.T) {
	c := mustCIDR(t, "10.1.2.3/16")
	if got, want := c.String(), "10.1.0.0/16"; got != want {
		t.Errorf("ParseCIDR masks: got %s, want %s", got, want)
	}
	for _, bad := range []string{"", "10.0.0.0", "10.0.0.0/33", "::ffff:10.0.0.0/120", "fe80::/64%eth0"} {
		if _, err := ParseCIDR(bad); err == nil {
			t.Errorf("ParseCIDR(%q) succeeded, want an error", bad)
		}
	}
	if _, err := (CIDR{}).MarshalJSON(); err == nil {
		t.Error("marshalling the zero CIDR succeeded, want an error")
	}
	v6 := CIDR{Prefix: netip.MustParsePrefix("fd00::1/64")}
	b, err := v6.MarshalJSON()
	if err != nil || string(b) != `{"IP":"fd00::","Mask":"//////////8AAAAAAAAAAA=="}` {
		t.Errorf("MarshalJSON of %s = %s, %v", v6, b, err)
	}
}

var mustAddr = netip.MustParseAddr

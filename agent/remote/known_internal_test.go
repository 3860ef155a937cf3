package remote

import (
	"log/slog"
	"testing"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// The validator's accepted identity keys: a key that is its number as
// strconv writes it is held by number, any other key as a string, and
// neither stands for the other (a delete of "0131073" is not one of
// "131073").
func TestAcceptedIdentityKeys(t *testing.T) {
	layout, err := identity.NewLayout(255)
	if err != nil {
		t.Fatal(err)
	}
	p := schema.DefaultPaths()
	v := newValidator("cluster2", 2, layout, p, discardSink{}, newRejections("cluster2", slog.New(slog.DiscardHandler), nil))
	key := func(rel string) string { return p.IdentityIDPrefix() + rel }
	for _, tc := range []struct {
		rel      string
		ok, had  bool
		entries  int
		packed   int
		asString int
	}{
		{"131073", true, false, 1, 1, 0},
		{"131073", true, true, 1, 1, 0},
		{"0131073", true, false, 2, 1, 1},
		{"4294967296", true, false, 3, 1, 2},
		{"0131073", false, true, 2, 1, 1},
		{"0131073", false, false, 2, 1, 1},
		{"131073", false, true, 1, 0, 1},
		{"4294967296", false, true, 0, 0, 0},
	} {
		if had := v.accepted(KindIdentities, key(tc.rel), tc.ok); had != tc.had {
			t.Fatalf("accepted(%q, %v) = %v, want %v", tc.rel, tc.ok, had, tc.had)
		}
		if n := v.entries(KindIdentities); n != tc.entries || len(v.idKnown) != tc.packed || len(v.known[KindIdentities]) != tc.asString {
			t.Fatalf("after %q %v: %d entries (%d by number, %d as strings), want %d (%d, %d)",
				tc.rel, tc.ok, n, len(v.idKnown), len(v.known[KindIdentities]), tc.entries, tc.packed, tc.asString)
		}
	}
}

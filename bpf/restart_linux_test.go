package bpf

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRestartKeepsConnections(t *testing.T) { forEachFamily(t, testRestartKeepsConnections) }

func testRestartKeepsConnections(t *testing.T, family int) {
	pinDir := newBPFFS(t)
	e := newPolicyEnvFor(t, envOpts{Options: Options{PinDir: pinDir}, Family: family})
	must(t, e.d.SetPolicy(epB, []PolicyRule{{Identity: idA, Ingress: true, Proto: ProtoTCP, Port: 8080}}))
	c, err := dial(e.a, netip.AddrPortFrom(e.b.ip, 8080), dialTimeout*5)
	must(t, err)
	defer c.Close()
	must(t, echo(c, "before"))
	wantIPCache, err := e.d.IPCache().List()
	must(t, err)

	// "Restart": the Go objects go away, the pins stay, and the programs
	// keep running while no process holds them.
	must(t, e.d.Close())
	must(t, echo(c, "while-down"))
	links, err := os.ReadDir(filepath.Join(pinDir, "links"))
	must(t, err)
	if len(links) != 4 {
		t.Fatalf("%d pinned links, want 4 (2 endpoints x 2 directions)", len(links))
	}

	d2 := load(t, Options{PinDir: pinDir})
	e.d = d2
	gotIPCache, err := d2.IPCache().List()
	must(t, err)
	if diff := cmp.Diff(wantIPCache, gotIPCache, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("ipcache after reload (-want +got):\n%s", diff)
	}
	must(t, echo(c, "after-reload"))

	// The reloaded datapath enforces the pinned state with the pinned
	// conntrack: withdrawing the rule drops new connections, while the
	// established one carries on.
	must(t, d2.SetPolicy(epB, nil))
	e.expectTCP(t, 8080, false, ReasonPolicyDenied)
	must(t, echo(c, "established"))

	// Attaching again after a restart is a no-op.
	e.topo.attach(t, d2, e.b, epB)
	must(t, echo(c, "reattached"))

	// Unpin removes everything; Close then detaches.
	must(t, d2.Unpin())
	must(t, d2.Close())
	if _, err := os.Stat(pinDir); !os.IsNotExist(err) {
		t.Fatalf("pin directory after Unpin: %v", err)
	}
}

package tunnel_test

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/dptest"
	"github.com/clustermesh/clustermesh/tunnel"
)

// peerOf is n as a peer of the other node.
func peerOf(n *node) datapath.Peer {
	return datapath.Peer{
		Cluster: "c1", Node: n.name,
		NodeIP:          netip.MustParseAddr(n.nodeIP),
		PodCIDRs:        []netip.Prefix{netip.MustParsePrefix(n.podCIDR)},
		WireguardPubKey: n.dev.PublicKey(),
	}
}

func keyOf(n *node) string { return "c1/" + n.name }

func update(t *testing.T, on, of *node) {
	t.Helper()
	if err := on.dev.Peers().Update(t.Context(), keyOf(of), peerOf(of)); err != nil {
		t.Fatalf("on %s: Update %s: %v", on.name, keyOf(of), err)
	}
}

func expectPeers(t *testing.T, on *node, want map[string]datapath.Peer) {
	t.Helper()
	got, err := on.dev.Peers().List(t.Context())
	if err != nil {
		t.Fatalf("on %s: List: %v", on.name, err)
	}
	if diff := cmp.Diff(want, got, dptest.CmpOptions()); diff != "" {
		t.Fatalf("on %s: List (-want +got):\n%s", on.name, diff)
	}
}

// Two nodes, each with a pod: pod-to-pod TCP goes through WireGuard, and
// the underlay carries only UDP to the WireGuard port, never the payload.
// Deleting the peer stops the traffic; a restarted device lists its peers
// again and carries traffic.
func TestPodToPodEncrypted(t *testing.T) {
	requireRoot(t)
	p := newPair(t)
	p.a.start(t)
	p.b.start(t)
	if p.a.dev.Mode() != tunnel.ModeUserspace && p.a.dev.Mode() != tunnel.ModeKernel {
		t.Fatalf("mode %q", p.a.dev.Mode())
	}
	t.Logf("WireGuard mode: %s", p.a.dev.Mode())
	echoServer(t, p.b.podNS, p.b.podIP+":7000")
	echoServer(t, p.a.podNS, p.a.podIP+":7000")
	podB := p.b.podIP + ":7000"
	podA := p.a.podIP + ":7000"

	if err := echo(t, p.a.podNS, podB, []byte("x")); err == nil {
		t.Fatal("pods reach each other before any peer is configured: the test topology routes around the tunnel")
	}

	update(t, p.a, p.b)
	update(t, p.b, p.a)
	update(t, p.a, p.b) // an equal value again
	expectPeers(t, p.a, map[string]datapath.Peer{keyOf(p.b): peerOf(p.b)})

	marker := []byte("CLUSTERMESH-PLAINTEXT-MARKER-" + p.a.name)
	msg := bytes.Repeat(marker, 200)
	underlay := startCapture(t, p.a.ns, "ul0")
	podSide := startCapture(t, p.a.ns, "pod0")
	if err := echo(t, p.a.podNS, podB, msg); err != nil {
		t.Fatalf("pod a -> pod b through the tunnel: %v", err)
	}
	if err := echo(t, p.b.podNS, podA, msg); err != nil {
		t.Fatalf("pod b -> pod a through the tunnel: %v", err)
	}
	checkEncrypted(t, underlay.Stop(), podSide.Stop(), marker, uint16(p.a.dev.ListenPort()))

	t.Run("restart keeps peers and traffic", func(t *testing.T) {
		p.a.stop(t)
		p.a.start(t)
		expectPeers(t, p.a, map[string]datapath.Peer{keyOf(p.b): peerOf(p.b)})
		update(t, p.a, p.b)
		if err := echo(t, p.a.podNS, podB, msg); err != nil {
			t.Fatalf("after a restart: %v", err)
		}
	})

	t.Run("delete stops traffic", func(t *testing.T) {
		if err := p.a.dev.Peers().Delete(t.Context(), keyOf(p.b)); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := p.a.dev.Peers().Delete(t.Context(), keyOf(p.b)); err != nil {
			t.Fatalf("Delete of an absent key: %v", err)
		}
		expectPeers(t, p.a, map[string]datapath.Peer{})
		if out, err := exec.Command("ip", "-n", p.a.name, "route", "show", p.b.podCIDR).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
			t.Fatalf("route to %s after Delete: %q, %v", p.b.podCIDR, out, err)
		}
		if err := echo(t, p.a.podNS, podB, []byte("x")); err == nil {
			t.Fatal("pod a still reaches pod b after the peer was deleted")
		}
		p.a.stop(t)
		p.a.start(t)
		expectPeers(t, p.a, map[string]datapath.Peer{})
		update(t, p.a, p.b)
		if err := echo(t, p.a.podNS, podB, msg); err != nil {
			t.Fatalf("after Delete, restart and Update: %v", err)
		}
	})

	t.Run("same public key after a restart", func(t *testing.T) {
		before := p.b.dev.PublicKey()
		p.b.stop(t)
		p.b.start(t)
		if got := p.b.dev.PublicKey(); got != before {
			t.Fatalf("public key changed across a restart: %s, then %s", before, got)
		}
		fi, err := os.Stat(p.b.cfg.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
		}
		if err := echo(t, p.b.podNS, podA, msg); err != nil {
			t.Fatalf("pod b -> pod a after b restarted: %v", err)
		}
	})
}

// checkEncrypted checks that the underlay frames carry the pods' traffic
// only as WireGuard UDP, and that the capture works (the pod side shows the
// marker in clear).
func checkEncrypted(t *testing.T, underlay, podSide [][]byte, marker []byte, port uint16) {
	t.Helper()
	seen := 0
	for _, f := range podSide {
		if bytes.Contains(f, marker) {
			seen++
		}
	}
	if seen == 0 {
		t.Fatalf("capture on the pod veth saw %d frames, none with the marker: the capture does not work", len(podSide))
	}
	wg := 0
	for _, f := range underlay {
		if bytes.Contains(f, marker) {
			t.Fatalf("plaintext marker on the underlay: %x", f)
		}
		h, ok := parseIPv4(f)
		if !ok {
			continue
		}
		if h.proto != unix.IPPROTO_UDP || (h.srcPort != port && h.dstPort != port) {
			t.Fatalf("underlay packet %v -> %v proto %d ports %d->%d: not WireGuard", h.src, h.dst, h.proto, h.srcPort, h.dstPort)
		}
		wg++
	}
	if wg == 0 {
		t.Fatalf("no WireGuard packets among %d underlay frames", len(underlay))
	}
	t.Logf("underlay: %d WireGuard UDP packets, no plaintext; pod side: %d frames with the marker", wg, seen)
}

// A peer without a usable public key is refused, naming the node and the
// key; nothing is configured.
func TestUpdateInvalidKey(t *testing.T) {
	requireRoot(t)
	p := uniq(t)
	ns := newNS(t, p)
	d, err := tunnel.New(t.Context(), tunnel.Config{Name: p + "wg", KeyFile: t.TempDir() + "/k", NetNSPath: ns})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	base := datapath.Peer{Cluster: "c2", Node: "node-7", NodeIP: netip.MustParseAddr("192.168.9.7"), PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.7.0.0/24")}}
	for _, tc := range []struct{ name, key, want string }{
		{"missing", "", "no WireGuard public key"},
		{"not base64", "key-of-node-7", `"key-of-node-7"`},
		{"short", "AAAA", `"AAAA"`},
		{"own key", d.PublicKey(), "this node's own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr := base
			pr.WireguardPubKey = tc.key
			err := d.Peers().Update(t.Context(), "c2/node-7", pr)
			if !errors.Is(err, tunnel.ErrInvalidPeer) {
				t.Fatalf("Update: %v, want ErrInvalidPeer", err)
			}
			if !strings.Contains(err.Error(), "c2/node-7") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Update error %q does not name the node and %s", err, tc.want)
			}
		})
	}
	held, err := d.Peers().List(t.Context())
	if err != nil || len(held) != 0 {
		t.Fatalf("List after refused updates: %v, %v", held, err)
	}
}

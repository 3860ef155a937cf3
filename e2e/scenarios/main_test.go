//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/tunnel"
)

func TestMain(m *testing.M) {
	if os.Getenv("CLUSTERMESH_BED_TUNNEL") != "" {
		if err := runHandBuiltTunnel(); err != nil {
			fmt.Fprintln(os.Stderr, "hand-built tunnel:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	bed.RemoveBinaries()
	os.Exit(code)
}

// runHandBuiltTunnel is the process BenchmarkCrossCluster runs in each of
// two plain nodes as its baseline: a wireguard-go device with one peer and
// a route to the peer's pod CIDR, configured by hand from the environment
// (the tunnel package, as the agent uses it, without the agent), until
// SIGTERM.
func runHandBuiltTunnel() error {
	//nolint:forbidigo // this is the main of a process the benchmark starts, not a test
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	env := func(k string) string { return os.Getenv("TUNNEL_" + k) }
	peerIP, err := netip.ParseAddr(env("PEER_IP"))
	if err != nil {
		return err
	}
	cidr, err := netip.ParsePrefix(env("PEER_CIDR"))
	if err != nil {
		return err
	}
	dev, err := tunnel.New(ctx, tunnel.Config{Name: env("NAME"), KeyFile: env("KEY"), Mode: tunnel.ModeAuto})
	if err != nil {
		return err
	}
	defer dev.Close()
	if err := dev.Peers().Update(ctx, "manual/peer", datapath.Peer{Cluster: "manual", Node: "peer", NodeIP: peerIP,
		PodCIDRs: []netip.Prefix{cidr}, WireguardPubKey: env("PEER_KEY")}); err != nil {
		return err
	}
	fmt.Println("tunnel up:", env("NAME"), "peer", peerIP, cidr)
	<-ctx.Done()
	return nil
}

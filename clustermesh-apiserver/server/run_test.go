package server_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/clustermesh-apiserver/server"
)

// A failing component ends Run with its error, and Run returns only after
// everything it started has stopped.
func TestRunReturnsComponentFailure(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b := newStoppedBed(t, func(c *server.Config) { c.HealthAddr = l.Addr().String() })
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := server.New(ctx, b.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "address already in use") || ctx.Err() != nil {
		t.Fatalf("Run = %v (ctx %v), want the health listener's error before the deadline", err, ctx.Err())
	}
}

func TestConfigErrorsNameTheFlags(t *testing.T) {
	_, err := server.New(t.Context(), server.Config{ClusterName: "Cluster_1", ClusterID: 300, HeartbeatInterval: 2 * time.Minute}, nil)
	for _, want := range []string{"--cluster-name", "--cluster-id", "--etcd-data-dir", "--heartbeat-interval 2m0s: must be below 2m"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

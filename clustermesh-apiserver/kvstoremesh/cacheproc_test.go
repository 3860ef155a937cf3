package kvstoremesh_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/clustermesh-apiserver/kvstoremesh"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// cacheChildEnv carries the config of a cache process started by
// startCacheProcess: a test binary started with it runs the cache instead
// of its tests (see init).
const cacheChildEnv = "CLUSTERMESH_KVSTOREMESH_CACHE_PROCESS"

type cacheChildConfig struct {
	Local   kvstore.ClientConfig `json:"local"`
	MeshDir string               `json:"meshDir"`
	// HandMirror: run the hand-written mirror of cluster2's ip entries
	// from this peer instead of the cache (a baseline).
	HandMirror *kvstore.ClientConfig `json:"handMirror,omitempty"`
}

// cacheProcess is the cache running in a child process of the test binary,
// as the clustermesh-apiserver runs it in a deployment: its own process,
// its own cores' share, its own connections.
type cacheProcess struct{ cmd *exec.Cmd }

// PID of the child.
func (p *cacheProcess) PID() int { return p.cmd.Process.Pid }

// Usage reads the child's CPU time and memory.
func (p *cacheProcess) Usage() (kvtest.Usage, error) { return kvtest.ProcUsage(p.PID()) }

// startCacheProcess runs the cache of the peers of meshDir into local in a
// child process, and waits until the cache published cluster2 with every
// synced marker in the local etcd (what the agents wait for). The child
// stops at cleanup, and dies with the test process.
func startCacheProcess(b *testing.B, local *kvtest.Process, meshDir string) *cacheProcess {
	b.Helper()
	return startChild(b, local, cacheChildConfig{Local: local.ClientConfig(), MeshDir: meshDir})
}

// startMirrorProcess runs handMirror of peer's ip entries into local's
// cache layout in a child process, with cluster2's config and synced
// markers written once the copy is in, and waits for them.
func startMirrorProcess(b *testing.B, local, peer *kvtest.Process) *cacheProcess {
	b.Helper()
	pc := peer.ClientConfig()
	return startChild(b, local, cacheChildConfig{Local: local.ClientConfig(), HandMirror: &pc})
}

func startChild(b *testing.B, local *kvtest.Process, cfg cacheChildConfig) *cacheProcess {
	b.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), cacheChildEnv+"="+string(raw))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start the cache process: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		_ = stdin.Close() // the child stops the cache and exits
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	cli := local.Connect(b).Etcd()
	p := local.Paths.Cache("cluster2")
	want := []string{local.Paths.ClusterConfig("cluster2")}
	for _, pre := range []string{p.NodesPrefix(), p.IdentitiesPrefix(), p.IPPrefix(), p.ServicesPrefix()} {
		want = append(want, p.Synced("cluster2", pre))
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n := 0
		for _, k := range want {
			resp, err := cli.Get(b.Context(), k, clientv3.WithCountOnly())
			if err == nil && resp.Count == 1 {
				n++
			}
		}
		if n == len(want) {
			return &cacheProcess{cmd: cmd}
		}
		select {
		case err := <-exited:
			exited <- err
			b.Fatalf("cache process %d exited before it synced cluster2: %v", cmd.Process.Pid, err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("cache process %d: %d of %d of cluster2's config and synced markers in the local etcd within 2m", cmd.Process.Pid, n, len(want))
		}
	}
}

// init runs the cache instead of the tests when the binary is a child
// started by startCacheProcess, until its stdin closes.
func init() {
	raw := os.Getenv(cacheChildEnv)
	if raw == "" {
		return
	}
	if err := runCacheChild(raw); err != nil {
		fmt.Fprintf(os.Stderr, "kvstoremesh cache process: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runCacheChild(raw string) error {
	var cfg cacheChildConfig
	if err := json.NewDecoder(bytes.NewReader([]byte(raw))).Decode(&cfg); err != nil {
		return fmt.Errorf("decode %s: %w", cacheChildEnv, err)
	}
	ctx, stop := signal.NotifyContext(context.TODO(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }() // the parent closed it, or died
	cli, err := kvstore.Connect(ctx, cfg.Local)
	if err != nil {
		return fmt.Errorf("connect to the local etcd: %w", err)
	}
	defer cli.Close()
	if cfg.HandMirror != nil {
		return runMirrorChild(ctx, cli, *cfg.HandMirror)
	}
	c, err := kvstoremesh.New(kvstoremesh.Config{Local: cli, Paths: schema.DefaultPaths(), LocalName: "cluster1", LocalID: 1,
		MaxConnectedClusters: 255, MeshConfigDir: cfg.MeshDir, PollInterval: 50 * time.Millisecond, Backoff: meshtest.Fast,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	if err := c.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func runMirrorChild(ctx context.Context, local *kvstore.Client, peerCfg kvstore.ClientConfig) error {
	peer, err := kvstore.Connect(ctx, peerCfg)
	if err != nil {
		return fmt.Errorf("connect to the peer: %w", err)
	}
	defer peer.Close()
	paths := schema.DefaultPaths()
	p := paths.Cache("cluster2")
	ready := func() error {
		ops := []clientv3.Op{clientv3.OpPut(paths.ClusterConfig("cluster2"),
			`{"id":2,"capabilities":{"syncedCanaries":true,"cached":true,"maxConnectedClusters":255}}`)}
		for _, pre := range []string{p.NodesPrefix(), p.IdentitiesPrefix(), p.IPPrefix(), p.ServicesPrefix()} {
			ops = append(ops, clientv3.OpPut(p.Synced("cluster2", pre), "2026-12-04T00:00:00Z"))
		}
		if _, err := local.Etcd().Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("write cluster2's config and synced markers: %w", err)
		}
		return nil
	}
	err = handMirror(ctx, peer.Etcd(), local.Etcd(), paths.IPDefaultPrefix(), p.IPDefaultPrefix(), ready)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

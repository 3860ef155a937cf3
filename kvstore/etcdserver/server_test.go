package etcdserver_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/etcdserver"
)

func TestStartServerRejectsInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		cfg     etcdserver.ServerConfig
		wantErr string
	}{
		{"no data dir", etcdserver.ServerConfig{}, "empty data dir"},
		{"cert without key", etcdserver.ServerConfig{DataDir: dir, CertFile: "c.pem"}, "cert and key files must be set together"},
		{"https without cert", etcdserver.ServerConfig{DataDir: dir, ListenClientURLs: []string{"https://127.0.0.1:0"}}, "is https but no certificate"},
		{"bad client URL", etcdserver.ServerConfig{DataDir: dir, ListenClientURLs: []string{"http://[::1"}}, "client URL"},
		{"bad peer URL", etcdserver.ServerConfig{DataDir: dir, ListenPeerURL: "http://[::1"}, "peer URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := etcdserver.StartServer(t.Context(), tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("started, want an error")
			}
			if !errors.Is(err, kvstore.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want ErrInvalidConfig containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestStartServerServesClients(t *testing.T) {
	s, err := etcdserver.StartServer(t.Context(), etcdserver.ServerConfig{DataDir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	urls := s.ClientURLs()
	if len(urls) != 1 || !strings.HasPrefix(urls[0], "http://127.0.0.1:") || strings.HasSuffix(urls[0], ":0") {
		t.Fatalf("ClientURLs = %v, want one http URL on a bound port", urls)
	}
	c, err := kvstore.Connect(t.Context(), kvstore.ClientConfig{Endpoints: urls})
	if err != nil {
		t.Fatalf("connect to %v: %v", urls, err)
	}
	defer c.Close()
	if _, err := c.Etcd().Put(t.Context(), "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	s.Close()
	s.Close() // idempotent
}

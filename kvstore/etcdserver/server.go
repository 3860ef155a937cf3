// Package etcdserver runs an embedded etcd member: the etcd of a
// clustermesh-apiserver (TLS, client-certificate authentication where the
// certificate's common name is the etcd user) and the real servers of
// kvstore/kvtest.
//
// It is the only package of the project that imports the etcd server
// (go.etcd.io/etcd/server/v3), kept apart from package kvstore so that the
// clients of etcd do not link it. The clustermesh-agent, the CNI plugin and
// the CLI must not import this package, directly or not; a test in
// cmd/clustermesh-agent fails if one of them does.
package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/clustermesh/clustermesh/kvstore"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// ServerConfig configures the embedded etcd of a clustermesh-apiserver.
type ServerConfig struct {
	// Name of the member (default "clustermesh").
	Name string
	// DataDir holds the member's data; a restart on the same directory keeps
	// everything.
	DataDir string
	// ListenClientURLs, e.g. https://0.0.0.0:2379. Port 0 picks a free port;
	// Server.ClientURLs tells which. Default http://127.0.0.1:0.
	ListenClientURLs []string
	// ListenPeerURL is where the member listens for peers (default
	// http://127.0.0.1:0: nobody joins a single embedded etcd).
	ListenPeerURL string
	// InitialCluster lists the members of a new multi-member cluster as
	// name=peerURL,... (default: this member alone).
	InitialCluster string
	// CertFile and KeyFile serve TLS; TrustedCAFile turns on client
	// certificate authentication: the certificate's common name is then the
	// etcd user of the request.
	CertFile, KeyFile, TrustedCAFile string
	// QuotaBackendBytes bounds the database size (0: etcd's default, 2 GiB).
	QuotaBackendBytes int64
	// AutoCompactionRetention in revisions (0: default 10000, negative: off).
	AutoCompactionRetention int64
	// Logger receives etcd's errors (default: discarded).
	Logger *slog.Logger
}

// Server is a running embedded etcd.
type Server struct {
	etcd      *embed.Etcd
	cfg       ServerConfig
	closeOnce sync.Once
}

// StartServer starts an embedded etcd and waits until it serves clients.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("%w: embedded etcd: empty data dir", kvstore.ErrInvalidConfig)
	}
	if cfg.Name == "" {
		cfg.Name = "clustermesh"
	}
	if len(cfg.ListenClientURLs) == 0 {
		cfg.ListenClientURLs = []string{"http://127.0.0.1:0"}
	}
	if cfg.ListenPeerURL == "" {
		cfg.ListenPeerURL = "http://127.0.0.1:0"
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, fmt.Errorf("%w: embedded etcd: cert and key files must be set together", kvstore.ErrInvalidConfig)
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	ec.ListenClientUrls = nil // replace the default localhost:2379
	for _, raw := range cfg.ListenClientURLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: embedded etcd: client URL %q: %w", kvstore.ErrInvalidConfig, raw, err)
		}
		if u.Scheme == "https" && cfg.CertFile == "" {
			return nil, fmt.Errorf("%w: embedded etcd: client URL %q is https but no certificate is configured", kvstore.ErrInvalidConfig, raw)
		}
		ec.ListenClientUrls = append(ec.ListenClientUrls, *u)
	}
	ec.AdvertiseClientUrls = ec.ListenClientUrls
	pu, err := url.Parse(cfg.ListenPeerURL)
	if err != nil {
		return nil, fmt.Errorf("%w: embedded etcd: peer URL %q: %w", kvstore.ErrInvalidConfig, cfg.ListenPeerURL, err)
	}
	ec.ListenPeerUrls = []url.URL{*pu}
	ec.AdvertisePeerUrls = []url.URL{*pu}
	ec.InitialCluster = ec.InitialClusterFromName(cfg.Name)
	if cfg.InitialCluster != "" {
		ec.InitialCluster = cfg.InitialCluster
	}
	ec.ClientTLSInfo = transport.TLSInfo{
		CertFile:       cfg.CertFile,
		KeyFile:        cfg.KeyFile,
		TrustedCAFile:  cfg.TrustedCAFile,
		ClientCertAuth: cfg.TrustedCAFile != "",
	}
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	switch {
	case cfg.AutoCompactionRetention == 0:
		ec.AutoCompactionMode, ec.AutoCompactionRetention = "revision", "10000"
	case cfg.AutoCompactionRetention > 0:
		ec.AutoCompactionMode, ec.AutoCompactionRetention = "revision", fmt.Sprint(cfg.AutoCompactionRetention)
	}

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.DataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s failed while starting: %w", cfg.DataDir, err)
	case <-time.After(time.Minute):
		e.Close()
		return nil, errors.New("embedded etcd did not become ready within 1m")
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	return &Server{etcd: e, cfg: cfg}, nil
}

// ClientURLs returns the URLs clients reach the server at, with the ports
// actually bound.
func (s *Server) ClientURLs() []string {
	out := make([]string, 0, len(s.etcd.Clients))
	scheme := "http"
	if s.cfg.CertFile != "" {
		scheme = "https"
	}
	for _, l := range s.etcd.Clients {
		out = append(out, scheme+"://"+l.Addr().String())
	}
	return out
}

// Err reports a fatal server error after start.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the server; the data directory is kept. It may be called more
// than once.
func (s *Server) Close() { s.closeOnce.Do(s.etcd.Close) }

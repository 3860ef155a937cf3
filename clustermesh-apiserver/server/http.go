package server

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveHTTP serves /healthz and /readyz on HealthAddr and /metrics on
// MetricsAddr (the same listener when they are equal) until ctx ends.
func (s *Server) serveHTTP(ctx context.Context) error {
	health := http.NewServeMux()
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	health.HandleFunc("/readyz", s.readyz)
	metrics := promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
	servers := map[string]*http.ServeMux{}
	if s.cfg.HealthAddr != "" {
		servers[s.cfg.HealthAddr] = health
	}
	if s.cfg.MetricsAddr != "" {
		mux, ok := servers[s.cfg.MetricsAddr]
		if !ok {
			mux = http.NewServeMux()
			servers[s.cfg.MetricsAddr] = mux
		}
		mux.Handle("/metrics", metrics)
	}
	errs := make(chan error, len(servers))
	var running []*http.Server
	var wg sync.WaitGroup
	defer wg.Wait()
	for addr, mux := range servers {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		running = append(running, srv)
		wg.Go(func() { errs <- srv.Serve(l) })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, srv := range running {
		_ = srv.Shutdown(sctx)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// readyz answers 200 once every prefix is exported and its synced marker
// written, with the per-prefix status as JSON.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	st := s.exporter.Status()
	w.Header().Set("Content-Type", "application/json")
	if !s.exporter.Synced() {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(st)
}

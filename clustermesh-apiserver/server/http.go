package server

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/clustermesh/clustermesh/internal/httpserve"
)

// serveHTTP serves /healthz and /readyz on HealthAddr and /metrics on
// MetricsAddr (the same listener when they are equal) until ctx ends.
func (s *Server) serveHTTP(ctx context.Context) error {
	var extra map[string]http.Handler
	if s.cache != nil {
		extra = map[string]http.Handler{CachePath: http.HandlerFunc(s.cacheStatus)}
	}
	return httpserve.ServeWith(ctx, s.cfg.HealthAddr, s.cfg.MetricsAddr, s.readyz, s.registry, extra)
}

// CachePath serves the cache of remote state's per-peer status (JSON, a
// list of kvstoremesh.PeerStatus) on the health address.
const CachePath = "/v1/cache"

func (s *Server) cacheStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.cache.Status())
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

// Package httpserve serves a component's health, readiness and Prometheus
// metrics over TCP, for the clustermesh-apiserver and the agent alike, and
// holds the helpers every HTTP server of the project shares (Run,
// WriteJSON).
package httpserve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Serve serves /healthz (always ok) and /readyz (ready) on healthAddr and
// /metrics (from reg) on metricsAddr, one listener when they are equal; an
// empty address serves nothing. It returns when ctx ends (nil) or a server
// fails.
func Serve(ctx context.Context, healthAddr, metricsAddr string, ready http.HandlerFunc, reg prometheus.Gatherer) error {
	return ServeWith(ctx, healthAddr, metricsAddr, ready, reg, nil)
}

// ServeWith is Serve with more handlers on healthAddr, by path.
func ServeWith(ctx context.Context, healthAddr, metricsAddr string, ready http.HandlerFunc, reg prometheus.Gatherer,
	extra map[string]http.Handler,
) error {
	servers := map[string]*http.ServeMux{}
	if healthAddr != "" {
		health := http.NewServeMux()
		health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		health.HandleFunc("/readyz", ready)
		for path, h := range extra {
			health.Handle(path, h)
		}
		servers[healthAddr] = health
	}
	if metricsAddr != "" {
		mux, ok := servers[metricsAddr]
		if !ok {
			mux = http.NewServeMux()
			servers[metricsAddr] = mux
		}
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	errs := make(chan error, len(servers))
	var running []*http.Server
	var wg sync.WaitGroup
	defer wg.Wait()
	var err error
	for addr, mux := range servers {
		l, lerr := net.Listen("tcp", addr)
		if lerr != nil {
			err = fmt.Errorf("listen on %s: %w", addr, lerr)
			break
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		running = append(running, srv)
		wg.Go(func() { errs <- srv.Serve(l) })
	}
	if err == nil {
		select {
		case <-ctx.Done():
		case err = <-errs:
		}
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

// Run serves h on l until ctx ends or the server fails, then shuts it down
// (waiting up to 5 s for requests in flight). Requests' contexts end with
// ctx, so that long requests (streams) end with the server. It returns nil
// when ctx ended.
func Run(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() { errc <- srv.Serve(l) })
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// WriteJSON answers code with v as indented JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Package httpserve serves a component's health, readiness and Prometheus
// metrics over TCP, for the clustermesh-apiserver and the agent alike.
package httpserve

import (
	"context"
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
	servers := map[string]*http.ServeMux{}
	if healthAddr != "" {
		health := http.NewServeMux()
		health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		health.HandleFunc("/readyz", ready)
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

package status_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/agent/flows"
	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/agent/policy"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/cli/status"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

// The sidecar relays GET /v1/flows from the agent's socket as it streams:
// its query, its errors, and new flows as they come.
func TestSidecarRelaysFlows(t *testing.T) {
	dir, err := os.MkdirTemp("", "cm-sidecar")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "agent.sock")
	rec := flows.NewRecorder(flows.Config{Node: "n1"})
	mux := http.NewServeMux()
	localapi.New(localapi.Config{Flows: rec}).Register(mux)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- localapi.Serve(ctx, socket, mux) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 5*time.Second, "the agent's socket", func() bool { _, err := os.Stat(socket); return err == nil })

	sidecar := httptest.NewServer(status.Handler(socket))
	defer sidecar.Close()

	resp, err := sidecar.Client().Get(sidecar.URL + "/v1/flows?port=0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad query: %s, want the agent's 400", resp.Status)
	}

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, sidecar.URL+"/v1/flows?follow=true&verdict=dropped", nil)
	resp, err = sidecar.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() flowapi.Line {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("stream ended: %v", sc.Err())
		}
		var l flowapi.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	if l := next(); l.Status == nil || l.Status.Node != "n1" {
		t.Fatalf("first line %+v, want the status", l)
	}
	if l := next(); l.Status == nil {
		t.Fatalf("second line %+v, want the end of the held flows", l)
	}
	rec.Ring().Add(&flowapi.Flow{Node: "n1", Verdict: "forwarded", Reason: "policy-allow"})
	rec.Ring().Add(&flowapi.Flow{Node: "n1", Verdict: "dropped", Reason: "policy-denied"})
	if l := next(); l.Flow == nil || l.Flow.Reason != "policy-denied" {
		t.Fatalf("line %+v, want the new drop, relayed as it came", l)
	}
}

// The sidecar relays every read route the CLI's read commands ask through
// the pod proxy (agents.Proxy): policy trace and get, identity, endpoint
// and service list. endpoint list reads GET /v1/policies for the
// enforcement of each endpoint.
func TestSidecarRelaysReadRoutes(t *testing.T) {
	dir, err := os.MkdirTemp("", "cm-sidecar")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "agent.sock")
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	localapi.New(localapi.Config{Cluster: "c1", Node: "n1", State: st,
		PolicyProblems: func() map[policy.PolicyKey][]policy.Problem { return nil }}).Register(mux)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- localapi.Serve(ctx, socket, mux) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 5*time.Second, "the agent's socket", func() bool { _, err := os.Stat(socket); return err == nil })

	sidecar := httptest.NewServer(status.Handler(socket))
	defer sidecar.Close()
	get := func(base, path string) (int, string) {
		t.Helper()
		c := sidecar.Client()
		if base == "" { // the agent itself, on its socket
			base = "http://agent"
			c = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", socket)
			}}}
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/v1/policies", "/v1/endpoints", "/v1/identities", "/v1/services", "/v1/services/detail",
		"/v1/policy/endpoints", "/v1/policy/trace?from=default/a&to=default/b&port=80"} {
		wantCode, want := get("", path)
		if wantCode == http.StatusNotFound {
			t.Fatalf("GET %s: the agent does not serve it", path)
		}
		if code, body := get(sidecar.URL, path); code != wantCode || body != want {
			t.Errorf("GET %s through the sidecar: %d %q, want the agent's %d %q", path, code, body, wantCode, want)
		}
	}
}

package localapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/agent/flows"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// flowsFixture: at t0+i s, flow i; x-wing (cluster1) to rebel-base
// (cluster2) on port 80, forwarded then dropped, and a UDP drop from
// tie-fighter to the world.
func flowsFixture() []flowapi.Flow {
	xwing := flowapi.Endpoint{IP: netip.MustParseAddr("10.1.0.5"), Port: 43210, Identity: 65546, Cluster: "cluster1", Namespace: "default", Pod: "x-wing",
		Labels: []string{"k8s:app=x-wing"}}
	rebel := flowapi.Endpoint{IP: netip.MustParseAddr("10.2.0.7"), Port: 80, Identity: 131092, Cluster: "cluster2", Namespace: "default", Pod: "rebel-base",
		Labels: []string{"k8s:app=rebel-base"}}
	tie := flowapi.Endpoint{IP: netip.MustParseAddr("10.1.0.9"), Port: 5000, Identity: 65547, Cluster: "cluster1", Namespace: "empire", Pod: "tie-fighter"}
	world := flowapi.Endpoint{IP: netip.MustParseAddr("1.1.1.1"), Port: 53, Identity: 2, Reserved: "world"}
	return []flowapi.Flow{
		{Time: t0.Add(1 * time.Second), Node: "n1", Direction: "egress", Verdict: "forwarded", Reason: "policy-allow", Protocol: flowapi.ProtoTCP,
			TCPFlags: flowapi.SYN, EndpointID: 3, Src: xwing, Dst: rebel, Service: &flowapi.ServiceTranslation{Namespace: "default", Name: "rebel-base",
				Frontend: netip.MustParseAddrPort("10.96.0.10:80"), Backend: netip.AddrPortFrom(rebel.IP, rebel.Port), BackendCluster: "cluster2"}},
		{Time: t0.Add(2 * time.Second), Node: "n1", Direction: "egress", Verdict: "dropped", Reason: "policy-denied", Protocol: flowapi.ProtoTCP,
			TCPFlags: flowapi.SYN, EndpointID: 3, Src: xwing, Dst: rebel, Bytes: 60},
		{Time: t0.Add(3 * time.Second), Node: "n1", Direction: "egress", Verdict: "dropped", Reason: "policy-deny-rule", Protocol: flowapi.ProtoUDP,
			EndpointID: 4, Src: tie, Dst: world},
	}
}

// recorderWith returns a recorder holding fs (no datapath).
func recorderWith(fs []flowapi.Flow, cfg flows.Config) *flows.Recorder {
	rec := flows.NewRecorder(cfg)
	for i := range fs {
		rec.Ring().Add(&fs[i])
	}
	return rec
}

// readLines decodes a body of newline-delimited flow lines.
func readLines(t *testing.T, body string) []flowapi.Line {
	t.Helper()
	var out []flowapi.Line
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var l flowapi.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// flowTimes returns the seconds after t0 of the flows of lines.
func flowTimes(lines []flowapi.Line) []int {
	out := []int{}
	for _, l := range lines {
		if l.Flow != nil {
			out = append(out, int(l.Flow.Time.Sub(t0)/time.Second))
		}
	}
	return out
}

func TestFlowsQuery(t *testing.T) {
	a := New(Config{Flows: recorderWith(flowsFixture(), flows.Config{Node: "n1", Capacity: 8,
		DatapathLost: func() (uint64, error) { return 4, nil }})})
	for _, tc := range []struct {
		query string
		want  []int
	}{
		{"", []int{1, 2, 3}},
		{"?last=2", []int{2, 3}},
		{"?since=2025-06-01T12:00:01Z", []int{2, 3}},
		{"?since=2025-06-01T14:00:02%2B02:00&last=5", []int{3}}, // 12:00:02Z, another zone
		{"?verdict=dropped", []int{2, 3}},
		{"?verdict=forwarded", []int{1}},
		{"?from-pod=default/x-wing&verdict=dropped", []int{2}},
		{"?to-pod=default/rebel-base&last=1", []int{2}},
		{"?from-cluster=cluster1&to-cluster=cluster2", []int{1, 2}},
		{"?namespace=empire", []int{3}},
		{"?label=app=rebel-base", []int{1, 2}},
		{"?identity=world", []int{3}},
		{"?identity=65546&identity=2", []int{1, 2, 3}},
		{"?protocol=udp", []int{3}},
		{"?port=53", []int{3}},
		{"?port=80&protocol=udp", []int{}},
		{"?service=default/rebel-base", []int{1}},
		{"?service=default/rebel-base&verdict=dropped", []int{}},
		{"?service=default/death-star", []int{}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body := get(t, a, "/v1/flows"+tc.query)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, body)
			}
			lines := readLines(t, body)
			if len(lines) == 0 || lines[0].Status == nil {
				t.Fatalf("first line is not the status: %s", body)
			}
			st := lines[0].Status
			if st.Node != "n1" || st.Capacity != 8 || st.Held != 3 || st.Seen != 3 || st.Lost.Datapath != 4 {
				t.Errorf("status %+v", st)
			}
			if d := cmp.Diff(tc.want, flowTimes(lines[1:])); d != "" {
				t.Errorf("flows (-want +got):\n%s", d)
			}
		})
	}
}

func TestFlowsErrors(t *testing.T) {
	a := New(Config{Flows: flows.NewRecorder(flows.Config{})})
	for _, tc := range []struct {
		api   *API
		query string
		code  int
		msg   string
	}{
		{a, "?since=yesterday", http.StatusBadRequest, `since=\"yesterday\": want an RFC 3339 time`},
		{a, "?last=-3", http.StatusBadRequest, `last=\"-3\": want a positive number`},
		{a, "?from-pod=x-wing", http.StatusBadRequest, `from-pod=\"x-wing\": want \u003cnamespace\u003e/\u003cpod\u003e`},
		{a, "?verdict=denied", http.StatusBadRequest, `verdict=\"denied\": want forwarded or dropped`},
		{a, "?port=99999", http.StatusBadRequest, `port=\"99999\": want a port number`},
		{a, "?service=rebel-base", http.StatusBadRequest, `service=\"rebel-base\": want \u003cnamespace\u003e/\u003cservice\u003e`},
		{a, "?follow=sometimes", http.StatusBadRequest, `follow=\"sometimes\"`},
		// --datapath=none: no recorder.
		{New(Config{}), "", http.StatusNotFound, "flows are recorded only with --datapath=bpf"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body := get(t, tc.api, "/v1/flows"+tc.query)
			if code != tc.code || !strings.Contains(body, tc.msg) {
				t.Errorf("%d %s, want %d with %q", code, body, tc.code, tc.msg)
			}
		})
	}
}

// follow=true streams: the held flows asked for, then new ones as they are
// recorded, filtered; a status line when the datapath lost events.
func TestFlowsFollow(t *testing.T) {
	var lost atomic.Uint64
	fs := flowsFixture()
	rec := recorderWith(fs[:1], flows.Config{Node: "n1", DatapathLost: func() (uint64, error) { return lost.Load(), nil }})
	mux := http.NewServeMux()
	New(Config{Flows: rec}).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/v1/flows?follow=true&last=5&protocol=tcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type %q", ct)
	}
	lines := make(chan flowapi.Line)
	go func() {
		defer close(lines)
		dec := json.NewDecoder(resp.Body)
		for {
			var l flowapi.Line
			if dec.Decode(&l) != nil {
				return
			}
			lines <- l
		}
	}()
	next := func(what string) flowapi.Line {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s: the stream ended", what)
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing in 10s", what)
		}
		return flowapi.Line{}
	}
	if l := next("status"); l.Status == nil || l.Status.Held != 1 {
		t.Fatalf("first line %+v, want the status", l)
	}
	if l := next("held flow"); l.Flow == nil || !l.Flow.Time.Equal(fs[0].Time) {
		t.Fatalf("second line %+v, want the held flow", l)
	}
	if l := next("end of the held flows"); l.Status == nil {
		t.Fatalf("third line %+v, want a status line (the end of the held flows)", l)
	}
	// The UDP flow does not pass the filter; the TCP drop does.
	rec.Ring().Add(&fs[2])
	rec.Ring().Add(&fs[1])
	if l := next("new flow"); l.Flow == nil || !l.Flow.Time.Equal(fs[1].Time) || l.Flow.Verdict != "dropped" {
		t.Fatalf("line %+v, want the new TCP drop", l)
	}
	lost.Store(9)
	if l := next("lost events"); l.Status == nil || l.Status.Lost.Datapath != 9 {
		t.Fatalf("line %+v, want a status with 9 lost in the datapath", l)
	}
}

// A stream ends when the API's server stops (its requests' contexts end
// with it), so that the agent stops without waiting for followers.
func TestFlowsFollowEndsWithServer(t *testing.T) {
	dir, err := os.MkdirTemp("", "cm-flows")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "agent.sock")
	mux := http.NewServeMux()
	New(Config{Flows: flows.NewRecorder(flows.Config{Node: "n1"})}).Register(mux)
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, socket, mux) }()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	var resp *http.Response
	for range 100 { // the socket appears once it accepts connections
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://agent/v1/flows?follow=true", nil)
		if resp, err = c.Do(req); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for range 2 { // the status and the end of the held flows
		if !sc.Scan() {
			t.Fatalf("stream ended early: %v", sc.Err())
		}
	}
	stop()
	ended := make(chan struct{})
	go func() {
		for sc.Scan() {
		}
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end with the server")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// BenchmarkFollowerPerFlow is what a follower (observe --follow) costs the
// agent per flow: reading it from the ring, filtering, encoding its line.
func BenchmarkFollowerPerFlow(b *testing.B) {
	fs := flowsFixture()
	for i := range fs {
		fs[i].Src.Labels = []string{"k8s:app=x-wing", "k8s:io.cilium.k8s.policy.cluster=cluster1", "k8s:io.kubernetes.pod.namespace=default"}
		fs[i].Dst.Labels = []string{"k8s:app=rebel-base", "k8s:io.cilium.k8s.policy.cluster=cluster2", "k8s:io.kubernetes.pod.namespace=default"}
	}
	rec := flows.NewRecorder(flows.Config{Node: "n1", Capacity: 4096})
	for range 4096 / len(fs) {
		for i := range fs {
			rec.Ring().Add(&fs[i])
		}
	}
	w := httptest.NewRecorder()
	s := &flowStream{w: w, bw: bufio.NewWriter(io.Discard), rec: rec, filter: flowapi.Filter{Protocol: []flowapi.Protocol{flowapi.ProtoTCP, flowapi.ProtoUDP}}}
	s.enc = json.NewEncoder(s.bw)
	var buf []flowapi.Flow
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if n == 0 {
			buf, _, _ = rec.Ring().Read(rec.Ring().Next()-4000, s.match, buf[:0])
		}
		s.flowLine(&buf[n%len(buf)])
		n = (n + 1) % len(buf)
	}
}

// A follower slower than the flows (the ring overwrites them before it
// reads them) is told how many it missed, in a status line.
func TestFlowsFollowSlowReader(t *testing.T) {
	rec := flows.NewRecorder(flows.Config{Node: "n1", Capacity: 16})
	mux := http.NewServeMux()
	New(Config{Flows: rec}).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/v1/flows?follow=true", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for range 2 { // the status and the end of the held flows
		var l flowapi.Line
		if err := dec.Decode(&l); err != nil || l.Status == nil {
			t.Fatalf("line %+v, %v: want a status", l, err)
		}
	}
	// 100,000 flows added in a tight loop (about 17 ns each) against a
	// ring of 16: the stream (about a microsecond per flow) falls behind.
	f := flowsFixture()[0]
	for range 100000 {
		rec.Ring().Add(&f)
	}
	var got, missed uint64
	deadline := time.Now().Add(10 * time.Second)
	for missed == 0 && time.Now().Before(deadline) {
		var l flowapi.Line
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		if l.Flow != nil {
			got++
		}
		if l.Status != nil {
			missed = l.Status.Lost.Stream
		}
	}
	if missed == 0 || got+missed > 100000 {
		t.Fatalf("%d flows read, %d said missed: want some missed, at most 100000 in all", got, missed)
	}
	t.Logf("%d flows read, %d missed and said so", got, missed)
}

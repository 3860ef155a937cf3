package cniserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clustermesh/clustermesh/agent/cniapi"
	"github.com/clustermesh/clustermesh/agent/cnistore"
	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/state"
)

// objects is a reconciler's per-object status, set by the test.
type objects[K comparable, V any] struct {
	mu     sync.Mutex
	byKey  map[K]reconciler.ObjectStatus[V]
	passed chan struct{}
}

func newObjects[K comparable, V any]() *objects[K, V] {
	return &objects[K, V]{byKey: map[K]reconciler.ObjectStatus[V]{}, passed: make(chan struct{})}
}

func (o *objects[K, V]) Object(k K) reconciler.ObjectStatus[V] {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.byKey[k]
}

func (o *objects[K, V]) Watch() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.passed
}

// hold makes the datapath hold v for k, as a reconciler's pass would.
func (o *objects[K, V]) hold(k K, v V) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.byKey[k] = reconciler.ObjectStatus[V]{Applied: v, Held: true}
	close(o.passed)
	o.passed = make(chan struct{})
}

// The CNI routes, with the loopback interface as the pod's host side (it
// exists in every network namespace): validation, an ADD that waits for
// the pod's policy and attachment, the CHECK and the DEL.
func TestCNIRoutes(t *testing.T) {
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	policies, attachments := newObjects[uint16, datapath.EndpointPolicy](), newObjects[int, datapath.Attachment]()
	mux := http.NewServeMux()
	New(Config{Node: "n1", State: st, Policies: policies, Attachments: attachments}).Register(mux)
	do := func(method, path, body string) (int, string) {
		t.Helper()
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body)))
		return w.Code, w.Body.String()
	}
	const path = "/v1/cni/attachments/c1/eth0"
	const add = `{"hostIfName":"lo","ips":["10.1.0.5"],"podNamespace":"default","podName":"p"}`

	for _, tc := range []struct {
		name, path, body, msg string
	}{
		{"not JSON", path, "{", "request body: not an attachment"},
		{"bad container ID", "/v1/cni/attachments/-c1/eth0", add, "container ID"},
		{"no pod", path, `{"hostIfName":"lo"}`, "podNamespace and podName are required"},
		{"bad IP", path, `{"hostIfName":"lo","ips":["10.1.0.500"],"podNamespace":"default","podName":"p"}`, `ips: \"10.1.0.500\" is not an IP address`},
		{"bad wait", path + "?wait=-1s", add, "want a positive duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := do(http.MethodPut, tc.path, tc.body); code != http.StatusBadRequest || !strings.Contains(body, tc.msg) {
				t.Errorf("PUT: %d %s, want 400 with %q", code, body, tc.msg)
			}
		})
	}
	if code, body := do(http.MethodPut, path+"?wait=50ms", add); code != http.StatusServiceUnavailable ||
		!strings.Contains(body, "pod default/p is not known on node n1") {
		t.Fatalf("PUT before the pod is known: %d %s, want 503 saying so", code, body)
	}

	// The pod's policy is computed and the datapath holds both: the ADD
	// answers.
	pol := datapath.EndpointPolicy{Identity: 65537}
	if err := st.Update(func(w *state.WriteTxn) error {
		return w.UpsertEndpointPolicy(state.EndpointPolicyRow{Key: "default/p", DatapathID: 7, Policy: pol})
	}); err != nil {
		t.Fatal(err)
	}
	at, ok := st.Snapshot().Attachment(datapath.AttachmentKey("c1", "eth0"))
	if !ok {
		t.Fatal("the attachment is not in the state after the ADD")
	}
	policies.hold(7, pol)
	// Another endpoint's policy on the interface is not the pod's.
	attachments.hold(at.HostIfIndex, datapath.Attachment{IfName: "lo", EndpointID: 8})
	if code, body := do(http.MethodPut, path+"?wait=50ms", add); code != http.StatusServiceUnavailable ||
		!strings.Contains(body, "enforces the policy of endpoint 8, not the pod's (7)") {
		t.Fatalf("PUT while the interface has another endpoint's policy: %d %s, want 503 saying so", code, body)
	}
	attachments.hold(at.HostIfIndex, datapath.Attachment{IfName: "lo", EndpointID: 7})
	code, body := do(http.MethodPut, path, add)
	var got cniapi.Status
	if err := json.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil {
		t.Fatalf("PUT: %d %s (%v)", code, body, err)
	}
	want := cniapi.Status{ContainerID: "c1", IfName: "eth0", HostIfName: "lo", HostIfIndex: at.HostIfIndex, Attached: true, DatapathID: 7, Identity: 65537}
	if got != want {
		t.Errorf("PUT: %+v, want %+v", got, want)
	}
	if code, body := do(http.MethodGet, path, ""); code != http.StatusOK || !strings.Contains(body, `"attached": true`) {
		t.Errorf("GET: %d %s, want attached", code, body)
	}

	if code, body := do(http.MethodDelete, path, ""); code != http.StatusNoContent {
		t.Errorf("DELETE: %d %s, want 204", code, body)
	}
	if _, ok := st.Snapshot().Attachment(at.Key); ok {
		t.Error("the attachment is still in the state after the DEL")
	}
	if code, body := do(http.MethodGet, path, ""); code != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d %s, want 404", code, body)
	}
	if code, body := do(http.MethodDelete, path, ""); code != http.StatusNoContent {
		t.Errorf("DELETE of an unknown attachment: %d %s, want 204", code, body)
	}
}

// Load puts the stored attachments whose host interface still exists into
// the state, forgets the others, and marks Source initialized.
func TestLoad(t *testing.T) {
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Load(st, nil, "", nil); err != nil || !st.Initialized(Source) {
		t.Fatalf("Load without a store: %v, initialized %v", err, st.Initialized(Source))
	}

	st, err = state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := cnistore.Open(filepath.Join(t.TempDir(), "attachments"))
	if err != nil {
		t.Fatal(err)
	}
	lo, err := hostIfIndex("", "lo")
	if err != nil {
		t.Fatal(err)
	}
	live := state.AttachmentRow{Key: datapath.AttachmentKey("c1", "eth0"), ContainerID: "c1", IfName: "eth0",
		HostIfName: "lo", HostIfIndex: lo, Namespace: "default", Pod: "p1"}
	gone := state.AttachmentRow{Key: datapath.AttachmentKey("c2", "eth0"), ContainerID: "c2", IfName: "eth0",
		HostIfName: "cm-gone0", HostIfIndex: 4242, Namespace: "default", Pod: "p2"}
	for _, at := range []state.AttachmentRow{live, gone} {
		if err := store.Put(at); err != nil {
			t.Fatal(err)
		}
	}
	if err := Load(st, store, "", nil); err != nil {
		t.Fatal(err)
	}
	sn := st.Snapshot()
	if _, ok := sn.Attachment(live.Key); !ok {
		t.Error("the live attachment is not in the state")
	}
	if _, ok := sn.Attachment(gone.Key); ok {
		t.Error("the attachment of a gone interface is in the state")
	}
	if !st.Initialized(Source) {
		t.Error("Source not initialized")
	}
	stored, _, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].Key != live.Key {
		t.Errorf("stored after Load: %+v, want only %s", stored, live.Key)
	}
}

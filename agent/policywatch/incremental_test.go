package policywatch

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
)

// The controller's change-by-change view of identities and endpoints
// equals a full read of the state after every pass, through random
// upserts and deletes batched over several commits.
func TestIncrementalIdentitiesAndEndpoints(t *testing.T) {
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Cluster: "cluster1", Kube: fake.NewClientset(), Policies: &rest.RESTClient{}, State: st})
	if err != nil {
		t.Fatal(err)
	}
	sub := st.Subscribe(state.TableIdentities, state.TableEndpoints)
	defer sub.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	lbl := func(v int) identity.Labels {
		ls, err := identity.ParseLabels(fmt.Sprintf("k8s:app=a%d", v), "k8s:io.kubernetes.pod.namespace=default")
		if err != nil {
			t.Fatal(err)
		}
		return ls
	}
	for round := range 200 {
		if err := st.Update(func(w *state.WriteTxn) error {
			for range 1 + rng.IntN(5) {
				id := identity.NumericIdentity(1000 + rng.IntN(10))
				pod := fmt.Sprintf("p%d", rng.IntN(10))
				var err error
				switch rng.IntN(4) {
				case 0:
					err = w.UpsertIdentity("cluster1", id, lbl(rng.IntN(3)))
				case 1:
					err = w.DeleteIdentity("cluster1", id)
				case 2:
					err = w.UpsertEndpoint(state.Endpoint{Namespace: "default", Name: pod, ID: id, Labels: lbl(rng.IntN(3))})
				default:
					err = w.DeleteEndpoint("default", pod)
				}
				if err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if rng.IntN(3) > 0 {
			continue
		}
		if err := c.pass(sub); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		sn := st.Snapshot()
		want := map[identity.NumericIdentity]*state.IdentityRow{}
		sn.IdentityRows(func(r *state.IdentityRow) { want[r.ID] = r })
		if len(want) != len(c.identities) {
			t.Fatalf("round %d: the controller holds %d identities, the state %d", round, len(c.identities), len(want))
		}
		for id, r := range want {
			if c.identities[id] != r {
				t.Fatalf("round %d: identity %d is stale in the controller", round, id)
			}
		}
		wantEP := map[string]*state.Endpoint{}
		sn.EndpointRows(func(r *state.Endpoint) { wantEP[r.Namespace+"/"+r.Name] = r })
		if len(wantEP) != len(c.endpoints) {
			t.Fatalf("round %d: the controller holds %d endpoints, the state %d", round, len(c.endpoints), len(wantEP))
		}
		for k, r := range wantEP {
			if c.endpoints[k] != r {
				t.Fatalf("round %d: endpoint %s is stale in the controller", round, k)
			}
		}
		if got, want := len(c.engine.Endpoints()), len(wantEP); got != want {
			t.Fatalf("round %d: the engine has %d endpoints, want %d", round, got, want)
		}
	}
}

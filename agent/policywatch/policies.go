package policywatch

import (
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/clustermesh/clustermesh/agent/policy"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
)

// syncPolicies compiles the policies that changed since the last pass.
func (c *Controller) syncPolicies() {
	c.mu.Lock()
	dirty := c.dirty
	c.dirty = map[policy.PolicyKey]struct{}{}
	c.mu.Unlock()
	for key := range dirty {
		kind, objKey, _ := strings.Cut(string(key), "/")
		var obj runtime.Object
		var compiled *policy.Compiled
		var exists bool
		switch kind {
		case "k8s":
			raw, ok, _ := c.factory.Networking().V1().NetworkPolicies().Informer().GetIndexer().GetByKey(objKey)
			if np, isNP := raw.(*networkingv1.NetworkPolicy); ok && isNP {
				_, compiled = c.engine.CompileNetworkPolicy(np)
				obj, exists = np, true
			}
		case "cmnp":
			raw, ok, _ := c.cmnp.GetIndexer().GetByKey(objKey)
			if p, isP := raw.(*cmv1.ClusterMeshNetworkPolicy); ok && isP {
				_, compiled = c.engine.CompileClusterMeshPolicy(p)
				obj, exists = p, true
			}
		case "ccmnp":
			raw, ok, _ := c.ccmnp.GetIndexer().GetByKey(objKey)
			if p, isP := raw.(*cmv1.ClusterMeshClusterwideNetworkPolicy); ok && isP {
				_, compiled = c.engine.CompileClusterwidePolicy(p)
				obj, exists = p, true
			}
		}
		if !exists {
			c.engine.DeletePolicy(key)
			c.report(key, nil, nil)
			continue
		}
		c.engine.UpsertPolicy(key, compiled)
		c.report(key, obj, compiled.Problems())
	}
}

// Package examples holds manifests users start from; the test checks that
// each parses strictly and that every policy compiles without a problem.
package examples

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/agent/policy"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/services"
)

func TestExamples(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	e := policy.NewEngine(policy.Config{Cluster: "cluster1", DefaultLocalCluster: true})
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(raw), "\n---\n") {
			var meta struct{ Kind string }
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s[%d]: %v", f, i, err)
			}
			var problems []policy.Problem
			switch meta.Kind {
			case "Service":
				svc := &corev1.Service{}
				if err := yaml.UnmarshalStrict([]byte(doc), svc); err != nil {
					t.Fatalf("%s[%d]: %v", f, i, err)
				}
				ann, errs := services.ParseAnnotations(svc)
				if len(errs) > 0 || !ann.Global {
					t.Errorf("%s[%d]: annotations %+v, problems %v", f, i, ann, errs)
				}
				continue
			case "NetworkPolicy":
				np := &networkingv1.NetworkPolicy{}
				if err := yaml.UnmarshalStrict([]byte(doc), np); err != nil {
					t.Fatalf("%s[%d]: %v", f, i, err)
				}
				_, c := e.CompileNetworkPolicy(np)
				problems = c.Problems()
			case "ClusterMeshNetworkPolicy":
				p := &cmv1.ClusterMeshNetworkPolicy{}
				if err := yaml.UnmarshalStrict([]byte(doc), p); err != nil {
					t.Fatalf("%s[%d]: %v", f, i, err)
				}
				_, c := e.CompileClusterMeshPolicy(p)
				problems = c.Problems()
			default:
				t.Fatalf("%s[%d]: kind %q has no check here", f, i, meta.Kind)
			}
			if len(problems) > 0 {
				t.Errorf("%s[%d]: %v", f, i, problems)
			}
		}
	}
}

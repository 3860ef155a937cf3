//go:build linux

package bed

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
)

// Apply creates the objects of a YAML document (documents separated by
// "---"): Services, NetworkPolicies and ClusterMeshNetworkPolicies.
func (c *Cluster) Apply(ctx context.Context, manifest string) error {
	for i, doc := range strings.Split(manifest, "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return fmt.Errorf("manifest document %d: %w", i, err)
		}
		var err error
		switch meta.Kind {
		case "Service":
			o := &corev1.Service{}
			if err = yaml.UnmarshalStrict([]byte(doc), o); err == nil {
				_, err = c.Client.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			}
		case "NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			if err = yaml.UnmarshalStrict([]byte(doc), o); err == nil {
				_, err = c.Client.NetworkingV1().NetworkPolicies(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			}
		case "ClusterMeshNetworkPolicy":
			o := &cmv1.ClusterMeshNetworkPolicy{}
			if err = yaml.UnmarshalStrict([]byte(doc), o); err == nil {
				err = c.postPolicy(ctx, o)
			}
		case "":
			continue
		default:
			err = fmt.Errorf("kind %q: the bed applies Service, NetworkPolicy and ClusterMeshNetworkPolicy", meta.Kind)
		}
		if err != nil {
			return fmt.Errorf("cluster %s: apply %s (document %d): %w", c.Name, meta.Kind, i, err)
		}
	}
	return nil
}

func (c *Cluster) postPolicy(ctx context.Context, p *cmv1.ClusterMeshNetworkPolicy) error {
	rc, err := cmv1.NewRESTClient(c.Config)
	if err != nil {
		return err
	}
	return rc.Post().Namespace(p.Namespace).Resource(cmv1.NetworkPolicyResource.Resource).Body(p).Do(ctx).Error()
}

// Delete deletes an object Apply created: kind Service, NetworkPolicy or
// ClusterMeshNetworkPolicy.
func (c *Cluster) Delete(ctx context.Context, kind, namespace, name string) error {
	var err error
	switch kind {
	case "Service":
		err = c.Client.CoreV1().Services(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	case "NetworkPolicy":
		err = c.Client.NetworkingV1().NetworkPolicies(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	case "ClusterMeshNetworkPolicy":
		rc, rerr := cmv1.NewRESTClient(c.Config)
		if rerr != nil {
			return rerr
		}
		err = rc.Delete().Namespace(namespace).Resource(cmv1.NetworkPolicyResource.Resource).Name(name).Do(ctx).Error()
	default:
		err = fmt.Errorf("kind %q: the bed deletes Service, NetworkPolicy and ClusterMeshNetworkPolicy", kind)
	}
	if err != nil {
		return fmt.Errorf("cluster %s: delete %s %s/%s: %w", c.Name, kind, namespace, name, err)
	}
	return nil
}

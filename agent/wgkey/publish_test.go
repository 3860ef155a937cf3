package wgkey

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/clustermesh/clustermesh/internal/k8sconv"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

// The key is published once the Node exists (retried until then), other
// annotations are kept, and Publish returns when ctx ends.
func TestPublish(t *testing.T) {
	kube := fake.NewClientset()
	nodes := kube.CoreV1().Nodes()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Publish(ctx, nodes, "n1", "the-public-key", nil) }()

	// A first attempt fails: no such Node yet.
	testutil.Eventually(t, 10*time.Second, "a first attempt to patch the Node", func() bool {
		for _, a := range kube.Actions() {
			if a.GetVerb() == "patch" && a.GetResource().Resource == "nodes" {
				return true
			}
		}
		return false
	})
	if _, err := nodes.Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: "n1", Annotations: map[string]string{"other": "kept"},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	testutil.Eventually(t, 10*time.Second, "the key on the Node", func() bool {
		n, err := nodes.Get(t.Context(), "n1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got = n.Annotations
		return got[k8sconv.WireguardPubKeyAnnotation] == "the-public-key"
	})
	if got["other"] != "kept" {
		t.Errorf("annotations %v: the other annotation is lost", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Publish returned before ctx ended: %v", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish after ctx ended: %v, want context.Canceled", err)
	}
}

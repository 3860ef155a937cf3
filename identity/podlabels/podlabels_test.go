package podlabels

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestForPod(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x-wing-1", Labels: map[string]string{
			"app": "x-wing", "pod-template-hash": "7d9f8b6c5", "io.cilium.k8s.policy.cluster": "spoofed",
			"statefulset.kubernetes.io/pod-name": "x-wing-1", "app.kubernetes.io/name": "x-wing",
		}},
		Spec: corev1.PodSpec{ServiceAccountName: "pilot"},
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default", Labels: map[string]string{"team": "rebels"}}}
	got := ForPod("cluster1", pod, ns).SortedKVStoreString()
	want := "k8s:app=x-wing;k8s:app.kubernetes.io/name=x-wing;k8s:io.cilium.k8s.namespace.labels.team=rebels;" +
		"k8s:io.cilium.k8s.policy.cluster=cluster1;k8s:io.cilium.k8s.policy.serviceaccount=pilot;k8s:io.kubernetes.pod.namespace=default;"
	if got != want {
		t.Fatalf("labels\n got %s\nwant %s", got, want)
	}
	// Two pods of one workload differ only in noise labels: one identity.
	other := pod.DeepCopy()
	other.Labels["pod-template-hash"] = "other"
	if ForPod("cluster1", other, ns).SortedKVStoreString() != got {
		t.Fatal("pod-template-hash changed the identity")
	}
	// Without a service account the pod runs as "default".
	other.Spec.ServiceAccountName = ""
	if l, ok := ForPod("cluster1", other, nil).Get("io.cilium.k8s.policy.serviceaccount"); !ok || l.Value != "default" {
		t.Fatalf("service account label = %v %v, want default", l, ok)
	}
}

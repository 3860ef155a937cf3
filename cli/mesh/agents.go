package mesh

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// AgentPod is an agent pod of the cluster: the node it runs on ("pod
// <name>" while not scheduled), its name, and why it cannot be asked
// (it is not running).
type AgentPod struct {
	Node, Name string
	Err        error
}

// AgentPods lists the agent pods (NameLabel=AgentName) in namespace,
// sorted by node.
func AgentPods(ctx context.Context, kube kubernetes.Interface, namespace string) ([]AgentPod, error) {
	pods, err := kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: NameLabel + "=" + AgentName})
	if err != nil {
		return nil, fmt.Errorf("list agent pods (%s=%s) in namespace %s: %w", NameLabel, AgentName, namespace, err)
	}
	items := slices.Clone(pods.Items)
	slices.SortFunc(items, func(a, b corev1.Pod) int { return strings.Compare(a.Spec.NodeName, b.Spec.NodeName) })
	out := make([]AgentPod, 0, len(items))
	for _, pod := range items {
		ap := AgentPod{Node: cmp.Or(pod.Spec.NodeName, "pod "+pod.Name), Name: pod.Name}
		if pod.Status.Phase != corev1.PodRunning {
			ap.Err = fmt.Errorf("pod %s is %s", pod.Name, cmp.Or(string(pod.Status.Phase), "not scheduled"))
		}
		out = append(out, ap)
	}
	return out, nil
}

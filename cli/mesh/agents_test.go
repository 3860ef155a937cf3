package mesh

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestAgentPods(t *testing.T) {
	pod := func(name, node string, phase corev1.PodPhase, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", Labels: labels},
			Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
	}
	agent := map[string]string{NameLabel: AgentName}
	kube := fake.NewClientset(
		pod("agent-b", "node-b", corev1.PodRunning, agent),
		pod("agent-a", "node-a", corev1.PodPending, agent),
		pod("agent-x", "", "", agent),
		pod("other", "node-a", corev1.PodRunning, map[string]string{NameLabel: "something-else"}),
	)
	got, err := AgentPods(t.Context(), kube, "kube-system")
	if err != nil {
		t.Fatal(err)
	}
	var summary [][3]string
	for _, p := range got {
		e := ""
		if p.Err != nil {
			e = p.Err.Error()
		}
		summary = append(summary, [3]string{p.Node, p.Name, e})
	}
	want := [][3]string{
		{"pod agent-x", "agent-x", "pod agent-x is not scheduled"},
		{"node-a", "agent-a", "pod agent-a is Pending"},
		{"node-b", "agent-b", ""},
	}
	if !reflect.DeepEqual(summary, want) {
		t.Errorf("AgentPods:\n%q\nwant\n%q", summary, want)
	}
}

// Package podlabels derives a pod's security labels from Kubernetes objects:
// the same function in the clustermesh-apiserver (which allocates the
// identity) and the agent (which looks it up), so that both agree.
//
// Rules: labels that change for every pod of a workload (pod-template-hash,
// controller-revision-hash, ...) are left out, or every pod would get its own
// identity; the cluster, namespace and service-account labels always win.
package podlabels

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/clustermesh/clustermesh/identity"
)

// noiseKeys are pod label keys that never take part in an identity.
var noiseKeys = map[string]struct{}{
	"pod-template-hash":        {},
	"controller-revision-hash": {},
	"pod-template-generation":  {},
	"controller-uid":           {},
	"job-name":                 {},
	"etcd_node":                {},
}

// noisePrefixes are key prefixes that never take part in an identity.
var noisePrefixes = []string{
	"statefulset.kubernetes.io/",
	"batch.kubernetes.io/",
	"apps.kubernetes.io/pod-index",
	"controller.kubernetes.io/",
}

// Relevant reports whether a pod label key takes part in identities.
func Relevant(key string) bool {
	if _, ok := noiseKeys[key]; ok {
		return false
	}
	for _, p := range noisePrefixes {
		if strings.HasPrefix(key, p) {
			return false
		}
	}
	return true
}

// ForPod returns the security labels of pod in cluster; ns may be nil when
// the namespace is not known (its labels are then left out).
func ForPod(cluster string, pod *corev1.Pod, ns *corev1.Namespace) identity.Labels {
	podLabels := make(map[string]string, len(pod.Labels))
	for k, v := range pod.Labels {
		if Relevant(k) {
			podLabels[k] = v
		}
	}
	var nsLabels map[string]string
	if ns != nil {
		nsLabels = ns.Labels
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return identity.PodLabels(cluster, pod.Namespace, sa, podLabels, nsLabels)
}

// UsesIdentity reports whether a pod needs an identity: it runs in the pod
// network and has not terminated.
func UsesIdentity(p *corev1.Pod) bool {
	return !p.Spec.HostNetwork && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed &&
		p.DeletionTimestamp == nil
}

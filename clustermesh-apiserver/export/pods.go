package export

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/identity/podlabels"
	"github.com/clustermesh/clustermesh/internal/k8sconv"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// errIdentityPending: the pod's identity is not allocated yet; the pod is
// queued again when it appears.
var errIdentityPending = errors.New("identity not allocated yet")

func (e *Exporter) reconcilePod(_ context.Context, key string) error {
	want, err := e.desiredIPs(key)
	if err != nil {
		return err
	}
	e.mu.Lock()
	old := e.podIPs[key]
	var stale []string
	for _, k := range old {
		if _, keep := want[k]; !keep && e.ipOwner[k] == key {
			delete(e.ipOwner, k)
			stale = append(stale, k)
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
		e.ipOwner[k] = key
	}
	if len(keys) == 0 {
		delete(e.podIPs, key)
	} else {
		e.podIPs[key] = keys
	}
	e.mu.Unlock()
	for _, k := range stale {
		e.pods.store.Delete(k)
	}
	for k, v := range want {
		if err := e.pods.store.Upsert(k, v); err != nil {
			return err
		}
	}
	return nil
}

// desiredIPs returns the ip entries the pod should have (none when it is
// gone, terminated, in the host network or without IP).
func (e *Exporter) desiredIPs(key string) (map[string][]byte, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, nil //nolint:nilerr // a malformed key has no pod
	}
	pod, err := e.factory.Core().V1().Pods().Lister().Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		e.clearReport("pod", key)
		e.untrack(key)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get pod %s: %w", key, err)
	}
	if !podlabels.UsesIdentity(pod) {
		e.untrack(key)
		return nil, nil
	}
	if len(pod.Status.PodIPs) == 0 && pod.Status.PodIP == "" {
		if pod.Status.Phase == corev1.PodRunning {
			e.report(pod, key, "pod", "PodWithoutIP",
				fmt.Sprintf("pod %s is running but has no IP in status.podIPs; its CNI did not report one, so peers cannot reach it", key))
		}
		return nil, nil
	}
	nsObj, _ := e.factory.Core().V1().Namespaces().Lister().Get(ns)
	lkey := podlabels.ForPod(e.cfg.Cluster, pod, nsObj).SortedKVStoreString()
	// Track before the lookup: an identity event after it requeues the pod.
	e.track(lkey, key)
	id, ok := cmv1.LookupByLabels(e.identities.GetIndexer(), lkey)
	if !ok {
		return nil, fmt.Errorf("pod %s: %w", key, errIdentityPending)
	}
	ips := []string{pod.Status.PodIP}
	for _, p := range pod.Status.PodIPs {
		ips = append(ips, p.IP)
	}
	hostIP, _ := netip.ParseAddr(pod.Status.HostIP)
	out := map[string][]byte{}
	var problems []string
	for _, raw := range ips {
		if raw == "" {
			continue
		}
		ip, err := netip.ParseAddr(raw)
		if err != nil {
			problems = append(problems, fmt.Sprintf("pod %s: IP %q is not an IP address", key, raw))
			continue
		}
		ip = ip.Unmap()
		k := e.cfg.Paths.IP(ip)
		if _, done := out[k]; done {
			continue
		}
		entry := schema.IPEntry{
			IP:                net.IP(ip.AsSlice()),
			ID:                uint32(id),
			K8sNamespace:      ns,
			K8sPodName:        name,
			K8sServiceAccount: pod.Spec.ServiceAccountName,
			NamedPorts:        k8sconv.NamedPorts(pod),
		}
		if hostIP.IsValid() {
			entry.HostIP = net.IP(hostIP.Unmap().AsSlice())
		}
		b, err := entry.Marshal()
		if err != nil {
			return nil, fmt.Errorf("encode ip entry of pod %s: %w", key, err)
		}
		out[k] = b
	}
	if len(problems) > 0 {
		e.report(pod, key, "pod", "InvalidPodIP", problems[0])
	} else {
		e.clearReport("pod", key)
	}
	return out, nil
}

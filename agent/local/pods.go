package local

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/identity/podlabels"
	"github.com/clustermesh/clustermesh/internal/k8sconv"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// reconcilePod writes the ip entries of a pod and, for a pod of this node,
// its endpoint; a pod that is gone, terminated or in the host network has
// none.
func (w *Watcher) reconcilePod(_ context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil //nolint:nilerr // a malformed key names no pod
	}
	pod, err := w.factory.Core().V1().Pods().Lister().Pods(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		pod = nil
	case err != nil:
		return fmt.Errorf("get pod %s: %w", key, err)
	case !podlabels.UsesIdentity(pod):
		pod = nil
	}
	var ep *state.Endpoint
	var entries []state.IPCacheRow
	if pod != nil {
		nsObj, _ := w.factory.Core().V1().Namespaces().Lister().Get(pod.Namespace)
		ls := podlabels.ForPod(w.cfg.Cluster, pod, nsObj)
		// Track before the lookup: an identity event after it queues the
		// pod again.
		w.mu.Lock()
		w.trackLocked(key, ls.SortedKVStoreString())
		w.mu.Unlock()
		ep, entries = w.podState(pod, ls)
	}
	w.mu.Lock()
	defer w.mu.Unlock() // held across the write: ipOwner follows the state
	if ep == nil {
		w.untrackLocked(key)
	}
	want := make(map[netip.Prefix]bool, len(entries))
	for _, e := range entries {
		want[e.Prefix] = true
	}
	var stale []netip.Prefix
	for _, p := range w.podIPs[key] {
		if !want[p] && w.ipOwner[p] == key {
			stale = append(stale, p)
		}
	}
	var named []schema.NamedPort
	if ep != nil {
		named = ep.NamedPorts
	}
	touched := w.namedPortsLocked(key, named)
	err = w.cfg.State.Update(func(t *state.WriteTxn) error {
		for _, name := range touched {
			if err := t.SetNamedPort(name, w.namedPortList(name)); err != nil {
				return err
			}
		}
		for _, p := range stale {
			if err := t.DeleteIP(w.cfg.Cluster, p); err != nil {
				return err
			}
		}
		for _, e := range entries {
			if err := t.UpsertIP(e); err != nil {
				return err
			}
		}
		if ep != nil && pod.Spec.NodeName == w.cfg.NodeName {
			return t.UpsertEndpoint(*ep)
		}
		return t.DeleteEndpoint(ns, name)
	})
	if err != nil {
		return fmt.Errorf("write pod %s: %w", key, err)
	}
	for _, p := range stale {
		delete(w.ipOwner, p)
	}
	if len(entries) == 0 {
		delete(w.podIPs, key)
		return nil
	}
	ps := make([]netip.Prefix, 0, len(entries))
	for _, e := range entries {
		ps = append(ps, e.Prefix)
		w.ipOwner[e.Prefix] = key
	}
	w.podIPs[key] = ps
	return nil
}

// podState returns the endpoint a pod is (whichever node it runs on; the
// caller keeps only this node's) and its ip entries.
func (w *Watcher) podState(pod *corev1.Pod, ls identity.Labels) (*state.Endpoint, []state.IPCacheRow) {
	ep := &state.Endpoint{
		Namespace: pod.Namespace, Name: pod.Name, Labels: ls,
		ID: w.lookupIdentity(ls.SortedKVStoreString()), NamedPorts: k8sconv.NamedPorts(pod),
	}
	raw := []string{pod.Status.PodIP}
	for _, p := range pod.Status.PodIPs {
		raw = append(raw, p.IP)
	}
	for _, r := range raw {
		ip, err := netip.ParseAddr(r)
		if err != nil || ip.Zone() != "" {
			if r != "" {
				w.log.Debug("ignoring a pod IP that is not an address", "pod", pod.Namespace+"/"+pod.Name, "ip", r)
			}
			continue
		}
		if ip = ip.Unmap(); !slices.Contains(ep.IPs, ip) {
			ep.IPs = append(ep.IPs, ip)
		}
	}
	slices.SortFunc(ep.IPs, netip.Addr.Compare)
	hostIP, _ := netip.ParseAddr(pod.Status.HostIP)
	entries := make([]state.IPCacheRow, 0, len(ep.IPs))
	for _, ip := range ep.IPs {
		entries = append(entries, state.IPCacheRow{
			Prefix: netip.PrefixFrom(ip, ip.BitLen()), Cluster: w.cfg.Cluster, ID: ep.ID,
			HostIP: hostIP.Unmap(), Namespace: pod.Namespace, Pod: pod.Name,
		})
	}
	return ep, entries
}

// trackLocked records that pod key has the label set lkey.
func (w *Watcher) trackLocked(key, lkey string) {
	if old, ok := w.podLabels[key]; ok {
		if old == lkey {
			return
		}
		w.untrackLocked(key)
	}
	w.podLabels[key] = lkey
	set := w.byLabels[lkey]
	if set == nil {
		set = map[string]struct{}{}
		w.byLabels[lkey] = set
	}
	set[key] = struct{}{}
}

func (w *Watcher) untrackLocked(key string) {
	lkey, ok := w.podLabels[key]
	if !ok {
		return
	}
	delete(w.podLabels, key)
	delete(w.byLabels[lkey], key)
	if len(w.byLabels[lkey]) == 0 {
		delete(w.byLabels, lkey)
	}
}

// enqueueNamespace queues the pods of a namespace (its labels are part of
// their identity).
func (w *Watcher) enqueueNamespace(ns string) {
	pods, err := w.factory.Core().V1().Pods().Lister().Pods(ns).List(labels.Everything())
	if err != nil {
		return
	}
	for _, p := range pods {
		w.podCtl.Enqueue(p.Namespace + "/" + p.Name)
	}
}

// namedPortsLocked records the named ports of pod key and returns the
// names whose set changed.
func (w *Watcher) namedPortsLocked(key string, ports []schema.NamedPort) []string {
	old := w.podNamed[key]
	if slices.Equal(old, ports) {
		return nil
	}
	var touched []string
	for _, p := range old {
		if w.namedCount[p]--; w.namedCount[p] <= 0 {
			delete(w.namedCount, p)
		}
		touched = append(touched, p.Name)
	}
	for _, p := range ports {
		w.namedCount[p]++
		touched = append(touched, p.Name)
	}
	if len(ports) == 0 {
		delete(w.podNamed, key)
	} else {
		w.podNamed[key] = ports
	}
	slices.Sort(touched)
	return slices.Compact(touched)
}

// namedPortList returns the distinct ports of name, sorted (w.mu held).
func (w *Watcher) namedPortList(name string) []schema.NamedPort {
	var out []schema.NamedPort
	for p := range w.namedCount {
		if p.Name == name {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b schema.NamedPort) int {
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return strings.Compare(a.Protocol, b.Protocol)
	})
	return out
}

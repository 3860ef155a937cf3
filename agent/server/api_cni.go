package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/clustermesh/clustermesh/agent/cniapi"
	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
)

// sourceCNI is the state source of the attachments: initialized once the
// stored ones are loaded.
const sourceCNI = "local/cni"

// maxAttachWait bounds how long an ADD waits for the datapath.
const maxAttachWait = 2 * time.Minute

func (a *Agent) cniRoutes(mux *http.ServeMux) {
	const path = "/v1/cni/attachments/{containerID}/{ifName}"
	mux.HandleFunc("PUT "+path, a.putAttachment)
	mux.HandleFunc("GET "+path, a.getAttachment)
	mux.HandleFunc("DELETE "+path, a.deleteAttachment)
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(cniapi.Error{Error: err.Error()})
}

// attachmentOf validates an ADD and resolves the host-side interface.
func (a *Agent) attachmentOf(cid, ifName string, req cniapi.AttachmentRequest) (state.AttachmentRow, error) {
	var errs []error
	if err := cniapi.ValidateContainerID(cid); err != nil {
		errs = append(errs, err)
	}
	if err := cniapi.ValidateIfName("interface", ifName); err != nil {
		errs = append(errs, err)
	}
	if err := cniapi.ValidateIfName("hostIfName", req.HostIfName); err != nil {
		errs = append(errs, fmt.Errorf("%w (the host side of the pod's veth, from the main plugin's result)", err))
	}
	if req.PodNamespace == "" || req.PodName == "" {
		errs = append(errs, errors.New("podNamespace and podName are required (K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS, set by the container runtime)"))
	}
	at := state.AttachmentRow{
		Key: datapath.AttachmentKey(cid, ifName), ContainerID: cid, IfName: ifName, NetNS: req.NetNS,
		HostIfName: req.HostIfName, Namespace: req.PodNamespace, Pod: req.PodName,
	}
	for _, s := range req.IPs {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			errs = append(errs, fmt.Errorf("ips: %q is not an IP address", s))
			continue
		}
		if ip = ip.Unmap(); !slices.Contains(at.IPs, ip) {
			at.IPs = append(at.IPs, ip)
		}
	}
	slices.SortFunc(at.IPs, netip.Addr.Compare)
	if err := errors.Join(errs...); err != nil {
		return at, err
	}
	idx, err := hostIfIndex(a.cfg.EndpointNetNS, req.HostIfName)
	if err != nil {
		return at, fmt.Errorf("hostIfName: %w (the main plugin must create it in the agent's network namespace)", err)
	}
	at.HostIfIndex = idx
	return at, nil
}

// putAttachment is the CNI ADD: store the attachment, put it in the state
// and wait until the datapath enforces the pod's policy on it.
func (a *Agent) putAttachment(w http.ResponseWriter, r *http.Request) {
	var req cniapi.AttachmentRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: not an attachment (JSON of cniapi.AttachmentRequest): %w", err))
		return
	}
	at, err := a.attachmentOf(r.PathValue("containerID"), r.PathValue("ifName"), req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := a.storeAttachment(at); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	wait := maxAttachWait
	if v := r.URL.Query().Get(cniapi.WaitParam); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%s=%q: want a positive duration", cniapi.WaitParam, v))
			return
		}
		wait = min(d, wait)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	st, err := a.waitAttached(ctx, at)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, st)
}

func (a *Agent) storeAttachment(at state.AttachmentRow) error {
	a.cniMu.Lock()
	defer a.cniMu.Unlock()
	if a.cniStore != nil {
		if err := a.cniStore.Put(at); err != nil {
			return err
		}
	}
	return a.State.Update(func(t *state.WriteTxn) error { return t.UpsertAttachment(at) })
}

func (a *Agent) getAttachment(w http.ResponseWriter, r *http.Request) {
	key := datapath.AttachmentKey(r.PathValue("containerID"), r.PathValue("ifName"))
	at, ok := a.State.Snapshot().Attachment(key)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no attachment %s on this node", key))
		return
	}
	st, _ := a.attachmentStatus(at)
	writeJSON(w, st)
}

// deleteAttachment is the CNI DEL; the reconciler detaches.
func (a *Agent) deleteAttachment(w http.ResponseWriter, r *http.Request) {
	key := datapath.AttachmentKey(r.PathValue("containerID"), r.PathValue("ifName"))
	a.cniMu.Lock()
	defer a.cniMu.Unlock()
	if a.cniStore != nil {
		if err := a.cniStore.Delete(key); err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
	}
	if err := a.State.Update(func(t *state.WriteTxn) error { return t.DeleteAttachment(key) }); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// attachmentStatus reports whether the datapath holds at with the pod's
// policy, and if not, what is missing: from the state and the per-object
// status of the policies and attachments reconcilers (no kernel read).
func (a *Agent) attachmentStatus(at state.AttachmentRow) (cniapi.Status, error) {
	st := cniapi.Status{ContainerID: at.ContainerID, IfName: at.IfName, HostIfName: at.HostIfName, HostIfIndex: at.HostIfIndex}
	pod := at.Namespace + "/" + at.Pod
	sn := a.State.Snapshot()
	row, ok := sn.EndpointPolicy(pod)
	if !ok {
		if _, ok := sn.Endpoint(at.Namespace, at.Pod); !ok {
			return st, fmt.Errorf("pod %s is not known on node %s (no such Pod bound to this node in the Kubernetes API yet)", pod, a.cfg.NodeName)
		}
		return st, fmt.Errorf("the policy of pod %s is not computed yet", pod)
	}
	st.DatapathID, st.Identity = row.DatapathID, uint32(row.Policy.Identity)
	if p := a.policyRec.Object(row.DatapathID); !p.Held || !reflect.DeepEqual(p.Applied, row.Policy) {
		return st, fmt.Errorf("the policy of pod %s is not in the datapath yet%s", pod, errSuffix(p.Err))
	}
	h := a.attachRec.Object(at.Key)
	if !h.Held || h.Applied.IfIndex != at.HostIfIndex || h.Applied.EndpointID != row.DatapathID {
		return st, fmt.Errorf("interface %s of pod %s is not attached yet%s", at.HostIfName, pod, errSuffix(h.Err))
	}
	st.Attached = true
	return st, nil
}

func errSuffix(err string) string {
	if err == "" {
		return ""
	}
	return ": " + err
}

// waitAttached waits until the attachment is in place or ctx ends (then
// the error says what is missing). It wakes when the tables it reads
// change or either reconciler ends a pass, not by polling.
func (a *Agent) waitAttached(ctx context.Context, at state.AttachmentRow) (cniapi.Status, error) {
	tables := a.State.WatchTables(state.TablePolicies, state.TableEndpoints, state.TableAttachments)
	for {
		// Take the channels before reading the status, so that no change
		// between the two is missed.
		changed, policies, attachments := tables.Changed(), a.policyRec.Watch(), a.attachRec.Watch()
		st, err := a.attachmentStatus(at)
		if err == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("attach %s: %w", at.Key, err)
		case <-changed:
		case <-policies:
		case <-attachments:
		}
	}
}

// loadAttachments puts the stored attachments into the state, leaving out
// (and forgetting) those whose host interface is gone: their pod went away
// while the agent was down.
func (a *Agent) loadAttachments() error {
	if a.cniStore == nil {
		a.State.MarkInitialized(sourceCNI)
		return nil
	}
	ats, bad, err := a.cniStore.Load()
	if err != nil {
		return err
	}
	for _, e := range bad {
		a.log.Warn("ignoring a stored attachment", "error", e)
	}
	var live []state.AttachmentRow
	for _, at := range ats {
		idx, err := hostIfIndex(a.cfg.EndpointNetNS, at.HostIfName)
		if err != nil || idx != at.HostIfIndex {
			a.log.Info("forgetting the attachment of a pod interface that is gone", "attachment", at.Key, "pod", at.Namespace+"/"+at.Pod, "hostIfName", at.HostIfName)
			if err := a.cniStore.Delete(at.Key); err != nil {
				return err
			}
			continue
		}
		live = append(live, at)
	}
	err = a.State.Update(func(t *state.WriteTxn) error {
		for _, at := range live {
			if err := t.UpsertAttachment(at); err != nil {
				return err
			}
		}
		return t.MarkInitialized(sourceCNI)
	})
	if err != nil {
		return fmt.Errorf("load stored attachments: %w", err)
	}
	return nil
}

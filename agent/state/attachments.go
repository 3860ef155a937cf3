package state

import (
	"fmt"
	"net/netip"

	"github.com/clustermesh/clustermesh/agent/datapath"
)

// TableAttachments holds the interfaces the CNI plugin reported for this
// node's pods, keyed by datapath.AttachmentKey. The CNI API writes it; the
// attachments reconciler reads it.
const TableAttachments = "attachments"

// AttachmentRow is a row of the attachments table: a pod's interface as
// the CNI chain created it. agent/cnistore keeps it on disk as JSON with
// these field names: renaming a field changes the stored format.
type AttachmentRow struct {
	Key         string // datapath.AttachmentKey(ContainerID, IfName)
	ContainerID string
	IfName      string // inside the pod
	NetNS       string // the pod's network namespace path
	HostIfName  string
	HostIfIndex int
	// IPs are the addresses the CNI chain gave the interface (the pod's
	// IPs before the kubelet reports them), sorted.
	IPs            []netip.Addr
	Namespace, Pod string
}

// Validate reports what is missing from a.
func (a *AttachmentRow) Validate() error {
	switch {
	case a.ContainerID == "" || a.IfName == "":
		return fmt.Errorf("attachment %q: container ID and interface name are required", a.Key)
	case a.Key != datapath.AttachmentKey(a.ContainerID, a.IfName):
		return fmt.Errorf("attachment %q: key does not match container %q interface %q", a.Key, a.ContainerID, a.IfName)
	case a.Namespace == "" || a.Pod == "":
		return fmt.Errorf("attachment %s: the pod's namespace and name are required", a.Key)
	case a.HostIfName == "" || a.HostIfIndex <= 0:
		return fmt.Errorf("attachment %s: the host-side interface (name and index) is required", a.Key)
	}
	return nil
}

// UpsertAttachment sets the attachment a.Key.
func (w *WriteTxn) UpsertAttachment(a AttachmentRow) error {
	if err := a.Validate(); err != nil {
		return err
	}
	return upsertChanged(w, TableAttachments, &a, a.Key)
}

// DeleteAttachment removes the attachment key; absent is not an error.
func (w *WriteTxn) DeleteAttachment(key string) error {
	return w.deleteByID(TableAttachments, key)
}

// Attachments returns every attachment, sorted by key.
func (sn *Snapshot) Attachments() []AttachmentRow {
	return collect[AttachmentRow](sn.txn, TableAttachments, IndexID)
}

// Attachment returns the attachment key.
func (sn *Snapshot) Attachment(key string) (AttachmentRow, bool) {
	r, err := first[AttachmentRow](sn.txn, TableAttachments, IndexID, key)
	if err != nil || r == nil {
		return AttachmentRow{}, false
	}
	return *r, true
}

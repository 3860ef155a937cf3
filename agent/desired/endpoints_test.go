package desired

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
)

// Attachments are keyed by host interface index; of two rows claiming one
// interface, the one whose key sorts last has it and the conflict is
// reported; rows of pods without a computed policy are left out.
func TestAttachmentsByIfIndex(t *testing.T) {
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	row := func(cid, pod, hostIf string, idx int) state.AttachmentRow {
		return state.AttachmentRow{Key: datapath.AttachmentKey(cid, "eth0"), ContainerID: cid, IfName: "eth0",
			HostIfName: hostIf, HostIfIndex: idx, Namespace: "ns", Pod: pod}
	}
	err = st.Update(func(w *state.WriteTxn) error {
		for _, p := range []state.EndpointPolicyRow{{Key: "ns/a", DatapathID: 1}, {Key: "ns/b", DatapathID: 2}, {Key: "ns/c", DatapathID: 3}} {
			if err := w.UpsertEndpointPolicy(p); err != nil {
				return err
			}
		}
		for _, at := range []state.AttachmentRow{
			row("c-a", "a", "lxca", 10),
			row("c-b-old", "b", "lxcb", 11), // stale: c's interface got its index
			row("c-c", "c", "lxcc", 11),
			row("c-a-old", "a", "lxcx", 11),
			row("c-d", "d", "lxcd", 12), // no policy yet
		} {
			if err := w.UpsertAttachment(at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, conflicts := Attachments(st.Snapshot())
	want := map[int]datapath.Attachment{10: {IfName: "lxca", EndpointID: 1}, 11: {IfName: "lxcc", EndpointID: 3}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attachments (-want +got):\n%s", diff)
	}
	wantConflicts := []AttachmentConflict{{HostIfIndex: 11, Chosen: "c-c/eth0", Ignored: []string{"c-a-old/eth0", "c-b-old/eth0"}}}
	if diff := cmp.Diff(wantConflicts, conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
}

package cniserver

import (
	"fmt"
	"log/slog"

	"github.com/clustermesh/clustermesh/agent/cnistore"
	"github.com/clustermesh/clustermesh/agent/state"
)

// Source is the state source of the attachments: initialized once Load
// put the stored ones into the state.
const Source = "local/cni"

// Load puts the attachments of store (nil: none kept) into st, leaving out
// (and forgetting) those whose host interface, looked up in the network
// namespace netns ("": the agent's), is gone: their pod went away while
// the agent was down. Then it marks Source initialized. Call it before the
// CNI routes are served; log may be nil.
func Load(st *state.State, store *cnistore.Store, netns string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if store == nil {
		st.MarkInitialized(Source)
		return nil
	}
	ats, bad, err := store.Load()
	if err != nil {
		return err
	}
	for _, e := range bad {
		log.Warn("ignoring a stored attachment", "error", e)
	}
	var live []state.AttachmentRow
	for _, at := range ats {
		idx, err := hostIfIndex(netns, at.HostIfName)
		if err != nil || idx != at.HostIfIndex {
			log.Info("forgetting the attachment of a pod interface that is gone", "attachment", at.Key, "pod", at.Namespace+"/"+at.Pod, "hostIfName", at.HostIfName)
			if err := store.Delete(at.Key); err != nil {
				return err
			}
			continue
		}
		live = append(live, at)
	}
	err = st.Update(func(t *state.WriteTxn) error {
		for _, at := range live {
			if err := t.UpsertAttachment(at); err != nil {
				return err
			}
		}
		return t.MarkInitialized(Source)
	})
	if err != nil {
		return fmt.Errorf("load stored attachments: %w", err)
	}
	return nil
}

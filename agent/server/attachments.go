package server

import (
	"log/slog"
	"reflect"
	"sync"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/desired"
	"github.com/clustermesh/clustermesh/agent/state"
)

// newAttachmentsDesired returns the attachments reconciler's Desired:
// desired.Attachments of the current snapshot, logging the interfaces
// that several attachment rows claim each time that set changes (not at
// every pass).
func newAttachmentsDesired(st *state.State, log *slog.Logger) func() map[int]datapath.Attachment {
	var (
		mu     sync.Mutex // guards logged
		logged []desired.AttachmentConflict
	)
	return func() map[int]datapath.Attachment {
		out, conflicts := desired.Attachments(st.Snapshot())
		mu.Lock()
		defer mu.Unlock()
		if reflect.DeepEqual(conflicts, logged) {
			return out
		}
		logged = conflicts
		for _, c := range conflicts {
			log.Warn("several attachments claim one host interface: the one whose key sorts last gets it; the others are stale (their CNI DEL never came)",
				"hostIfIndex", c.HostIfIndex, "attached", c.Chosen, "ignored", c.Ignored)
		}
		return out
	}
}

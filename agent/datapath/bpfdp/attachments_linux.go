package bpfdp

import (
	"context"
	"fmt"
	"sync"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// attachmentsTable attaches the tc programs to endpoints' host-side
// interfaces, keyed by interface index as the kernel knows them. The kernel
// keeps each interface's endpoint ID; List reads the interface's name from
// netlink.
type attachmentsTable struct {
	b     *bpf.Datapath
	netns string // network namespace of the interfaces ("": the agent's)

	mu sync.Mutex // serializes changes
}

// Update implements datapath.Table. Attaching an interface already
// attached keeps its TCX links (moved to the current programs) or clsact
// filters (replaced atomically) and only sets its endpoint ID: its traffic
// is never left unfiltered.
func (t *attachmentsTable) Update(_ context.Context, ifindex int, a datapath.Attachment) error {
	if ifindex <= 0 || a.EndpointID == 0 {
		return fmt.Errorf("attach ifindex %d (%s): need an interface index and an endpoint ID, got endpoint %d", ifindex, a.IfName, a.EndpointID)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := netnsutil.Do(t.netns, func() error { return t.b.AttachEndpoint(ifindex, a.EndpointID) }); err != nil {
		return fmt.Errorf("attach %s (ifindex %d): %w", a.IfName, ifindex, err)
	}
	return nil
}

// Delete implements datapath.Table.
func (t *attachmentsTable) Delete(_ context.Context, ifindex int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := netnsutil.Do(t.netns, func() error { return t.b.DetachEndpoint(ifindex) }); err != nil {
		return fmt.Errorf("detach ifindex %d: %w", ifindex, err)
	}
	return nil
}

// List implements datapath.Table: the interfaces attached in both
// directions, with their endpoint IDs and their names ("" for an interface
// netlink does not know, gone since).
func (t *attachmentsTable) List(context.Context) (map[int]datapath.Attachment, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var live map[int]uint16
	err := netnsutil.Do(t.netns, func() (err error) {
		live, err = t.b.AttachedEndpoints()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list attachments: %w", err)
	}
	names, err := t.ifNames()
	if err != nil {
		return nil, fmt.Errorf("list attachments: %w", err)
	}
	out := make(map[int]datapath.Attachment, len(live))
	for ifindex, ep := range live {
		out[ifindex] = datapath.Attachment{IfName: names[ifindex], EndpointID: ep}
	}
	return out, nil
}

// ifNames returns the name of every interface of the namespace by index.
func (t *attachmentsTable) ifNames() (map[int]string, error) {
	h, err := netnsutil.Netlink(t.netns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := make(map[int]string, len(links))
	for _, l := range links {
		out[l.Attrs().Index] = l.Attrs().Name
	}
	return out, nil
}

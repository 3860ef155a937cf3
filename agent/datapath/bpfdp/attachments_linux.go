package bpfdp

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// attachmentsTable attaches the tc programs to endpoints' host-side
// interfaces. The kernel knows interfaces by index; a record per interface
// keeps the attachment's key and name.
type attachmentsTable struct {
	b     *bpf.Datapath
	rec   *records
	netns string // network namespace of the interfaces ("": the agent's)

	mu sync.Mutex // serializes changes
}

func attachmentID(ifindex int) recordID {
	var id recordID
	binary.BigEndian.PutUint32(id[:4], uint32(ifindex))
	return id
}

// encodeAttachment is the record: version, key, interface name, endpoint.
func encodeAttachment(key string, a datapath.Attachment) []byte {
	b := []byte{recordVersion}
	b = appendString(b, key)
	b = appendString(b, a.IfName)
	return binary.BigEndian.AppendUint16(b, a.EndpointID)
}

func decodeAttachment(data []byte, ifindex int) (string, datapath.Attachment, error) {
	r := reader{b: data}
	r.version()
	key := r.str()
	a := datapath.Attachment{IfName: r.str(), IfIndex: ifindex, EndpointID: r.u16()}
	if err := r.done(); err != nil {
		return "", datapath.Attachment{}, err
	}
	return key, a, nil
}

// Update implements datapath.Table: the programs first, then the record.
// Moving a key to another interface detaches the old one.
func (t *attachmentsTable) Update(ctx context.Context, key string, a datapath.Attachment) error {
	if key == "" || a.IfIndex <= 0 || a.EndpointID == 0 {
		return fmt.Errorf("attach %q: need a key, an interface index and an endpoint ID, got %+v", key, a)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	held, err := t.list()
	if err != nil {
		return fmt.Errorf("attach %s: %w", key, err)
	}
	if old, ok := held[key]; ok && old.IfIndex != a.IfIndex {
		if err := t.detach(old.IfIndex); err != nil {
			return fmt.Errorf("attach %s: %w", key, err)
		}
	}
	if err := netnsutil.Do(t.netns, func() error { return t.b.AttachEndpoint(a.IfIndex, a.EndpointID) }); err != nil {
		return fmt.Errorf("attach %s (%s): %w", key, a.IfName, err)
	}
	if err := t.rec.put(kindAttachment, attachmentID(a.IfIndex), encodeAttachment(key, a)); err != nil {
		return fmt.Errorf("attach %s: %w", key, err)
	}
	return nil
}

// Delete implements datapath.Table.
func (t *attachmentsTable) Delete(_ context.Context, key string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	held, err := t.list()
	if err != nil {
		return fmt.Errorf("detach %s: %w", key, err)
	}
	a, ok := held[key]
	if !ok {
		return nil
	}
	if err := t.detach(a.IfIndex); err != nil {
		return fmt.Errorf("detach %s: %w", key, err)
	}
	return nil
}

func (t *attachmentsTable) detach(ifindex int) error {
	if err := netnsutil.Do(t.netns, func() error { return t.b.DetachEndpoint(ifindex) }); err != nil {
		return err
	}
	return t.rec.delete(kindAttachment, attachmentID(ifindex))
}

// List implements datapath.Table: the recorded attachments whose programs
// are attached (an interface that is gone is not).
func (t *attachmentsTable) List(context.Context) (map[string]datapath.Attachment, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.list()
}

func (t *attachmentsTable) list() (map[string]datapath.Attachment, error) {
	var live map[int]uint16
	err := netnsutil.Do(t.netns, func() (err error) {
		live, err = t.b.AttachedEndpoints()
		return err
	})
	if err != nil {
		return nil, err
	}
	recs, err := t.rec.list(kindAttachment)
	if err != nil {
		return nil, fmt.Errorf("list attachments: %w", err)
	}
	out := make(map[string]datapath.Attachment, len(recs))
	for id, data := range recs {
		ifindex := int(binary.BigEndian.Uint32(id[:4]))
		ep, ok := live[ifindex]
		if !ok {
			continue
		}
		key, a, err := decodeAttachment(data, ifindex)
		if err != nil || a.EndpointID != ep {
			continue // not what this table wrote: not an attachment it holds
		}
		out[key] = a
	}
	return out, nil
}

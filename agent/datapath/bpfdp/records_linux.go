package bpfdp

import (
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Record kinds: one per table that keeps records.
const (
	kindService    uint8 = 1
	kindPolicy     uint8 = 2
	kindAttachment uint8 = 3
)

// chunkSize is how many bytes of a record one map value holds.
const chunkSize = 1016

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordID names a record within its kind: the kernel key of the object.
type recordID [8]byte

// recordKey is the key of one chunk of a record.
type recordKey struct {
	Kind  uint8
	Pad   uint8
	Chunk uint16
	ID    recordID
}

// recordValue is one chunk; Len and CRC are set in chunk 0 only and cover
// the whole record.
type recordValue struct {
	Len  uint32
	CRC  uint32
	Data [chunkSize]byte
}

// records is a pinned hash map of byte records split into chunks. It is
// not used by any BPF program: it only has the lifetime of the pins.
type records struct {
	m *ebpf.Map
}

func recordsSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       "cm_records",
		Type:       ebpf.Hash,
		KeySize:    12,
		ValueSize:  4 + 4 + chunkSize,
		MaxEntries: 1 << 16,
		Flags:      unix.BPF_F_NO_PREALLOC, // memory only for what is stored
		Pinning:    ebpf.PinByName,
	}
}

func chunks(n uint32) uint16 { return uint16(max(1, (n+chunkSize-1)/chunkSize)) }

// stored returns how many chunks the record (kind, id) has, 0 if none.
func (r *records) stored(kind uint8, id recordID) (uint16, error) {
	var v recordValue
	if err := r.m.Lookup(&recordKey{Kind: kind, ID: id}, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("read record: %w", err)
	}
	return chunks(v.Len), nil
}

// put stores data as record (kind, id): the chunks after the first, then
// the first (with length and checksum), then it removes chunks left over
// from a longer previous record.
func (r *records) put(kind uint8, id recordID, data []byte) error {
	if len(data) > 0xffff*chunkSize {
		return fmt.Errorf("record of %d bytes is too long", len(data))
	}
	old, err := r.stored(kind, id)
	if err != nil {
		return err
	}
	n := chunks(uint32(len(data)))
	for c := int(n) - 1; c >= 0; c-- {
		v := recordValue{}
		copy(v.Data[:], data[min(len(data), c*chunkSize):])
		if c == 0 {
			v.Len, v.CRC = uint32(len(data)), crc32.Checksum(data, castagnoli)
		}
		if err := r.m.Update(&recordKey{Kind: kind, Chunk: uint16(c), ID: id}, &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write record chunk %d: %w", c, err)
		}
	}
	return r.deleteChunks(kind, id, n, old)
}

// delete removes record (kind, id): the first chunk first, so that a
// partial delete leaves no valid record. Absent is not an error.
func (r *records) delete(kind uint8, id recordID) error {
	old, err := r.stored(kind, id)
	if err != nil {
		return err
	}
	return r.deleteChunks(kind, id, 0, old)
}

func (r *records) deleteChunks(kind uint8, id recordID, from, to uint16) error {
	for c := from; c < to; c++ {
		if err := r.m.Delete(&recordKey{Kind: kind, Chunk: c, ID: id}); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete record chunk %d: %w", c, err)
		}
	}
	return nil
}

// list returns every complete record of kind whose checksum matches;
// others (torn by a crash) are left out.
func (r *records) list(kind uint8) (map[recordID][]byte, error) {
	type partial struct {
		first  recordValue
		chunks map[uint16][]byte
	}
	parts := map[recordID]*partial{}
	var (
		k recordKey
		v recordValue
	)
	it := r.m.Iterate()
	for it.Next(&k, &v) {
		if k.Kind != kind {
			continue
		}
		p := parts[k.ID]
		if p == nil {
			p = &partial{chunks: map[uint16][]byte{}}
			parts[k.ID] = p
		}
		if k.Chunk == 0 {
			p.first = v
		}
		p.chunks[k.Chunk] = append([]byte(nil), v.Data[:]...)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	out := make(map[recordID][]byte, len(parts))
	for id, p := range parts {
		if _, ok := p.chunks[0]; !ok {
			continue
		}
		data := make([]byte, 0, p.first.Len)
		for c := range chunks(p.first.Len) {
			b, ok := p.chunks[c]
			if !ok {
				break
			}
			data = append(data, b[:min(len(b), int(p.first.Len)-len(data))]...)
		}
		if uint32(len(data)) == p.first.Len && crc32.Checksum(data, castagnoli) == p.first.CRC {
			out[id] = data
		}
	}
	return out, nil
}

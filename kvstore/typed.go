package kvstore

// TypedHandler adapts typed callbacks to a WatchHandler: each value is
// decoded, and a value that fails to decode is reported to Invalid and
// treated as absent (a key whose previous value was valid gets a delete),
// because the exporter no longer asserts what it said before.
type TypedHandler[T any] struct {
	Decode  func(key string, value []byte) (T, error)
	Upsert  func(key string, v T)
	Delete  func(key string)
	Synced  func()
	Invalid func(key string, err error)

	valid map[string]struct{}
}

var _ WatchHandler = (*TypedHandler[int])(nil)

// OnUpsert decodes and forwards.
func (h *TypedHandler[T]) OnUpsert(key string, value []byte) {
	if h.valid == nil {
		h.valid = map[string]struct{}{}
	}
	v, err := h.Decode(key, value)
	if err != nil {
		if h.Invalid != nil {
			h.Invalid(key, err)
		}
		h.OnDelete(key)
		return
	}
	h.valid[key] = struct{}{}
	h.Upsert(key, v)
}

// OnDelete forwards deletes of keys that had a valid value.
func (h *TypedHandler[T]) OnDelete(key string) {
	if _, ok := h.valid[key]; !ok {
		return
	}
	delete(h.valid, key)
	h.Delete(key)
}

// OnSynced forwards.
func (h *TypedHandler[T]) OnSynced() {
	if h.Synced != nil {
		h.Synced()
	}
}

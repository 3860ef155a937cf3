package schema

import (
	"errors"
	"fmt"
)

// ErrMalformed is matched by errors.Is for every error this package returns
// for a malformed key or value.
var ErrMalformed = errors.New("malformed kvstore entry")

// DecodeError reports a malformed etcd key or value. Key is the full etcd
// key; Err says what is wrong.
type DecodeError struct {
	Key string
	Err error
}

// Error reads like `invalid value at etcd key "cilium/...": what is wrong`,
// or `invalid etcd key "...": ...` when the key itself is malformed.
func (e *DecodeError) Error() string {
	what := "invalid value at etcd key"
	var ke *keyError
	if errors.As(e.Err, &ke) {
		what = "invalid etcd key"
	}
	if e.Err == nil {
		return fmt.Sprintf("%s %q", what, e.Key)
	}
	return fmt.Sprintf("%s %q: %v", what, e.Key, e.Err)
}

// Unwrap returns the underlying cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is reports whether target is ErrMalformed.
func (e *DecodeError) Is(target error) bool { return target == ErrMalformed }

// keyError marks a problem with the key itself rather than the value.
type keyError struct{ msg string }

func (e *keyError) Error() string { return e.msg }

func keyErrorf(key, format string, args ...any) error {
	return &DecodeError{Key: key, Err: &keyError{msg: fmt.Sprintf(format, args...)}}
}

func valueErrorf(key, format string, args ...any) error {
	return &DecodeError{Key: key, Err: fmt.Errorf(format, args...)}
}

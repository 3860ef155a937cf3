package bpfdp

import "log/slog"

// Option configures New.
type Option func(*config)

type config struct {
	log *slog.Logger
}

// WithLogger logs what New does beside loading (the removal of an older
// version's pins) to log; the default is slog.Default().
func WithLogger(log *slog.Logger) Option { return func(c *config) { c.log = log } }

package bpf

import "time"

// DefaultPinDir is where Load pins maps and links unless told otherwise.
const DefaultPinDir = "/sys/fs/bpf/clustermesh"

// DefaultIPCacheMaxEntries is the default size of the ipcache: 512k entries,
// room for a mesh of 100 clusters of 5,000 pods each.
const DefaultIPCacheMaxEntries = 1 << 19

// Options configure Load. The zero value is usable.
type Options struct {
	// PinDir is a directory on a bpffs mount; it is created if missing.
	// Default DefaultPinDir.
	PinDir string

	// CTTimeoutTCP, CTTimeoutOther and CTTimeoutClosing are how long a
	// tracked flow lives after its last packet: TCP, other protocols, and
	// TCP after a FIN or RST. Defaults 6h, 60s, 10s.
	CTTimeoutTCP, CTTimeoutOther, CTTimeoutClosing time.Duration

	// TraceSample emits a verdict event for 1 in TraceSample allowed new
	// flows; drops are always reported. 0 means the default (1, every
	// flow); a negative value disables allowed-verdict events.
	TraceSample int

	// PolicyMaxEntries is the size of the policy map (expanded entries of
	// all endpoints; a replacement needs room for both rule sets of one
	// endpoint). Default 262144. Changing it requires Unpin.
	PolicyMaxEntries uint32

	// IPCacheMaxEntries is the size of the ipcache (every pod IP of the
	// mesh, the nodes' addresses and the CIDR identities). Its memory is
	// allocated per entry (BPF_F_NO_PREALLOC), so a large bound costs
	// nothing until used. Default DefaultIPCacheMaxEntries. Changing it
	// requires Unpin.
	IPCacheMaxEntries uint32

	// TCAttach is how endpoints' programs are attached: TCAttachAuto (TCX,
	// or clsact where the kernel has no TCX), TCAttachTCX or TCAttachClsact.
	TCAttach string
}

// TCAttach modes.
const (
	TCAttachAuto   = ""
	TCAttachTCX    = "tcx"
	TCAttachClsact = "clsact"
)

func (o Options) withDefaults() Options {
	if o.PinDir == "" {
		o.PinDir = DefaultPinDir
	}
	if o.CTTimeoutTCP <= 0 {
		o.CTTimeoutTCP = 6 * time.Hour
	}
	if o.CTTimeoutOther <= 0 {
		o.CTTimeoutOther = 60 * time.Second
	}
	if o.CTTimeoutClosing <= 0 {
		o.CTTimeoutClosing = 10 * time.Second
	}
	if o.TraceSample == 0 {
		o.TraceSample = 1
	}
	if o.IPCacheMaxEntries == 0 {
		o.IPCacheMaxEntries = DefaultIPCacheMaxEntries
	}
	return o
}

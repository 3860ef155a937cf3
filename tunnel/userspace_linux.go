package tunnel

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// userspace is wireguard-go running in this process on a TUN device, with
// the UAPI socket that wgctrl configures it through.
type userspace struct {
	dev *device.Device
	ln  net.Listener
	wg  sync.WaitGroup // the accept loop and one goroutine per UAPI connection

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// startUserspace creates the TUN device name in cfg's namespace, starts
// wireguard-go on it and serves its UAPI socket.
func startUserspace(cfg Config) (*userspace, error) {
	var tdev tun.Device
	err := netnsutil.Do(cfg.NetNSPath, func() error {
		var err error
		tdev, err = tun.CreateTUN(cfg.Name, cfg.MTU)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create TUN device %s for wireguard-go: %w (needs /dev/net/tun and CAP_NET_ADMIN)", cfg.Name, err)
	}
	bind := conn.NewDefaultBind()
	if cfg.NetNSPath != "" {
		// wireguard-go opens its UDP sockets and reads the MTU again later,
		// from goroutines of its own: do both in the device's namespace.
		th, err := netnsutil.Netlink(cfg.NetNSPath)
		if err != nil {
			tdev.Close()
			return nil, err
		}
		tdev = &nsTUN{Device: tdev, h: th}
		bind = &nsBind{Bind: bind, path: cfg.NetNSPath}
	}
	dev := device.NewDevice(tdev, bind, wgLogger(cfg.Logger))
	f, err := ipc.UAPIOpen(cfg.Name)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("open UAPI socket of %s: %w (UAPI sockets in /var/run/wireguard are shared by all network namespaces: is another wireguard-go device named %s running?)", cfg.Name, err, cfg.Name)
	}
	ln, err := ipc.UAPIListen(cfg.Name, f)
	f.Close() // the listener holds its own descriptor
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("listen on UAPI socket of %s: %w", cfg.Name, err)
	}
	u := &userspace{dev: dev, ln: ln, conns: map[net.Conn]struct{}{}}
	u.wg.Go(u.serve)
	return u, nil
}

// serve accepts UAPI connections until the listener closes.
func (u *userspace) serve() {
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		if u.closed {
			u.mu.Unlock()
			c.Close()
			return
		}
		u.conns[c] = struct{}{}
		u.mu.Unlock()
		u.wg.Go(func() {
			u.dev.IpcHandle(c) // closes c
			u.mu.Lock()
			delete(u.conns, c)
			u.mu.Unlock()
		})
	}
}

// close stops the UAPI server and wireguard-go (which removes the TUN
// device and with it every route through it) and waits for them.
func (u *userspace) close() error {
	u.mu.Lock()
	u.closed = true
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	err := u.ln.Close()
	u.dev.Close()
	u.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close UAPI socket: %w", err)
	}
	return nil
}

// wgLogger sends wireguard-go's logs to log.
func wgLogger(log *slog.Logger) *device.Logger {
	log = log.With("component", "wireguard-go")
	return &device.Logger{
		Verbosef: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { log.Warn(fmt.Sprintf(format, args...)) },
	}
}

// nsBind opens wireguard-go's UDP sockets in a network namespace, whichever
// goroutine asks (wireguard-go rebinds from its own goroutines when the link
// goes up).
type nsBind struct {
	conn.Bind
	path string
}

func (b *nsBind) Open(port uint16) (fns []conn.ReceiveFunc, actual uint16, err error) {
	err = netnsutil.Do(b.path, func() error {
		var err error
		fns, actual, err = b.Bind.Open(port)
		return err
	})
	return fns, actual, err
}

// nsTUN reads the MTU of a TUN device in another network namespace through
// a netlink handle in it (wireguard-go asks by name in the namespace of the
// calling thread).
type nsTUN struct {
	tun.Device
	mu sync.Mutex      // guards h against Close while wireguard-go reads the MTU
	h  *netlink.Handle // nil once closed
}

func (t *nsTUN) MTU() (int, error) {
	name, err := t.Name()
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h == nil {
		return 0, fmt.Errorf("read MTU of %s: %w", name, net.ErrClosed)
	}
	l, err := t.h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("read MTU of %s: %w", name, err)
	}
	return l.Attrs().MTU, nil
}

func (t *nsTUN) Close() error {
	err := t.Device.Close()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h != nil {
		t.h.Close()
		t.h = nil
	}
	return err
}

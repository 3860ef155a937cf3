package workload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config of a workload server.
type Config struct {
	Cluster, Namespace, Pod string
	Port                    int    // TCP and UDP port answered on every address
	ControlSocket           string // unix socket of the control API ("": none)
}

// Who is the answer's prefix: cluster/namespace/pod.
func (c Config) Who() string { return c.Cluster + "/" + c.Namespace + "/" + c.Pod }

// Run serves until ctx ends. The listeners are open when ready is closed.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready chan<- struct{}) error {
	if cfg.Port <= 0 || cfg.Port > 65535 {
		return fmt.Errorf("--port %d: want 1..65535", cfg.Port)
	}
	var lc net.ListenConfig
	addr := ":" + strconv.Itoa(cfg.Port)
	tl, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen tcp %s: %w", addr, err)
	}
	defer tl.Close()
	ul, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("listen udp %s: %w", addr, err)
	}
	defer ul.Close()
	ctl := newControl(cfg)
	var srv *http.Server // the control API, if any

	// Shutdown is explicit, in order: stop accepting, close every
	// connection, then wait for the goroutines.
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		tl.Close()
		ul.Close()
		if srv != nil {
			srv.Close()
		}
		ctl.closeAll()
		wg.Wait()
	}()
	errc := make(chan error, 3)
	wg.Go(func() { errc <- serveTCP(ctx, tl, cfg.Who(), &wg) })
	wg.Go(func() { errc <- serveUDP(ul, cfg.Who()) })
	if cfg.ControlSocket != "" {
		_ = os.Remove(cfg.ControlSocket)
		cl, err := lc.Listen(ctx, "unix", cfg.ControlSocket+".tmp")
		if err != nil {
			return fmt.Errorf("listen on the control socket %s: %w", cfg.ControlSocket, err)
		}
		if err := os.Rename(cfg.ControlSocket+".tmp", cfg.ControlSocket); err != nil {
			cl.Close()
			return fmt.Errorf("control socket %s: %w", cfg.ControlSocket, err)
		}
		srv = &http.Server{Handler: ctl.handler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := srv.Serve(cl); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("control API: %w", err)
			}
		})
	}
	log.Info("serving", "who", cfg.Who(), "port", cfg.Port, "control", cfg.ControlSocket)
	if ready != nil {
		close(ready)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

func serveTCP(ctx context.Context, l net.Listener, who string, wg *sync.WaitGroup) error {
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Go(func() {
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			defer c.Close()
			answer(c, who)
		})
	}
}

// answer serves one TCP connection: lines are echoed with who, "SINK n"
// is counted.
func answer(c net.Conn, who string) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if n, ok := strings.CutPrefix(line, "SINK "); ok {
			size, err := strconv.ParseInt(n, 10, 64)
			if err != nil || size < 0 {
				fmt.Fprintf(c, "%s bad SINK size %q\n", who, n)
				return
			}
			got, _ := io.CopyN(io.Discard, r, size)
			fmt.Fprintf(c, "%s %d\n", who, got)
			continue
		}
		if _, err := fmt.Fprintf(c, "%s %s\n", who, line); err != nil {
			return
		}
	}
}

func serveUDP(c net.PacketConn, who string) error {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("udp read: %w", err)
		}
		msg := strings.TrimSuffix(string(buf[:n]), "\n")
		_, _ = c.WriteTo([]byte(who+" "+msg), from)
	}
}

// deadline is now + ms (default 2 s).
func deadline(ms int) time.Time {
	if ms <= 0 {
		ms = 2000
	}
	return time.Now().Add(time.Duration(ms) * time.Millisecond)
}

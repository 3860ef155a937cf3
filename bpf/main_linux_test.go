package bpf

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

// helperEnv makes the test binary act as a client process (started inside a
// test cgroup) instead of running tests: "<mode> <addr> <count>".
const helperEnv = "CLUSTERMESH_BPF_HELPER"

func TestMain(m *testing.M) {
	if args := os.Getenv(helperEnv); args != "" {
		if err := enterHelperNetns(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		if err := runHelper(strings.Fields(args)); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testutil.VerifyNoLeaks(m)
}

// helperNetnsEnv, when set, is the network namespace (a path) the helper
// enters before it runs (runInCgroupNetns).
const helperNetnsEnv = "CLUSTERMESH_BPF_HELPER_NETNS"

// enterHelperNetns moves the helper's main thread, on which it makes all
// its sockets, into the namespace of helperNetnsEnv, if set.
func enterHelperNetns() error {
	path := os.Getenv(helperNetnsEnv)
	if path == "" {
		return nil
	}
	runtime.LockOSThread() // for good: the helper exits after its run
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	return nil
}

// helperResult is one exchange of the helper with a service.
type helperResult struct {
	Reply string // what the backend answered (its address)
	Peer  string // getpeername (TCP) or the source of the reply (UDP)
}

// helperBench is what the connect benchmark mode reports.
type helperBench struct {
	NsPerOp float64
}

func runHelper(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("want <mode> <addr> <count>, got %q", args)
	}
	addr, err := netip.ParseAddrPort(args[1])
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	switch args[0] {
	case "tcp":
		for range n {
			r, err := helperTCP(addr)
			if err != nil {
				return err
			}
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	case "udp":
		for range n {
			r, err := helperUDP(addr)
			if err != nil {
				return err
			}
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	case "echo-tcp", "echo-udp", "try-tcp":
		for range n {
			if err := helperEcho(args[0], addr); err != nil {
				return err
			}
		}
		return enc.Encode(helperResult{})
	case "connect-tcp", "connect-udp":
		ns, err := benchConnect(args[0] == "connect-tcp", addr, n)
		if err != nil {
			return err
		}
		return enc.Encode(helperBench{NsPerOp: ns})
	default:
		return fmt.Errorf("unknown mode %q", args[0])
	}
	return nil
}

// sockaddr is a's socket address, IPv6 (also for an IPv4-mapped address:
// an IPv6 socket) or IPv4; family is the socket family to use with it.
func sockaddr(a netip.AddrPort) (sa unix.Sockaddr, family int) {
	if a.Addr().Is6() {
		return &unix.SockaddrInet6{Addr: a.Addr().As16(), Port: int(a.Port())}, unix.AF_INET6
	}
	return &unix.SockaddrInet4{Addr: a.Addr().As4(), Port: int(a.Port())}, unix.AF_INET
}

func fromSockaddr(sa unix.Sockaddr) string {
	switch s := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(s.Addr), uint16(s.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(s.Addr), uint16(s.Port)).String()
	}
	return fmt.Sprint(sa)
}

// helperTCP connects with raw syscalls so that getpeername is what the
// kernel (and the getpeername4 program) says.
func helperTCP(addr netip.AddrPort) (helperResult, error) {
	sa, family := sockaddr(addr)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return helperResult{}, err
	}
	f := os.NewFile(uintptr(fd), "tcp")
	defer f.Close()
	if err := unix.Connect(fd, sa); err != nil {
		return helperResult{}, fmt.Errorf("connect %v: %w", addr, err)
	}
	peer, err := unix.Getpeername(fd)
	if err != nil {
		return helperResult{}, fmt.Errorf("getpeername: %w", err)
	}
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return helperResult{}, fmt.Errorf("read reply: %w", err)
	}
	return helperResult{Reply: strings.TrimSpace(line), Peer: fromSockaddr(peer)}, nil
}

// helperUDP sends from an unconnected socket (sendmsg4) and receives with
// recvfrom (recvmsg4).
func helperUDP(addr netip.AddrPort) (helperResult, error) {
	sa, family := sockaddr(addr)
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return helperResult{}, err
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return helperResult{}, err
	}
	if err := unix.Sendto(fd, []byte("who"), 0, sa); err != nil {
		return helperResult{}, fmt.Errorf("sendto %v: %w", addr, err)
	}
	buf := make([]byte, 256)
	n, from, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return helperResult{}, fmt.Errorf("recvfrom: %w", err)
	}
	return helperResult{Reply: strings.TrimSpace(string(buf[:n])), Peer: fromSockaddr(from)}, nil
}

// helperEcho sends a line to an echo server and reads it back: "echo-tcp"
// on a connected TCP socket (connect4/6), "echo-udp" from an unconnected
// UDP socket (sendmsg4/6); "try-tcp" only attempts a connection, for one
// that policy drops (an error is the expected outcome).
func helperEcho(mode string, addr netip.AddrPort) error {
	sa, family := sockaddr(addr)
	typ := unix.SOCK_STREAM
	if mode == "echo-udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	if mode == "try-tcp" {
		tv = unix.NsecToTimeval(int64(300 * time.Millisecond))
	}
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} { // SO_SNDTIMEO bounds connect
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			return err
		}
	}
	msg := []byte("hello\n")
	if mode == "echo-udp" {
		err = unix.Sendto(fd, msg, 0, sa)
	} else if err = unix.Connect(fd, sa); err == nil {
		_, err = unix.Write(fd, msg)
	}
	if mode == "try-tcp" {
		return nil // dropped, or not: the test reads the verdict from the events
	}
	if err != nil {
		return fmt.Errorf("%s %v: %w", mode, addr, err)
	}
	buf := make([]byte, 64)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return fmt.Errorf("%s %v: read the echo: %w", mode, addr, err)
	}
	if string(buf[:n]) != string(msg) {
		return fmt.Errorf("%s %v: echo %q, want %q", mode, addr, buf[:n], msg)
	}
	return nil
}

// benchConnect measures n connect() calls (each on a new socket) to addr.
func benchConnect(tcp bool, addr netip.AddrPort, n int) (float64, error) {
	typ := unix.SOCK_DGRAM
	if tcp {
		typ = unix.SOCK_STREAM
	}
	var total time.Duration
	sa, family := sockaddr(addr)
	for range n {
		fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, err
		}
		if tcp {
			// RST on close: no TIME_WAIT piling up over thousands of runs.
			_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
		}
		start := time.Now()
		err = unix.Connect(fd, sa)
		total += time.Since(start)
		unix.Close(fd)
		if err != nil {
			return 0, fmt.Errorf("connect %v: %w", addr, err)
		}
	}
	return float64(total.Nanoseconds()) / float64(n), nil
}

// newCgroup creates a cgroup v2 directory for one test and removes it at
// cleanup (after the helper processes in it have exited).
func newCgroup(tb testing.TB) string {
	tb.Helper()
	requireRoot(tb)
	root := "/sys/fs/cgroup/unified"
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		root = "/sys/fs/cgroup"
		if err := unix.Statfs(root, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
			tb.Fatal("no cgroup v2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup (cgroup sock_addr programs need cgroup v2)")
		}
	}
	dir, err := os.MkdirTemp(root, "clustermesh-bpf-test-")
	if err != nil {
		tb.Fatalf("create cgroup: %v", err)
	}
	tb.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			tb.Errorf("remove cgroup: %v", err)
		}
	})
	return dir
}

// runInCgroup runs the test binary as a helper inside cgroup dir and
// returns its stdout.
func runInCgroup(tb testing.TB, dir string, args ...string) []byte {
	tb.Helper()
	return runInCgroupNetns(tb, dir, "", args...)
}

// runInCgroupNetns is runInCgroup with the helper's sockets in the network
// namespace at path netnsPath ("": the test's).
func runInCgroupNetns(tb testing.TB, dir, netnsPath string, args ...string) []byte {
	tb.Helper()
	cg, err := os.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	defer cg.Close()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.CommandContext(tb.Context(), exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join(args, " "))
	if netnsPath != "" {
		cmd.Env = append(cmd.Env, helperNetnsEnv+"="+netnsPath)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("helper %v in %s: %v: %s", args, filepath.Base(dir), err, stderr.String())
	}
	return out
}

// backendServer is a TCP and UDP server on 127.0.0.1 that answers every
// connection or datagram with its own address.
func backendServer(tb testing.TB) netip.AddrPort { return backendServerOn(tb, "127.0.0.1") }

// backendServerOn is backendServer on the loopback address lo (127.0.0.1
// or ::1).
func backendServerOn(tb testing.TB, lo string) netip.AddrPort {
	tb.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(lo, "0"))
	if err != nil {
		tb.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	pc, err := net.ListenPacket("udp", addr.String())
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{}, 2)
	tb.Cleanup(func() { ln.Close(); pc.Close(); <-done; <-done })
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(addr.String() + "\n"))
			c.Close()
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 256)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(addr.String()), from)
		}
	}()
	return addr
}

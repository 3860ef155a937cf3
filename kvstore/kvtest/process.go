package kvtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/etcdserver"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// childEnv carries the server config of a child process started by
// StartProcess; a test binary started with it serves etcd instead of
// running its tests (see init).
const childEnv = "CLUSTERMESH_KVTEST_ETCD_PROCESS"

// Process is a plain etcd (the project's embedded etcd, kvstore/etcdserver)
// running in a child process of the test binary, so that a benchmark
// measures its CPU and memory apart from its clients' (Usage).
type Process struct {
	Cluster string
	Paths   schema.Paths
	URL     string
	cmd     *exec.Cmd
}

// Usage is what a process consumed so far.
type Usage struct {
	// CPU is user plus system time (the kernel counts it in 10 ms ticks).
	CPU time.Duration
	// RSS is the resident set now, HWM its peak, in bytes.
	RSS, HWM uint64
}

// StartProcess starts a plain etcd in a child process of the test binary
// (the same etcd server code as Start, in its own process) and waits until
// it serves. The child is killed at cleanup, and by the kernel if the test
// process dies.
func StartProcess(t testing.TB, opts Options) *Process {
	t.Helper()
	if opts.Cluster == "" {
		opts.Cluster = "cluster1"
	}
	dir := t.TempDir()
	if opts.DataDir != "" {
		d, err := os.MkdirTemp(opts.DataDir, "etcd-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		dir = d
	}
	url := "http://127.0.0.1:" + strconv.Itoa(FreePort(t))
	cfg := etcdserver.ServerConfig{DataDir: filepath.Join(dir, "data"), ListenClientURLs: []string{url}, AutoCompactionRetention: -1}
	if opts.AutoCompaction > 0 {
		cfg.AutoCompactionRetention = opts.AutoCompaction
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$") // the child never reaches the tests (init)
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd process: %v", err)
	}
	p := &Process{Cluster: opts.Cluster, Paths: schema.DefaultPaths(), URL: url, cmd: cmd}
	t.Cleanup(func() {
		_ = stdin.Close() // the child stops its server and exits
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("etcd process %d did not start: %q %v", cmd.Process.Pid, line, err)
	}
	return p
}

// PID of the child.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// ClientConfig returns a plain client config for the server.
func (p *Process) ClientConfig() kvstore.ClientConfig {
	return kvstore.ClientConfig{Endpoints: []string{p.URL}, DialTimeout: kvstore.Duration(2 * time.Second), RateLimitQPS: -1}
}

// Connect returns a client, closed at cleanup.
func (p *Process) Connect(t testing.TB) *kvstore.Client {
	t.Helper()
	return ConnectConfig(t, p.ClientConfig())
}

// Usage reads the child's CPU time and memory from /proc.
func (p *Process) Usage() (Usage, error) {
	return ProcUsage(p.PID())
}

// ProcUsage reads a process's CPU time and memory from /proc.
func ProcUsage(pid int) (Usage, error) {
	var u Usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, fmt.Errorf("read cpu time of process %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return u, fmt.Errorf("parse /proc/%d/stat: %d fields after the name, want at least 13", pid, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return u, fmt.Errorf("parse /proc/%d/stat utime %q stime %q", pid, f[11], f[12])
	}
	u.CPU = time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	for line := range strings.Lines(string(status)) {
		name, val, ok := strings.Cut(line, ":")
		if !ok || name != "VmRSS" && name != "VmHWM" {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return u, fmt.Errorf("parse /proc/%d/status %s %q", pid, name, val)
		}
		if name == "VmRSS" {
			u.RSS = kb << 10
		} else {
			u.HWM = kb << 10
		}
	}
	return u, nil
}

// init serves etcd instead of running the tests when the binary is a
// child started by StartProcess: it prints "ready" once the server serves,
// and stops it when its stdin closes (the parent's cleanup, or its death).
func init() {
	raw := os.Getenv(childEnv)
	if raw == "" {
		return
	}
	if err := serveChild(raw); err != nil {
		fmt.Fprintf(os.Stderr, "kvtest etcd process: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveChild(raw string) error {
	var cfg etcdserver.ServerConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return fmt.Errorf("decode %s: %w", childEnv, err)
	}
	ctx, cancel := context.WithTimeout(context.TODO(), time.Minute)
	s, err := etcdserver.StartServer(ctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := os.Stdout.WriteString("ready\n"); err != nil {
		return fmt.Errorf("tell the parent: %w", err)
	}
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-eof:
		return nil
	case err := <-s.Err():
		return fmt.Errorf("etcd: %w", err)
	}
}

//go:build linux

package bed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// AgentPID returns the process ID of the node's running agent, the
// clustermesh-agent binary itself (nsenter execs it; if a nsenter stands
// in between, its child), for measuring it from /proc/<pid>/stat.
func (n *Node) AgentPID() (int, error) {
	n.agent.mu.Lock()
	cmd, exited := n.agent.cmd, n.agent.exited
	n.agent.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0, fmt.Errorf("the agent of %s was never started", n.Name)
	}
	select {
	case <-exited:
		return 0, fmt.Errorf("the agent of %s is not running", n.Name)
	default:
	}
	pid := cmd.Process.Pid
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return 0, fmt.Errorf("the agent of %s: %w", n.Name, err)
	}
	if strings.TrimSpace(string(comm)) != "nsenter" {
		return pid, nil
	}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0, fmt.Errorf("the agent of %s: children of nsenter %d: %w", n.Name, pid, err)
	}
	f := strings.Fields(string(children))
	if len(f) == 0 {
		return 0, fmt.Errorf("the agent of %s: nsenter %d has no child yet", n.Name, pid)
	}
	return strconv.Atoi(f[0])
}

// BPFPinDir is where the node's agent pins its BPF maps (--bpf-pin-dir).
func (n *Node) BPFPinDir() string { return filepath.Join(n.dir, "bpffs", "clustermesh") }

// AgentSocketArgs are the --agent-socket flags naming every node's agent
// socket of the cluster, for `clustermesh status` and `clustermesh
// observe`: the bed's agents run as processes, not as pods, so the CLI
// reaches them as on a node, not through the pod proxy.
func (c *Cluster) AgentSocketArgs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, "--agent-socket", n.Name+"="+n.Socket)
	}
	return out
}

// CLIStream is a clustermesh command running in the background (observe
// --follow) whose output is read line by line as it is printed.
type CLIStream struct {
	args []string
	cmd  *exec.Cmd
	done chan struct{} // closed once the command exited and its output was read

	mu     sync.Mutex // guards stderr and err
	stderr strings.Builder
	err    error
}

// StartCLI runs the clustermesh binary with the bed's kubeconfig and args
// in the background; onLine is called with each line of its standard output
// (without the newline) and the time it was read, on one goroutine the
// stream owns, in order. Stop it.
func (b *Bed) StartCLI(ctx context.Context, onLine func(time.Time, string), args ...string) (*CLIStream, error) {
	cmd := exec.CommandContext(ctx, b.bin("clustermesh"), append([]string{"--kubeconfig", b.Kubeconfig()}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) } // as ^C: observe flushes and exits
	cmd.WaitDelay = 10 * time.Second
	s := &CLIStream{args: args, cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &s.mu, b: &s.stderr}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start clustermesh %s: %w", strings.Join(args, " "), err)
	}
	b.logf("    $ clustermesh %s &", strings.Join(args, " "))
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			onLine(time.Now(), sc.Text())
		}
		err := errors.Join(sc.Err(), cmd.Wait())
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
	}()
	return s, nil
}

// Stop interrupts the command (SIGINT, as ^C) unless it ended, waits for
// it and its output, and returns how it ended: nil for an exit after the
// interrupt or a clean exit.
func (s *CLIStream) Stop() error {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		<-s.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return fmt.Errorf("clustermesh %s: %w\n%s", strings.Join(s.args, " "), s.err, s.stderr.String())
	}
	return nil
}

// PID is the command's process ID.
func (s *CLIStream) PID() int { return s.cmd.Process.Pid }

// Done is closed once the command exited and its output was read.
func (s *CLIStream) Done() <-chan struct{} { return s.done }

// Stderr is what the command wrote to its standard error so far.
func (s *CLIStream) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// lockedWriter appends to b under mu.
type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

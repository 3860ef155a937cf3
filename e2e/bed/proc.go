//go:build linux

package bed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process the bed runs, with its log file.
type proc struct {
	name    string
	args    []string
	netns   string   // "" = the host's
	cgroup  string   // "" = the bed's
	env     []string // added to the bed's environment
	logPath string

	mu     sync.Mutex // guards cmd and exited
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// spawner forks every child from one OS thread locked for the bed's whole
// life, so that the children's parent-death signal (SIGKILL when the bed's
// process dies, even by a test timeout) is not sent early by a thread the
// Go runtime retires (netnsutil.Do ends its threads).
type spawner struct {
	reqs chan spawnReq
	done chan struct{}
}

type spawnReq struct {
	cmd *exec.Cmd
	res chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine, after the children
		defer close(s.done)
		for r := range s.reqs {
			r.res <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	res := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, res: res}
	return <-res
}

func (s *spawner) close() { close(s.reqs); <-s.done }

// start starts (or restarts) the process.
func (b *Bed) start(p *proc) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exitedLocked() {
		return fmt.Errorf("%s is already running", p.name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s: log file: %w", p.name, err)
	}
	args := p.args
	if p.netns != "" {
		args = append([]string{"nsenter", "--net=" + p.netns, "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if len(p.env) > 0 {
		cmd.Env = append(os.Environ(), p.env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if p.cgroup != "" {
		fd, err := syscall.Open(p.cgroup, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
		if err != nil {
			logf.Close()
			return fmt.Errorf("%s: open cgroup %s: %w", p.name, p.cgroup, err)
		}
		defer syscall.Close(fd)
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	fmt.Fprintf(logf, "==> %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	if err := b.spawn.start(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("start %s (%s): %w", p.name, args[0], err)
	}
	p.cmd, p.exited, p.err = cmd, make(chan struct{}), nil
	exited := p.exited
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

func (p *proc) exitedLocked() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// running reports whether the process runs; if not, why it stopped.
func (p *proc) running() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false, errors.New("never started")
	}
	if p.exitedLocked() {
		if p.err == nil {
			return false, errors.New("exited with status 0")
		}
		return false, fmt.Errorf("exited: %w", p.err)
	}
	return true, nil
}

// signal sends sig and, for SIGKILL or when wait is set, waits until the
// process is gone.
func (p *proc) signal(sig syscall.Signal, wait time.Duration) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig) // the process group: nsenter's child too
	select {
	case <-exited:
		return nil
	case <-time.After(wait):
		// A Go process dumps its goroutines on SIGQUIT: the log then
		// tells where it was stuck.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		return p.failure(fmt.Errorf("did not stop within %v after %v: sent SIGQUIT (goroutine dump in its log), then SIGKILL", wait, sig))
	}
}

// stop ends the process gracefully (SIGTERM, then SIGKILL after 10 s).
func (p *proc) stop() error { return p.signal(syscall.SIGTERM, 10*time.Second) }

// kill9 kills the process at once, as `kill -9` does.
func (p *proc) kill9() error { return p.signal(syscall.SIGKILL, 10*time.Second) }

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log %s: %v)", p.logPath, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + string(bytes.Join(lines, []byte("\n    ")))
}

// failure wraps err with the process's name, state and log tail.
func (p *proc) failure(err error) error {
	state := "running"
	if ok, why := p.running(); !ok {
		state = why.Error()
	}
	return fmt.Errorf("%s (%s; log %s): %w\n  last lines of its log:\n%s", p.name, state, p.logPath, err, p.tail(25))
}

// waitUntil polls cond every 200 ms until it holds, printing progress
// every 10 s; it fails after d, when ctx ends, or when one of procs has
// stopped, with the tail of the component's log.
func (b *Bed) waitUntil(ctx context.Context, d time.Duration, what string, cond func(context.Context) (bool, string), procs ...*proc) error {
	start := time.Now()
	b.logf("    waiting for %s", what)
	nextReport := start.Add(10 * time.Second)
	var last string
	for {
		ok, seen := cond(ctx)
		if ok {
			if time.Since(start) > 2*time.Second {
				b.logf("    ... %s after %.1fs", what, time.Since(start).Seconds())
			}
			return nil
		}
		last = seen
		for _, p := range procs {
			if alive, why := p.running(); !alive {
				return p.failure(fmt.Errorf("stopped while the bed waited for %s (last seen: %s): %w", what, last, why))
			}
		}
		now := time.Now()
		if now.After(start.Add(d)) {
			err := fmt.Errorf("timed out after %v waiting for %s (last seen: %s)", d, what, last)
			if len(procs) > 0 && len(procs) <= 2 { // the component waited for (not every process of the bed)
				return procs[0].failure(err)
			}
			return err
		}
		if now.After(nextReport) {
			b.logf("    ... still waiting for %s (%.0fs; last seen: %s)", what, now.Sub(start).Seconds(), last)
			nextReport = now.Add(10 * time.Second)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (b *Bed) newProc(name, netns, cgroup string, args ...string) *proc {
	p := &proc{name: name, args: args, netns: netns, cgroup: cgroup,
		logPath: filepath.Join(b.dir, "logs", strings.ReplaceAll(name, "/", "_")+".log")}
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	return p
}

// WaitUntil polls cond until it holds, printing progress, for at most d.
func (b *Bed) WaitUntil(ctx context.Context, d time.Duration, what string, cond func(context.Context) (bool, string)) error {
	return b.waitUntil(ctx, d, what, cond, b.allProcs()...)
}

func (b *Bed) allProcs() []*proc {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*proc
	for _, p := range b.procs {
		if ok, _ := p.running(); ok {
			out = append(out, p)
		}
	}
	return out
}

package kvstoremesh_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// writerChildEnv carries the config of a writer process started by
// runWriterProcess: a test binary started with it writes the updates
// instead of running its tests (see init).
const writerChildEnv = "CLUSTERMESH_KVSTOREMESH_WRITER_PROCESS"

type writerChildConfig struct {
	Peer    kvstore.ClientConfig `json:"peer"`
	Rate    int                  `json:"rate"`
	Updates int                  `json:"updates"`
}

// writerResult is what the writer process prints when done.
type writerResult struct {
	// PutNanos: how long each Put took, by sequence number.
	PutNanos []int64 `json:"putNanos"`
	// Retries: Puts that failed and were tried again.
	Retries int    `json:"retries"`
	Error   string `json:"error,omitempty"`
}

// writerProcess puts the benchmark's updates on the peer's etcd from a
// child process, so that neither the writer's Puts nor its pace compete
// with the agents' callbacks in the benchmark process.
type writerProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

// startWriterProcess starts the writer and waits until it is connected.
func startWriterProcess(b *testing.B, peer *kvtest.Process, rate, updates int) *writerProcess {
	b.Helper()
	raw, err := json.Marshal(writerChildConfig{Peer: peer.ClientConfig(), Rate: rate, Updates: updates})
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), writerChildEnv+"="+string(raw))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start the writer process: %v", err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	w := &writerProcess{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout)}
	line, err := w.stdout.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		b.Fatalf("writer process %d did not start: %q %v", cmd.Process.Pid, line, err)
	}
	return w
}

// Go tells the writer to start with update 0 due at start (the wall clock
// is shared by both processes), and returns what each Put took (with its
// retries) once every update was written, and the number of retries.
func (w *writerProcess) Go(b *testing.B, start time.Time) ([]time.Duration, int) {
	b.Helper()
	if _, err := fmt.Fprintf(w.stdin, "%d\n", start.UnixNano()); err != nil {
		b.Fatalf("start the writer: %v", err)
	}
	line, err := w.stdout.ReadString('\n')
	if err != nil {
		b.Fatalf("writer process %d: %v", w.cmd.Process.Pid, err)
	}
	var res writerResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		b.Fatalf("writer process %d: decode %q: %v", w.cmd.Process.Pid, line, err)
	}
	if res.Error != "" {
		b.Fatalf("writer process %d: %s", w.cmd.Process.Pid, res.Error)
	}
	out := make([]time.Duration, len(res.PutNanos))
	for i, n := range res.PutNanos {
		out[i] = time.Duration(n)
	}
	return out, res.Retries
}

func init() {
	raw := os.Getenv(writerChildEnv)
	if raw == "" {
		return
	}
	if err := runWriterChild(raw); err != nil {
		fmt.Fprintf(os.Stderr, "kvstoremesh writer process: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runWriterChild puts update seq (an ip entry carrying seq) at
// start+seq/rate, each in a goroutine of its own (open-loop), and prints
// what each Put took.
func runWriterChild(raw string) error {
	var cfg writerChildConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return fmt.Errorf("decode %s: %w", writerChildEnv, err)
	}
	if cfg.Rate <= 0 || cfg.Updates <= 0 {
		return fmt.Errorf("rate %d, updates %d: want positive numbers", cfg.Rate, cfg.Updates)
	}
	ctx, cancel := context.WithCancel(context.TODO())
	defer cancel()
	cli, err := kvstore.Connect(ctx, cfg.Peer)
	if err != nil {
		return fmt.Errorf("connect to the peer: %w", err)
	}
	defer cli.Close()
	in := bufio.NewReader(os.Stdin)
	if _, err := os.Stdout.WriteString("ready\n"); err != nil {
		return err
	}
	line, err := in.ReadString('\n')
	if err != nil {
		return fmt.Errorf("wait for the start: %w", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return fmt.Errorf("start %q: %w", line, err)
	}
	start := time.Unix(0, ns)
	prefix := schema.DefaultPaths().IPDefaultPrefix()
	res := writerResult{PutNanos: make([]int64, cfg.Updates)}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards res.Retries, res.Error
	interval := time.Second / time.Duration(cfg.Rate)
	for seq := range cfg.Updates {
		if d := time.Until(start.Add(time.Duration(seq) * interval)); d > 0 {
			time.Sleep(d) // the writer's pace
		}
		i := seq % fanoutKeys
		wg.Go(func() {
			// A Put etcd failed (an overloaded etcd times requests out)
			// is retried, as the clustermesh-apiserver's exporter does,
			// and counted; its latency includes the retries.
			t0 := time.Now()
			for {
				_, err := cli.Etcd().Put(ctx, hopKey(prefix, i), fanoutEntry(i, seq))
				if err == nil {
					break
				}
				mu.Lock()
				res.Retries++
				if time.Since(t0) > time.Minute {
					res.Error = fmt.Sprintf("put update %d: failing for a minute: %v", seq, err)
					mu.Unlock()
					break
				}
				mu.Unlock()
			}
			res.PutNanos[seq] = int64(time.Since(t0))
		})
	}
	wg.Wait()
	out, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}

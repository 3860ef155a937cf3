package observe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"

	"k8s.io/client-go/kubernetes"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/cli/mesh"
)

// Source opens GET /v1/flows on every agent of a cluster.
type Source interface {
	Open(ctx context.Context, req flowapi.Request) []Stream
}

// Stream is the answer of one agent: newline-delimited flowapi.Lines, or
// why it could not be asked.
type Stream struct {
	Node string
	Body io.ReadCloser
	Err  error
}

// SocketSource asks agents over their unix sockets, node name → socket
// path.
type SocketSource map[string]string

// Open implements Source.
func (s SocketSource) Open(ctx context.Context, req flowapi.Request) []Stream {
	var out []Stream
	for node, path := range s {
		body, err := OpenSocket(ctx, path, req)
		out = append(out, Stream{Node: node, Body: body, Err: err})
	}
	slices.SortFunc(out, func(a, b Stream) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// OpenSocket sends req to the agent at socket and returns the body of its
// answer; it ends with ctx.
func OpenSocket(ctx context.Context, socket string, req flowapi.Request) (io.ReadCloser, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}
	c := &http.Client{Transport: tr}
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/v1/flows?"+req.Values().Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("agent API at %s: %w (is the agent running, and is this its --api-socket?)", socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, fmt.Errorf("agent API at %s: %s: %s", socket, resp.Status, agentError(resp.Body))
	}
	return closeBoth{resp.Body, tr.CloseIdleConnections}, nil
}

// agentError returns the message of an agent's {"error"} answer, or the
// body as it is.
func agentError(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(b))
}

// closeBoth closes a body, then its transport's idle connections.
type closeBoth struct {
	io.ReadCloser
	after func()
}

func (c closeBoth) Close() error {
	err := c.ReadCloser.Close()
	c.after()
	return err
}

// ProxySource asks every agent pod of a cluster through the Kubernetes
// API's pod proxy (pods/proxy), as status.ProxySource does: the status
// sidecar of each agent pod relays GET /v1/flows from the agent's socket.
type ProxySource struct {
	Kube      kubernetes.Interface
	Namespace string
	// Port of the status sidecar (default mesh.AgentStatusPort).
	Port int
}

// Open implements Source.
func (s ProxySource) Open(ctx context.Context, req flowapi.Request) []Stream {
	pods, err := mesh.AgentPods(ctx, s.Kube, s.Namespace)
	if err != nil {
		return []Stream{{Node: "(all)", Err: err}}
	}
	if len(pods) == 0 {
		return []Stream{{Node: "(all)", Err: fmt.Errorf("no agent pod (%s=%s) in namespace %s: is the mesh installed there (-n/--clustermesh-namespace)?", mesh.NameLabel, mesh.AgentName, s.Namespace)}}
	}
	port := s.Port
	if port == 0 {
		port = mesh.AgentStatusPort
	}
	var out []Stream
	for _, pod := range pods {
		node := pod.Node
		if pod.Err != nil {
			out = append(out, Stream{Node: node, Err: pod.Err})
			continue
		}
		r := s.Kube.CoreV1().RESTClient().Get().Namespace(s.Namespace).Resource("pods").
			Name(fmt.Sprintf("%s:%d", pod.Name, port)).SubResource("proxy").Suffix("v1/flows")
		for k, vs := range req.Values() {
			for _, v := range vs {
				r = r.Param(k, v)
			}
		}
		body, err := r.Stream(ctx)
		if err != nil {
			err = fmt.Errorf("pod %s: GET /v1/flows through the pod proxy: %w", pod.Name, err)
		}
		out = append(out, Stream{Node: node, Body: body, Err: err})
	}
	return out
}

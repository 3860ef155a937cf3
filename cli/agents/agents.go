package agents

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/clustermesh/clustermesh/cli/mesh"
)

// Timeout bounds one request to one agent.
const Timeout = 10 * time.Second

// maxBody bounds an agent's answer.
const maxBody = 64 << 20

// Agent is one agent to ask: the node it runs on, and how to reach it (or
// why it cannot be).
type Agent struct {
	Node string
	Err  error
	get  func(ctx context.Context, path string, q url.Values) ([]byte, error)
}

// Source lists the agents of a cluster.
type Source interface {
	Agents(ctx context.Context) ([]Agent, error)
}

// Sockets asks agents over their unix sockets: node name → socket path.
type Sockets map[string]string

// Agents implements Source, sorted by node.
func (s Sockets) Agents(context.Context) ([]Agent, error) {
	out := make([]Agent, 0, len(s))
	for node, path := range s {
		out = append(out, Agent{Node: node, get: socketGet(path)})
	}
	slices.SortFunc(out, func(a, b Agent) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}

// ParseSockets reads --agent-socket values (<node>=<path>).
func ParseSockets(flag string, values []string) (Sockets, error) {
	s := Sockets{}
	for _, v := range values {
		node, path, ok := strings.Cut(v, "=")
		if !ok || node == "" || path == "" {
			return nil, fmt.Errorf("--%s %q: write it as <node>=<socket path>", flag, v)
		}
		s[node] = path
	}
	return s, nil
}

func socketGet(socket string) func(ctx context.Context, path string, q url.Values) ([]byte, error) {
	return func(ctx context.Context, path string, q url.Values) ([]byte, error) {
		c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}}
		defer c.CloseIdleConnections()
		u := "http://agent" + path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("request %s on agent socket %s: %w", path, socket, err)
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("agent API at %s: %w (is the agent running, and is this its --api-socket?)", socket, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if err != nil {
			return nil, fmt.Errorf("agent API at %s: GET %s: %w", socket, path, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("agent API at %s: GET %s: %s: %s", socket, path, resp.Status, agentError(body))
		}
		return body, nil
	}
}

// agentError returns the message of an agent's {"error"} answer, or the
// body as it is.
func agentError(b []byte) string {
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(b))
}

// Proxy asks every agent pod of a cluster through the Kubernetes API's
// pod proxy, to its status sidecar (status.Handler), as status and
// observe do.
type Proxy struct {
	Kube      kubernetes.Interface
	Namespace string
	// Port of the status sidecar (default mesh.AgentStatusPort).
	Port int
}

// Agents implements Source.
func (p Proxy) Agents(ctx context.Context) ([]Agent, error) {
	pods, err := mesh.AgentPods(ctx, p.Kube, p.Namespace)
	if err != nil {
		return nil, err
	}
	if len(pods) == 0 {
		return nil, fmt.Errorf("no agent pod (%s=%s) in namespace %s: is the mesh installed there (--clustermesh-namespace)?", mesh.NameLabel, mesh.AgentName, p.Namespace)
	}
	port := p.Port
	if port == 0 {
		port = mesh.AgentStatusPort
	}
	out := make([]Agent, 0, len(pods))
	for _, pod := range pods {
		a := Agent{Node: pod.Node, Err: pod.Err}
		name := pod.Name
		a.get = func(ctx context.Context, path string, q url.Values) ([]byte, error) {
			r := p.Kube.CoreV1().RESTClient().Get().Namespace(p.Namespace).Resource("pods").
				Name(fmt.Sprintf("%s:%d", name, port)).SubResource("proxy").Suffix(strings.TrimPrefix(path, "/"))
			for k, vs := range q {
				for _, v := range vs {
					r = r.Param(k, v)
				}
			}
			body, err := r.DoRaw(ctx)
			if err != nil {
				return nil, fmt.Errorf("pod %s: GET %s through the pod proxy: %w: %s", name, path, err, agentError(body))
			}
			return body, nil
		}
		out = append(out, a)
	}
	return out, nil
}

// Get asks the agent GET path?q and decodes its JSON answer into into.
func (a Agent) Get(ctx context.Context, path string, q url.Values, into any) error {
	if a.Err != nil {
		return a.Err
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	body, err := a.get(ctx, path, q)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("node %s: GET %s: decode the answer: %w", a.Node, path, err)
	}
	return nil
}

// Status is the part of GET /v1/status the read commands use.
type Status struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
}

// Answer is one agent's answer to a request of All.
type Answer[T any] struct {
	Node    string
	Cluster string
	Value   T
	Err     error
}

// All asks every agent GET path?q (and GET /v1/status first, for its
// cluster), one at a time, in the agents' order.
func All[T any](ctx context.Context, agents []Agent, path string, q url.Values) []Answer[T] {
	out := make([]Answer[T], 0, len(agents))
	for _, a := range agents {
		ans := Answer[T]{Node: a.Node}
		var st Status
		if ans.Err = a.Get(ctx, "/v1/status", nil, &st); ans.Err == nil {
			ans.Cluster = st.Cluster
			ans.Err = a.Get(ctx, path, q, &ans.Value)
		}
		out = append(out, ans)
	}
	return out
}

// ClusterOf returns the cluster of the first agent that answers GET
// /v1/status.
func ClusterOf(ctx context.Context, agents []Agent) (string, error) {
	var errs []string
	for _, a := range agents {
		var st Status
		if err := a.Get(ctx, "/v1/status", nil, &st); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return st.Cluster, nil
	}
	return "", fmt.Errorf("no agent answered GET /v1/status: %s", strings.Join(errs, "; "))
}

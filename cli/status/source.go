package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/clustermesh/clustermesh/cli/mesh"
)

// agentTimeout bounds one agent query.
const agentTimeout = 10 * time.Second

// SocketSource asks agents over their unix sockets, node name → socket
// path.
type SocketSource map[string]string

// Collect implements Source.
func (s SocketSource) Collect(ctx context.Context) ([]NodeStatus, error) {
	var out []NodeStatus
	for node, path := range s {
		st, err := QuerySocket(ctx, path)
		out = append(out, NodeStatus{Node: node, Status: st, Err: err})
	}
	return out, nil
}

// QueryRaw returns the body of GET /v1/status of the agent at socket.
func QueryRaw(ctx context.Context, socket string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent API at %s: %w (is the agent running, and is this its --api-socket?)", socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("agent API at %s: %w", socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent API at %s: %s: %s", socket, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// QuerySocket returns the status of the agent at socket.
func QuerySocket(ctx context.Context, socket string) (*AgentStatus, error) {
	body, err := QueryRaw(ctx, socket)
	if err != nil {
		return nil, err
	}
	return decode(body, "agent API at "+socket)
}

func decode(body []byte, where string) (*AgentStatus, error) {
	var st AgentStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("%s: decode the status: %w", where, err)
	}
	return &st, nil
}

// ProxySource asks every agent pod of a cluster through the Kubernetes
// API's pod proxy (pods/proxy, as `kubectl get --raw` would): the chart
// runs `clustermesh agent-status --serve :<port>` as a sidecar of each agent,
// which answers GET /v1/status from the agent's unix socket (read-only;
// the socket itself never leaves the node).
type ProxySource struct {
	Kube      kubernetes.Interface
	Namespace string
	// Port of the status sidecar (default mesh.AgentStatusPort).
	Port int
}

// Collect implements Source.
func (s ProxySource) Collect(ctx context.Context) ([]NodeStatus, error) {
	pods, err := mesh.AgentPods(ctx, s.Kube, s.Namespace)
	if err != nil {
		return nil, err
	}
	port := s.Port
	if port == 0 {
		port = mesh.AgentStatusPort
	}
	var out []NodeStatus
	for _, pod := range pods {
		node := pod.Node
		if pod.Err != nil {
			out = append(out, NodeStatus{Node: node, Err: pod.Err})
			continue
		}
		st, err := s.get(ctx, pod.Name, port)
		out = append(out, NodeStatus{Node: node, Status: st, Err: err})
	}
	return out, nil
}

func (s ProxySource) get(ctx context.Context, pod string, port int) (*AgentStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	body, err := s.Kube.CoreV1().RESTClient().Get().Namespace(s.Namespace).Resource("pods").
		Name(fmt.Sprintf("%s:%d", pod, port)).SubResource("proxy").Suffix("v1/status").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("pod %s: GET /v1/status through the pod proxy: %w: %s", pod, err, strings.TrimSpace(string(body)))
	}
	return decode(body, "pod "+pod)
}

// Package cniapi is the part of the agent's local API the CNI plugin uses:
// the attachment of a pod's interface (ADD), its removal (DEL) and its
// check (CHECK), as wire types and a client over the agent's unix socket.
package cniapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// DefaultSocket is where the agent serves its local API by default.
const DefaultSocket = "/var/run/clustermesh/agent.sock"

// AttachmentRequest is the body of PUT
// /v1/cni/attachments/{containerID}/{ifName}: what the CNI chain created
// for a pod. The agent stores it as a state.AttachmentRow.
type AttachmentRequest struct {
	// NetNS is the pod's network namespace path.
	NetNS string `json:"netns"`
	// HostIfName is the host side of the pod's interface (the veth peer
	// the main plugin created in the agent's network namespace).
	HostIfName string `json:"hostIfName"`
	// IPs are the interface's addresses (no prefix length).
	IPs          []string `json:"ips"`
	PodNamespace string   `json:"podNamespace"`
	PodName      string   `json:"podName"`
}

// Status is the response of PUT and GET: the attachment as the datapath
// holds it.
type Status struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	HostIfName  string `json:"hostIfName"`
	HostIfIndex int    `json:"hostIfIndex"`
	// Attached: the datapath enforces the endpoint's policy on the
	// interface.
	Attached   bool   `json:"attached"`
	DatapathID uint16 `json:"datapathID,omitempty"`
	Identity   uint32 `json:"identity,omitempty"`
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

// Path is the API path of the attachment of a container's interface.
func Path(containerID, ifName string) string {
	return "/v1/cni/attachments/" + url.PathEscape(containerID) + "/" + url.PathEscape(ifName)
}

// The CNI specification's rules for container IDs and interface names.
var containerIDPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// ValidateContainerID checks a CNI container ID.
func ValidateContainerID(id string) error {
	if !containerIDPattern.MatchString(id) {
		return fmt.Errorf("container ID %q: must start with a letter or digit and contain only letters, digits, '_', '.' and '-' (CNI_CONTAINERID)", id)
	}
	return nil
}

// ValidateIfName checks a Linux interface name.
func ValidateIfName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s: empty interface name", what)
	case len(name) > 15:
		return fmt.Errorf("%s %q: longer than 15 bytes (IFNAMSIZ)", what, name)
	case name == "." || name == "..", strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("%s %q: not a valid interface name", what, name)
	}
	return nil
}

// Client talks to the agent's local API on its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the agent listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// ErrUnreachable wraps errors of reaching the agent at all (no socket,
// connection refused), as opposed to errors the agent returned.
var ErrUnreachable = errors.New("clustermesh-agent unreachable")

// WaitParam is the query parameter of PUT that bounds how long the agent
// waits for the datapath (a Go duration); the agent then answers with
// what is missing.
const WaitParam = "wait"

// Put reports an attachment and waits until the datapath enforces the
// endpoint's policy on it. The agent gives up shortly before ctx's
// deadline, so that its answer says what is missing.
func (c *Client) Put(ctx context.Context, containerID, ifName string, a AttachmentRequest) (Status, error) {
	path := Path(containerID, ifName)
	if dl, ok := ctx.Deadline(); ok {
		wait := time.Until(dl)
		wait -= min(wait/10, time.Second) // time for the answer
		path += "?" + WaitParam + "=" + url.QueryEscape(wait.Round(time.Millisecond).String())
	}
	var st Status
	err := c.do(ctx, http.MethodPut, path, a, &st)
	return st, err
}

// Get returns the attachment's status.
func (c *Client) Get(ctx context.Context, containerID, ifName string) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, Path(containerID, ifName), nil, &st)
	return st, err
}

// Delete removes an attachment; absent is not an error.
func (c *Client) Delete(ctx context.Context, containerID, ifName string) error {
	return c.do(ctx, http.MethodDelete, Path(containerID, ifName), nil, nil)
}

// Healthy checks that the agent answers.
func (c *Client) Healthy(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

func (c *Client) do(ctx context.Context, method, path string, body, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("%w at %s (is the agent running on this node?): %w", ErrUnreachable, c.socket, err)
		}
		return fmt.Errorf("%s %s on %s: %w", method, path, c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("clustermesh-agent: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("clustermesh-agent: %s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if into == nil {
		return nil
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

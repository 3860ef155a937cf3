package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
)

// Client talks to a workload's control API: connections made through it
// leave from the pod.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client of the control socket.
func NewClient(socket string) *Client {
	return &Client{Socket: socket, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}}
}

func (c *Client) call(ctx context.Context, method, path string, body, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://pod"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("workload control socket %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("workload %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	if into == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// Who returns cluster/namespace/pod of the workload.
func (c *Client) Who(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://pod/v1/who", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(bytes.TrimSpace(b)), err
}

// Dial connects from the pod, exchanges one message and closes. A failed
// connection is a result (Error set), not an error; err is for a control
// API that does not answer.
func (c *Client) Dial(ctx context.Context, req DialRequest) (DialResult, error) {
	var res DialResult
	err := c.call(ctx, http.MethodPost, "/v1/dial", req, &res)
	return res, err
}

// Sink sends n bytes from the pod to addr over one TCP connection.
func (c *Client) Sink(ctx context.Context, addr string, n int64) (SinkResult, error) {
	var res SinkResult
	if err := c.call(ctx, http.MethodPost, "/v1/sink", SinkRequest{Addr: addr, Bytes: n}, &res); err != nil {
		return res, err
	}
	if res.Error != "" {
		return res, errors.New(res.Error)
	}
	return res, nil
}

// Conn is a TCP connection the pod holds open.
type Conn struct {
	c             *Client
	ID            string
	Local, Remote string
}

// Open connects from the pod and keeps the connection.
func (c *Client) Open(ctx context.Context, addr string) (*Conn, error) {
	var res ConnResult
	if err := c.call(ctx, http.MethodPost, "/v1/conns", DialRequest{Addr: addr}, &res); err != nil {
		return nil, err
	}
	if res.Error != "" {
		return nil, fmt.Errorf("connect to %s: %s", addr, res.Error)
	}
	return &Conn{c: c, ID: res.ID, Local: res.Local, Remote: res.Remote}, nil
}

// Exchange sends a line on the held connection and returns the answer.
func (k *Conn) Exchange(ctx context.Context, msg string) (string, error) {
	var res DialResult
	if err := k.c.call(ctx, http.MethodPost, "/v1/conns/"+k.ID, DialRequest{Message: msg}, &res); err != nil {
		return "", err
	}
	if res.Error != "" {
		return "", fmt.Errorf("exchange on %s -> %s: %s", k.Local, k.Remote, res.Error)
	}
	return res.Reply, nil
}

// Close closes the held connection.
func (k *Conn) Close(ctx context.Context) error {
	return k.c.call(ctx, http.MethodDelete, "/v1/conns/"+k.ID, nil, nil)
}

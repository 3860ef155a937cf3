package kvstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
)

// reconnectParams bound how long the client waits between attempts to
// reach an etcd that went away: gRPC's default grows to two minutes, so an
// agent could stay cut off from a peer that was back long ago. At most a
// second: after a long outage (R2, a 60 s partition) the first attempt
// after the heal came up to 3.6 s late with 3 s, and convergence took
// 3.6-5.1 s; with 1 s it takes 2.1-2.4 s. One attempt a second per client
// against an etcd that is down is cheap.
var reconnectParams = grpc.ConnectParams{
	Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// Client is a connection to one etcd cluster with the project's rate limit.
// It is safe for concurrent use.
type Client struct {
	etcd    *clientv3.Client
	limiter *rate.Limiter
	cfg     ClientConfig
}

// Connect dials the etcd cluster described by cfg and checks that at least
// one endpoint answers, so that a wrong CA, a wrong certificate or an
// unreachable cluster is reported here with a clear error rather than as a
// timeout later. It does not retry: callers own their reconnect loop.
func Connect(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	ec, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		TLS:                  tc,
		Username:             cfg.Username,
		Password:             cfg.Password,
		DialTimeout:          time.Duration(cfg.DialTimeout),
		DialKeepAliveTime:    time.Duration(cfg.KeepAliveTime),
		DialKeepAliveTimeout: time.Duration(cfg.KeepAliveTimeout),
		PermitWithoutStream:  true,
		DialOptions:          []grpc.DialOption{grpc.WithConnectParams(reconnectParams)},
		Logger:               zap.NewNop(),
		Context:              context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", cfg.Endpoints, err)
	}
	c := &Client{etcd: ec, cfg: cfg, limiter: rate.NewLimiter(rate.Inf, 0)}
	if cfg.RateLimitQPS > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimitQPS), cfg.RateLimitBurst)
	}
	if err := c.probe(ctx, tc); err != nil {
		_ = ec.Close()
		return nil, err
	}
	return c, nil
}

// probe asks each endpoint for its status until one answers. When none does
// it diagnoses the first endpoint with a plain TLS handshake, whose error
// (unknown authority, bad certificate) is far clearer than gRPC's timeout.
func (c *Client) probe(ctx context.Context, tc *tls.Config) error {
	var errs []error
	for _, ep := range c.cfg.Endpoints {
		pctx, cancel := context.WithTimeout(ctx, time.Duration(c.cfg.DialTimeout))
		_, err := c.etcd.Status(pctx, ep)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if tc != nil {
			if herr := handshake(ctx, ep, tc, time.Duration(c.cfg.DialTimeout)); herr != nil {
				return herr
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
}

func handshake(ctx context.Context, endpoint string, tc *tls.Config, timeout time.Duration) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil
	}
	host := u.Hostname()
	cfg := tc.Clone()
	cfg.ServerName = host
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(hctx, "tcp", u.Host)
	if err != nil {
		var netErr *net.OpError
		if errors.As(err, &netErr) && netErr.Op == "dial" {
			return nil // not a TLS problem; reported as unreachable
		}
		return fmt.Errorf("%w with %s: %w (check that trusted-ca-file is the CA of that cluster's clustermesh-apiserver and that cert-file was issued by it)", ErrTLS, endpoint, err)
	}
	defer conn.Close()
	// With TLS 1.3 the server judges our certificate after the client side
	// of the handshake is done: its verdict arrives as an alert on read.
	// A healthy etcd waits for the HTTP/2 preface, so the read times out.
	_ = conn.SetReadDeadline(time.Now().Add(min(timeout, time.Second)))
	var one [1]byte
	if _, err := conn.Read(one[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return fmt.Errorf("%w with %s: the server refused our client certificate: %w (check that cert-file was issued by the CA that etcd trusts)", ErrTLS, endpoint, err)
	}
	return nil
}

// Etcd returns the underlying etcd client.
func (c *Client) Etcd() *clientv3.Client { return c.etcd }

// Config returns the validated configuration the client was made from.
func (c *Client) Config() ClientConfig { return c.cfg }

// Limit waits for the rate limiter to allow one request.
func (c *Client) Limit(ctx context.Context) error {
	if err := c.limiter.Wait(ctx); err != nil {
		return fmt.Errorf("etcd rate limit: %w", err)
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.etcd.Close() }

// LogValue lets slog print a client as its endpoints.
func (c *Client) LogValue() slog.Value { return slog.AnyValue(c.cfg.Endpoints) }

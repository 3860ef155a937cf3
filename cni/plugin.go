// Package cni is clustermesh-cni, a chained CNI plugin: it runs after the
// main plugin (ptp, bridge: anything that gives the pod a veth pair), hands
// the pod's interface to the clustermesh-agent of the node and returns once
// the agent enforces the pod's policy on it. It passes the previous result
// through unchanged.
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/clustermesh/clustermesh/agent/cniapi"
)

// About is printed when the plugin is run without CNI_COMMAND.
const About = "clustermesh-cni: chained CNI plugin of clustermesh (runs after the main plugin, e.g. ptp)"

// Versions are the CNI versions supported: those with prevResult.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// NetConf is the plugin's entry in the network configuration list.
type NetConf struct {
	types.PluginConf
	// AgentSocket is the agent's local API (default cniapi.DefaultSocket).
	AgentSocket string `json:"agentSocket,omitempty"`
	// Timeout bounds how long ADD waits for the agent (a Go duration,
	// default 60s).
	Timeout string `json:"timeout,omitempty"`
}

// podArgs are the Kubernetes arguments the runtime passes in CNI_ARGS.
type podArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE types.UnmarshallableString //nolint:revive // the CNI_ARGS name
	K8S_POD_NAME      types.UnmarshallableString //nolint:revive // the CNI_ARGS name
}

// Funcs returns the skel commands, run under ctx. Results go to stdout, as
// CNI wants.
func Funcs(ctx context.Context) skel.CNIFuncs {
	return skel.CNIFuncs{
		Add:    func(a *skel.CmdArgs) error { return Add(ctx, a) },
		Del:    func(a *skel.CmdArgs) error { return Del(ctx, a) },
		Check:  func(a *skel.CmdArgs) error { return Check(ctx, a) },
		Status: func(a *skel.CmdArgs) error { return Status(ctx, a) },
	}
}

func parseConf(data []byte) (*NetConf, time.Duration, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, 0, fmt.Errorf("clustermesh-cni: network configuration is not valid JSON: %w", err)
	}
	if conf.AgentSocket == "" {
		conf.AgentSocket = cniapi.DefaultSocket
	}
	timeout := 60 * time.Second
	if conf.Timeout != "" {
		d, err := time.ParseDuration(conf.Timeout)
		if err != nil || d <= 0 {
			return nil, 0, fmt.Errorf("clustermesh-cni: \"timeout\" %q: want a positive duration such as \"60s\"", conf.Timeout)
		}
		timeout = d
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, 0, fmt.Errorf("clustermesh-cni: prevResult: %w", err)
	}
	return conf, timeout, nil
}

// prevResult returns the main plugin's result, which a chained plugin
// needs.
func prevResult(conf *NetConf) (*types100.Result, error) {
	if conf.PrevResult == nil {
		return nil, errors.New("clustermesh-cni: no prevResult: it is a chained plugin; list it after the main plugin (e.g. ptp) in a network configuration list")
	}
	res, err := types100.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, fmt.Errorf("clustermesh-cni: prevResult: %w", err)
	}
	return res, nil
}

// Add reports the pod's interface to the agent and waits until its policy
// is enforced on it.
func Add(ctx context.Context, args *skel.CmdArgs) error {
	conf, timeout, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	res, err := prevResult(conf)
	if err != nil {
		return err
	}
	var pa podArgs
	if err := types.LoadArgs(args.Args, &pa); err != nil {
		return fmt.Errorf("clustermesh-cni: CNI_ARGS: %w", err)
	}
	if pa.K8S_POD_NAMESPACE == "" || pa.K8S_POD_NAME == "" {
		return errors.New("clustermesh-cni: CNI_ARGS lacks K8S_POD_NAMESPACE or K8S_POD_NAME (the container runtime sets them for Kubernetes pods)")
	}
	host, err := hostInterface(res, args.Netns)
	if err != nil {
		return err
	}
	req := cniapi.AttachmentRequest{
		NetNS: args.Netns, HostIfName: host, IPs: containerIPs(res, args.IfName, args.Netns),
		PodNamespace: string(pa.K8S_POD_NAMESPACE), PodName: string(pa.K8S_POD_NAME),
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cniapi.NewClient(conf.AgentSocket).Put(ctx, args.ContainerID, args.IfName, req); err != nil {
		return fmt.Errorf("clustermesh-cni: pod %s/%s: %w", req.PodNamespace, req.PodName, err)
	}
	return types.PrintResult(conf.PrevResult, conf.CNIVersion)
}

// Del removes the attachment. An agent that is not running is not an
// error: on start it forgets attachments whose interface is gone.
func Del(ctx context.Context, args *skel.CmdArgs) error {
	conf, timeout, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = cniapi.NewClient(conf.AgentSocket).Delete(ctx, args.ContainerID, args.IfName)
	if err != nil && !errors.Is(err, cniapi.ErrUnreachable) {
		return fmt.Errorf("clustermesh-cni: %w", err)
	}
	return nil
}

// Check verifies that the agent enforces the pod's policy on its interface.
func Check(ctx context.Context, args *skel.CmdArgs) error {
	conf, timeout, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	if _, err := prevResult(conf); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := cniapi.NewClient(conf.AgentSocket).Get(ctx, args.ContainerID, args.IfName)
	if err != nil {
		return fmt.Errorf("clustermesh-cni: %w", err)
	}
	if !st.Attached {
		return fmt.Errorf("clustermesh-cni: interface %s (host side %s) is not attached by the agent", args.IfName, st.HostIfName)
	}
	return nil
}

// Status reports whether the agent answers (CNI 1.1 STATUS).
func Status(ctx context.Context, args *skel.CmdArgs) error {
	conf, timeout, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := cniapi.NewClient(conf.AgentSocket).Healthy(ctx); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "clustermesh-agent is not available", err.Error())
	}
	return nil
}

// hostInterface is the host side of the pod's veth in the main plugin's
// result: the interface without a sandbox. Plugins that also report a
// bridge list it before the veth; the veth is the last host interface.
func hostInterface(res *types100.Result, netns string) (string, error) {
	var host []string
	for _, i := range res.Interfaces {
		if i != nil && i.Sandbox == "" && i.Name != "" {
			host = append(host, i.Name)
		}
	}
	if len(host) == 0 {
		return "", fmt.Errorf("clustermesh-cni: the main plugin's result lists no host-side interface for netns %s; chain clustermesh-cni after a plugin that creates a veth pair (ptp, bridge)", netns)
	}
	return host[len(host)-1], nil
}

// containerIPs are the addresses of the pod's interface ifName.
func containerIPs(res *types100.Result, ifName, netns string) []string {
	var out []string
	for _, ip := range res.IPs {
		if ip == nil {
			continue
		}
		if ip.Interface != nil {
			i := *ip.Interface
			if i < 0 || i >= len(res.Interfaces) || res.Interfaces[i] == nil {
				continue
			}
			if iface := res.Interfaces[i]; iface.Name != ifName || (iface.Sandbox != "" && !strings.EqualFold(iface.Sandbox, netns)) {
				continue
			}
		}
		out = append(out, ip.Address.IP.String())
	}
	return out
}

package cniserver

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/clustermesh/clustermesh/agent/cniapi"
	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
)

// attachmentOf validates an ADD and resolves the host-side interface in
// the network namespace netns ("": the agent's).
func attachmentOf(cid, ifName string, req cniapi.AttachmentRequest, netns string) (state.AttachmentRow, error) {
	var errs []error
	if err := cniapi.ValidateContainerID(cid); err != nil {
		errs = append(errs, err)
	}
	if err := cniapi.ValidateIfName("interface", ifName); err != nil {
		errs = append(errs, err)
	}
	if err := cniapi.ValidateIfName("hostIfName", req.HostIfName); err != nil {
		errs = append(errs, fmt.Errorf("%w (the host side of the pod's veth, from the main plugin's result)", err))
	}
	if req.PodNamespace == "" || req.PodName == "" {
		errs = append(errs, errors.New("podNamespace and podName are required (K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS, set by the container runtime)"))
	}
	at := state.AttachmentRow{
		Key: datapath.AttachmentKey(cid, ifName), ContainerID: cid, IfName: ifName, NetNS: req.NetNS,
		HostIfName: req.HostIfName, Namespace: req.PodNamespace, Pod: req.PodName,
	}
	for _, s := range req.IPs {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			errs = append(errs, fmt.Errorf("ips: %q is not an IP address", s))
			continue
		}
		if ip = ip.Unmap(); !slices.Contains(at.IPs, ip) {
			at.IPs = append(at.IPs, ip)
		}
	}
	slices.SortFunc(at.IPs, netip.Addr.Compare)
	if err := errors.Join(errs...); err != nil {
		return at, err
	}
	idx, err := hostIfIndex(netns, req.HostIfName)
	if err != nil {
		return at, fmt.Errorf("hostIfName: %w (the main plugin must create it in the agent's network namespace)", err)
	}
	at.HostIfIndex = idx
	return at, nil
}

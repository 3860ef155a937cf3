// Package bed is the multi-cluster test bed: whole clusters on one machine,
// made of the real components, on which the demo (cmd/clustermesh-demo)
// and the end-to-end tests run (DESIGN.md §9).
//
// What is real:
//   - per cluster, a kube-apiserver with its etcd (envtest, binaries built by
//     hack/kube-binaries.sh) and a kube-controller-manager process running the
//     EndpointSlice, namespace and garbage-collector controllers;
//   - the project's binaries as processes: `clustermesh install`, one
//     clustermesh-apiserver per cluster (embedded etcd, the certificates
//     install created), `clustermesh connect`/`disconnect`/`status --wait`;
//   - per node, a network namespace on a shared underlay (a bridge in a
//     namespace of its own) running the clustermesh-agent binary with
//     --datapath=bpf and WireGuard (wireguard-go), its own bpffs and cgroup;
//     pod CIDR routes and tunnels between nodes are the agent's;
//   - per pod, a network namespace wired by the real CNI chain (ptp +
//     host-local + clustermesh-cni through libcni) running cmd/meshecho in
//     the node's cgroup (so the agent's socket load balancing applies).
//
// Options.DualStack makes every cluster dual-stack (nodes, pod CIDRs,
// pods, Service CIDRs; addrs.go has the address plan), Options.Family
// FamilyIPv6 IPv6 only (the same IPv6 plan without the IPv4 one; the
// control plane is still reached on the host's 127.0.0.1); the default is
// IPv4 only.
//
// What the bed does itself, standing in for the kubelet and the container
// runtime: it registers the Nodes (pod CIDR, InternalIP = the underlay
// address, Ready), creates the Pod objects, calls the CNI chain, starts
// the workload and writes the Pods' status (IPs, Ready) as a kubelet would;
// it copies the mesh Secret into each cluster's mesh directory (the
// kubelet's Secret volume) and reports the clustermesh-apiserver Deployment
// ready (the process runs outside Kubernetes). Control-plane addresses are
// loopback ports of the host; each node namespace reaches them through a
// loopback forwarder the bed runs (the nodes' path to their control plane,
// which a real cluster has over its network).
//
// Faults: KillAPIServer, KillAgent, and Partition, which cuts the control
// plane between two clusters (each clustermesh-apiserver, in a cgroup of
// its own, loses the other's etcd: iptables DROP rules in the host
// namespace, matched on that cgroup and on the connections open at the
// cut) and nothing else; its heal, Close or the next bed's sweep removes
// the rules.
//
// Rules: every wait says what it waits for and prints progress; a failure
// names the component and shows the tail of its log; Close stops every
// process, deletes every namespace, mount and cgroup the bed made, also
// after a failure or a cancelled context. Traffic goes only between the
// bed's namespaces and loopback.
package bed

// Command clustermesh-demo runs the two-cluster demo on the bed (see
// package e2e/demo): real kube-apiservers and controller managers,
// clustermesh install/connect/status, clustermesh-apiservers, agents with
// the eBPF datapath and WireGuard in node namespaces, pods wired by the CNI
// chain, and real connections between them. It needs root.
package main

// Package demo runs the two-cluster demo: two real kube-apiservers, the
// real clustermesh-apiserver of each (embedded etcd, installed by
// `clustermesh install`), paired by `clustermesh connect`, and a
// clustermesh-agent per node (datapath in memory: it shows what the kernel
// would be told). It then shows what users came for: a global Service
// merging backends of both clusters, affinity, and a cross-cluster policy
// (x-wing of cluster1 may reach rebel-base of cluster2, tie-fighter may
// not), each checked, not only printed.
//
// Rules: every step checks its outcome and Run fails with the step that
// did not happen; everything started is stopped when Run returns.
package demo

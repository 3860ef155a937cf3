// Package demo tells the seeds' story on the multi-cluster bed (e2e/bed)
// with real traffic: two clusters installed and paired with the CLI, a pod
// of cluster1 answered by a pod of cluster2 through WireGuard, the global
// Service rebel-base with affinity and failover, and Cilium's cross-cluster
// policy example letting x-wing through and dropping tie-fighter. Each step
// prints what it does as it happens; the demo ends with a table of what was
// expected and what was seen.
//
// Rules: every step checks its outcome against a real connection; Run
// fails if any step did not see what it expected; the bed is torn down
// when Run returns, also on failure or cancellation.
package demo

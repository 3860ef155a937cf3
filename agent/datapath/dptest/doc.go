// Package dptest holds the tests every datapath implementation passes: a
// conformance table for the Table contract (Run), and a reconciler run
// against one table (Reconcile), shared by the in-memory datapath, the eBPF
// one and the reconciler's own tests.
//
// Rules: only tests import this package; it uses nothing but the Datapath
// interface, so that a behaviour one implementation needs is a behaviour
// every implementation has.
package dptest

// Package testing holds the test harnesses (k8stest, meshtest, testutil),
// kept apart from internal/'s leaf utilities: tests, the test bed (e2e/bed)
// and the demo built on it import them; the product's binaries (agent,
// apiserver, CNI plugin, CLI) never do.
package testing

// Package scenarios holds the end-to-end tests: the seeds' scenarios on
// the multi-cluster bed (e2e/bed), each shown by real connections between
// pods that succeed or are refused.
package scenarios

// Package install renders the project's Helm chart (charts/clustermesh)
// with a small text/template renderer that implements the subset of Helm's
// template language the chart uses, generates a cluster's certificates
// (keeping the ones already installed), and applies the result with
// server-side apply.
//
// Rules: the chart stays a valid Helm chart (helm template renders the
// same objects); re-installing keeps the CA and the certificates that are
// still good, and never touches the peers the mesh Secret holds.
package install

// Package install installs the project's Helm chart (charts/clustermesh)
// through Helm's SDK (helm.sh/helm/v4) as the release "clustermesh" of the
// mesh's namespace, upgrading it when it exists; it generates a cluster's
// certificates (keeping the ones already installed) and applies the
// chart's CRDs itself, with server-side apply, since Helm never upgrades
// crds/.
//
// Rules: what `clustermesh install` installs is a Helm release a user can
// inspect, upgrade and uninstall with the helm command; the chart's
// values.schema.json refuses a wrong value, naming it, before anything is
// applied; re-installing keeps the CA and the certificates that are still
// good, and never touches the peers the mesh Secret holds (server-side
// apply leaves the fields `clustermesh connect` owns alone).
package install

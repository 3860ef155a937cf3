package mesh

import "fmt"

// Validate checks that the clusters can be meshed together: distinct
// contexts, names and IDs, the same max connected clusters, pod CIDRs
// that do not overlap. Every conflict is reported, each naming both values
// and the fix.
func Validate(clusters []*Settings) error {
	var errs []error
	for i, a := range clusters {
		for _, b := range clusters[i+1:] {
			errs = append(errs, validatePair(a, b)...)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w:\n  %w", ErrConflict, joinIndented(errs))
	}
	return nil
}

func validatePair(a, b *Settings) []error {
	var errs []error
	where := func(s *Settings) string {
		return fmt.Sprintf("%s (ConfigMap %s/%s)", s.Cluster, s.Cluster.Namespace, ConfigMapName)
	}
	if a.Cluster.Context == b.Cluster.Context {
		return []error{fmt.Errorf("%s is given twice: name two different kubeconfig contexts", a.Cluster)}
	}
	if a.Name == b.Name {
		errs = append(errs, fmt.Errorf("same cluster name: %s and %s both have %s %q; every cluster of a mesh needs its own name: "+
			"reinstall one with `clustermesh install --cluster-name <unique name>`",
			where(a), where(b), KeyClusterName, a.Name))
	}
	if a.ID == b.ID {
		errs = append(errs, fmt.Errorf("same cluster ID: %s (cluster %s) and %s (cluster %s) both have %s %d; "+
			"every cluster of a mesh needs its own ID: reinstall one with `clustermesh install --cluster-id <unused ID>`",
			where(a), a.Name, where(b), b.Name, KeyClusterID, a.ID))
	}
	if a.MaxConnectedClusters != b.MaxConnectedClusters {
		errs = append(errs, fmt.Errorf("different max connected clusters: cluster %s (%s) has %s %d, cluster %s (%s) has %d; "+
			"every cluster of a mesh must use the same value: reinstall one with `clustermesh install --max-connected-clusters %d`",
			a.Name, a.Cluster, KeyMaxConnectedClusters, a.MaxConnectedClusters, b.Name, b.Cluster, b.MaxConnectedClusters,
			max(a.MaxConnectedClusters, b.MaxConnectedClusters)))
	}
	for _, pa := range a.PodCIDRs {
		for _, pb := range b.PodCIDRs {
			if pa.Overlaps(pb) {
				errs = append(errs, fmt.Errorf("overlapping pod CIDRs: cluster %s (%s) has %s %s, cluster %s (%s) has %s; "+
					"pods of meshed clusters are routed by IP, so their CIDRs must be disjoint: give one cluster another pod CIDR "+
					"(and correct %s in its ConfigMap)", a.Name, a.Cluster, KeyPodCIDRs, pa, b.Name, b.Cluster, pb, KeyPodCIDRs))
			}
		}
	}
	return errs
}

// joinIndented joins errors one per line, indented, and keeps them
// reachable by errors.Is.
func joinIndented(errs []error) error {
	msg := ""
	for i, e := range errs {
		if i > 0 {
			msg += "\n  "
		}
		msg += e.Error()
	}
	return &multiError{msg: msg, errs: errs}
}

type multiError struct {
	msg  string
	errs []error
}

func (m *multiError) Error() string   { return m.msg }
func (m *multiError) Unwrap() []error { return m.errs }

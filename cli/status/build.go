package status

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Build summarizes what Collect gathered.
func Build(in Inputs) Report {
	r := Report{Cluster: in.Cluster, ClusterID: in.ClusterID, APIServer: in.APIServer,
		Configured: slices.Clone(in.Configured), Nodes: len(in.Nodes)}
	if r.Configured == nil {
		r.Configured = []string{}
	}
	r.Errors = append(r.Errors, in.Problems...)
	peers := map[string]*Peer{}
	peer := func(name string) *Peer {
		if p, ok := peers[name]; ok {
			return p
		}
		p := &Peer{Name: name, Configured: slices.Contains(in.Configured, name), Synced: map[string]int{}}
		for _, k := range Kinds {
			p.Synced[k] = 0
		}
		peers[name] = p
		return p
	}
	for _, name := range in.Configured {
		peer(name)
	}
	var connected []int
	nodes := slices.Clone(in.Nodes)
	slices.SortFunc(nodes, func(a, b NodeStatus) int { return cmp.Compare(a.Node, b.Node) })
	for _, n := range nodes {
		if n.Err != nil || n.Status == nil {
			msg := "no status"
			if n.Err != nil {
				msg = n.Err.Error()
			}
			r.Errors = append(r.Errors, Problem{Node: n.Node, Message: "agent did not answer: " + msg,
				Hint: "check the agent pod on this node: kubectl -n <namespace> logs <clustermesh-agent pod>"})
			continue
		}
		r.Answered++
		seen := map[string]bool{}
		count := 0
		for _, ps := range n.Status.Peers {
			seen[ps.Name] = true
			p := peer(ps.Name)
			if ps.ClusterID != 0 {
				p.ClusterID = ps.ClusterID
			}
			if ps.Connected {
				p.Connected++
				count++
			}
			if ps.Ready {
				p.Ready++
			}
			for k, ok := range ps.Synced {
				if ok {
					p.Synced[k]++
				}
			}
			for _, v := range ps.Rejected {
				p.Rejected += v
			}
			if ps.ThroughCache {
				p.ThroughCache++
			}
			if prob, bad := peerProblem(n.Node, ps, p.Configured); bad {
				r.Errors = append(r.Errors, prob)
			}
		}
		for _, name := range in.Configured {
			if !seen[name] {
				r.Errors = append(r.Errors, Problem{Node: n.Node, Peer: name, Message: "configured in the mesh Secret but unknown to the agent",
					Hint: "the kubelet refreshes Secret volumes within about a minute; if it lasts, restart the agent pod"})
			}
		}
		connected = append(connected, count)
	}
	r.ConnectedPeers = summarize(connected)
	r.Errors = append(r.Errors, cacheProblems(in.APIServer.Cache, peers)...)
	for _, name := range slices.Sorted(maps.Keys(peers)) {
		r.Peers = append(r.Peers, *peers[name])
	}
	if r.Peers == nil {
		r.Peers = []Peer{}
	}
	r.Versions, r.Warnings = versions(in.CLIVersion, nodes)
	if r.Versions == nil {
		r.Versions = []VersionCount{}
	}
	return r
}

// cacheProblems says why a peer that agents read through the cache of
// remote state is not (fully) there.
func cacheProblems(cache []CachedPeer, peers map[string]*Peer) []Problem {
	var out []Problem
	for _, name := range slices.Sorted(maps.Keys(peers)) {
		p := peers[name]
		if p.ThroughCache == 0 || !p.Configured {
			continue
		}
		i := slices.IndexFunc(cache, func(c CachedPeer) bool { return c.Name == name })
		hint := "the clustermesh-apiserver caches the peers of its --mesh-config-dir (the mesh Secret) when its --cache is on: " +
			"check its logs and GET /v1/cache on its health port"
		switch {
		case i < 0:
			out = append(out, Problem{Peer: name, Message: fmt.Sprintf("%d nodes read this peer through the cache of remote state, which does not publish it", p.ThroughCache), Hint: hint})
		case cache[i].Connection != nil && !cache[i].Connection.Connected:
			conn := cache[i].Connection
			msg := "the cache of remote state is not connected to this peer"
			if conn.LastFailure != "" {
				msg += ": " + conn.LastFailure
			}
			msg += fmt.Sprintf(" (%d nodes read it through the cache)", p.ThroughCache)
			out = append(out, Problem{Peer: name, Message: msg,
				Hint: "the clustermesh-apiserver must reach the peer's etcd-endpoints: check the peer's clustermesh-apiserver Service and the firewalls between the clusters, and run `clustermesh status` against the peer"})
		case !cache[i].Complete():
			var missing []string
			for _, k := range Kinds {
				if !cache[i].Synced[k] {
					missing = append(missing, k)
				}
			}
			out = append(out, Problem{Peer: name, Message: "the cache of remote state has not synced " + strings.Join(missing, ", ") + " of this peer", Hint: hint})
		}
	}
	return out
}

// peerProblem is what is wrong with one peer on one node, if anything.
func peerProblem(node string, ps PeerStatus, configured bool) (Problem, bool) {
	p := Problem{Node: node, Peer: ps.Name}
	switch {
	case !configured:
		p.Message = "the agent still has this peer, which the mesh Secret no longer configures"
		p.Hint = "the kubelet refreshes Secret volumes within about a minute; the agent then disconnects and drains the peer"
	case ps.Revoked:
		p.Message = "the peer's state was revoked: its heartbeat is older than the agent's cache TTL"
		p.Hint = hint(ps.LastFailure)
	case !ps.Connected:
		p.Message = "not connected"
		if ps.LastFailure != "" {
			p.Message += ": " + ps.LastFailure
		}
		p.Hint = hint(ps.LastFailure)
	case !ps.Ready:
		var missing []string
		for _, k := range Kinds {
			if !ps.Synced[k] {
				missing = append(missing, k)
			}
		}
		p.Message = fmt.Sprintf("connected, waiting for the peer's synced markers of %s", strings.Join(missing, ", "))
		p.Hint = "the peer's clustermesh-apiserver has not finished its initial export: run `clustermesh status` against the peer"
	default:
		return p, false
	}
	return p, true
}

// hint turns an agent's failure message into what to do.
func hint(failure string) string {
	f := strings.ToLower(failure)
	switch {
	case failure == "":
		return "the agent has not connected yet; wait, or check the agent's logs"
	case strings.Contains(f, "certificate") || strings.Contains(f, "tls") || strings.Contains(f, "x509"):
		return "the peer's CA or this cluster's client certificate for it does not match: run `clustermesh connect` again"
	case strings.Contains(f, "user") || strings.Contains(f, "permission denied") || strings.Contains(f, "authentication"):
		return "the peer's etcd does not know this cluster's user: run `clustermesh connect` again"
	case strings.Contains(f, "cluster config") || strings.Contains(f, "cluster id") || strings.Contains(f, "max connected"):
		return "the peer's cluster ID or max-connected-clusters conflicts with this mesh: compare both clusters' clustermesh-config ConfigMaps"
	case strings.Contains(f, "unreachable") || strings.Contains(f, "refused") || strings.Contains(f, "deadline") ||
		strings.Contains(f, "timeout") || strings.Contains(f, "no route"):
		return "the peer's etcd-endpoints are not reachable from this node: check the peer's clustermesh-apiserver Service and the firewalls between the clusters"
	}
	return "see the agent's logs on this node"
}

func summarize(v []int) MinAvgMax {
	if len(v) == 0 {
		return MinAvgMax{}
	}
	s := MinAvgMax{Min: slices.Min(v), Max: slices.Max(v)}
	sum := 0
	for _, x := range v {
		sum += x
	}
	s.Avg = math.Round(float64(sum)/float64(len(v))*100) / 100
	return s
}

// Complete reports whether the mesh works on every node: the apiserver is
// ready, every agent answered, every node is connected to and synced with
// every configured peer, and the cache of remote state (when it publishes
// its connections) is connected to every configured peer it caches.
// Otherwise it says what is missing.
func (r Report) Complete() (bool, []string) {
	var missing []string
	if !r.APIServer.Ready {
		missing = append(missing, "the clustermesh-apiserver is not ready")
	}
	if r.Answered < r.Nodes {
		missing = append(missing, fmt.Sprintf("%d of %d agents did not answer", r.Nodes-r.Answered, r.Nodes))
	}
	if r.Nodes == 0 {
		missing = append(missing, "no agent found")
	}
	for _, c := range r.APIServer.Cache {
		if c.Connection != nil && !c.Connection.Connected && slices.Contains(r.Configured, c.Name) {
			missing = append(missing, fmt.Sprintf("peer %s: the cache of remote state is not connected to it", c.Name))
		}
	}
	for _, p := range r.Peers {
		switch {
		case !p.Configured:
			missing = append(missing, fmt.Sprintf("peer %s: still connected on %d nodes after its removal", p.Name, p.Connected))
		case p.Ready < r.Nodes:
			missing = append(missing, fmt.Sprintf("peer %s: connected on %d/%d nodes, ready on %d/%d", p.Name, p.Connected, r.Nodes, p.Ready, r.Nodes))
		}
	}
	return len(missing) == 0, missing
}

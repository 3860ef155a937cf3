package bpfdp

import (
	"context"
	"fmt"
	"sync"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
)

// policiesTable is the per-endpoint policy: bpf.EndpointConfigs holds the
// identity and enforcement, bpf.Policy the rules expanded into entries
// (see KeptPolicy for what List gives back).
type policiesTable struct {
	cfgs   *bpf.EndpointConfigs
	policy *bpf.Policy

	mu sync.Mutex // serializes changes, so that the config read stays current
}

func endpointConfig(p datapath.EndpointPolicy) bpf.EndpointConfig {
	return bpf.EndpointConfig{Identity: uint32(p.Identity), EnforceIngress: p.EnforceIngress, EnforceEgress: p.EnforceEgress}
}

// Update implements datapath.Table. No packet sees a state stricter than
// both the old and the new policy: a direction that stops being enforced
// stops before the rules change, one that starts being enforced starts
// after the new rules are in place (and bpf.Policy.Set swaps rules
// atomically, and leaves rules equal to the kernel's untouched). The old
// configuration is the kernel's, read here: after an agent restart too,
// the rewrite of a held endpoint relaxes first what the kernel enforces.
func (t *policiesTable) Update(_ context.Context, ep uint16, p datapath.EndpointPolicy) error {
	cfg := endpointConfig(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	old, had, err := t.cfgs.Get(ep)
	if err != nil {
		return fmt.Errorf("policy update of endpoint %d: %w", ep, err)
	}
	if had && (old.EnforceIngress && !cfg.EnforceIngress || old.EnforceEgress && !cfg.EnforceEgress) {
		relaxed := bpf.EndpointConfig{Identity: cfg.Identity, EnforceIngress: old.EnforceIngress && cfg.EnforceIngress, EnforceEgress: old.EnforceEgress && cfg.EnforceEgress}
		if err := t.cfgs.Update(ep, relaxed); err != nil {
			return fmt.Errorf("policy update: %w", err)
		}
	}
	if err := t.policy.Set(ep, bpfRules(p.Rules)); err != nil {
		return fmt.Errorf("policy update: %w", err)
	}
	if !had || old != cfg {
		if err := t.cfgs.Update(ep, cfg); err != nil {
			return fmt.Errorf("policy update: %w", err)
		}
	}
	return nil
}

// Delete implements datapath.Table: the configuration (the endpoint's
// traffic then passes untouched), then the rules.
func (t *policiesTable) Delete(_ context.Context, ep uint16) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.cfgs.Delete(ep); err != nil {
		return fmt.Errorf("policy delete: %w", err)
	}
	if err := t.policy.Delete(ep); err != nil {
		return fmt.Errorf("policy delete: %w", err)
	}
	return nil
}

// List implements datapath.Table: every endpoint with a configuration or
// rules in the kernel, with its identity and enforcement, and its rules
// rebuilt from the kernel's entries (rulesOf; nil if it has no rules, which
// the datapath treats as no rule). An endpoint with rules and no
// configuration (a crash between the two writes) gets rules no desired
// value equals, so that a reconciler rewrites it.
func (t *policiesTable) List(context.Context) (map[uint16]datapath.EndpointPolicy, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cfgs, err := t.cfgs.List()
	if err != nil {
		return nil, fmt.Errorf("policy list: %w", err)
	}
	entries, err := t.policy.List()
	if err != nil {
		return nil, fmt.Errorf("policy list: %w", err)
	}
	out := make(map[uint16]datapath.EndpointPolicy, len(cfgs))
	for ep, cfg := range cfgs {
		out[ep] = datapath.EndpointPolicy{
			Identity:       identity.NumericIdentity(cfg.Identity),
			EnforceIngress: cfg.EnforceIngress,
			EnforceEgress:  cfg.EnforceEgress,
		}
	}
	for ep, es := range entries {
		p, hasCfg := out[ep]
		p.Rules = rulesOf(es)
		if !hasCfg {
			p.Rules = []datapath.PolicyRule{unlisted}
		}
		out[ep] = p
	}
	return out, nil
}

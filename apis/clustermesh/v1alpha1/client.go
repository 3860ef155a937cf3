package v1alpha1

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/clustermesh/clustermesh/identity"
)

// Scheme knows this group's types.
var Scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		panic(err) // static registration of two types cannot fail
	}
	return s
}()

// NewRESTClient returns a client for this group.
func NewRESTClient(cfg *rest.Config) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &SchemeGroupVersion
	c.APIPath = "/apis"
	c.NegotiatedSerializer = serializer.NewCodecFactory(Scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", SchemeGroupVersion, err)
	}
	return rc, nil
}

// ByLabelsIndex indexes identities by their labels in kvstore form.
const ByLabelsIndex = "byLabels"

// LabelsKey returns the identity's labels in canonical kvstore form, or an
// error when they do not parse.
func (in *Identity) LabelsKey() (string, error) {
	ls, err := identity.ParseLabels(in.SecurityLabels...)
	if err != nil {
		return "", fmt.Errorf("identity %s: %w", in.Name, err)
	}
	return ls.SortedKVStoreString(), nil
}

// NumericID parses the identity's name.
func (in *Identity) NumericID() (identity.NumericIdentity, error) {
	id, err := identity.ParseNumericIdentity(in.Name)
	if err != nil {
		return 0, fmt.Errorf("identity name %q is not a numeric identity: %w", in.Name, err)
	}
	return id, nil
}

func byLabels(obj any) ([]string, error) {
	in, ok := obj.(*Identity)
	if !ok {
		return nil, nil
	}
	k, err := in.LabelsKey()
	if err != nil {
		return nil, nil //nolint:nilerr // unparseable identities are not indexed
	}
	return []string{k}, nil
}

// NewIdentityInformer returns an informer over all identities, indexed by
// labels.
func NewIdentityInformer(rc rest.Interface, resync time.Duration) cache.SharedIndexInformer {
	lw := cache.NewListWatchFromClient(rc, IdentityResource.Resource, metav1.NamespaceAll, fields.Everything())
	return cache.NewSharedIndexInformer(lw, &Identity{}, resync, cache.Indexers{ByLabelsIndex: byLabels})
}

// LookupByLabels returns the identity allocated for a label set (in kvstore
// form). When several exist (a crash between two allocations), the lowest
// number wins, on every reader alike.
func LookupByLabels(idx cache.Indexer, labelsKey string) (identity.NumericIdentity, bool) {
	objs, err := idx.ByIndex(ByLabelsIndex, labelsKey)
	if err != nil || len(objs) == 0 {
		return 0, false
	}
	ids := make([]identity.NumericIdentity, 0, len(objs))
	for _, o := range objs {
		if id, err := o.(*Identity).NumericID(); err == nil {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return 0, false
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids[0], true
}

// CreateIdentity creates an identity.
func CreateIdentity(ctx context.Context, rc rest.Interface, in *Identity) (*Identity, error) {
	out := &Identity{}
	err := rc.Post().Resource(IdentityResource.Resource).Body(in).Do(ctx).Into(out)
	return out, err
}

// DeleteIdentity deletes an identity by number.
func DeleteIdentity(ctx context.Context, rc rest.Interface, id identity.NumericIdentity) error {
	return rc.Delete().Resource(IdentityResource.Resource).Name(strconv.FormatUint(uint64(id), 10)).Do(ctx).Error()
}

// ListIdentities lists all identities.
func ListIdentities(ctx context.Context, rc rest.Interface) (*IdentityList, error) {
	out := &IdentityList{}
	err := rc.Get().Resource(IdentityResource.Resource).Do(ctx).Into(out)
	return out, err
}

package remote

import "github.com/clustermesh/clustermesh/kvstore"

// keyCodecs are the compact forms in which a connection's watch stores
// hold the keys of a kind (kvstore.KeyCodec): an ip entry's key is its
// address, IPv4 for nearly every endpoint (4 bytes instead of a string),
// an identity's its number. The store checks that a packed key comes back
// as itself, so an odd key the peer writes is held as a string instead.
var keyCodecs = map[Kind]kvstore.KeyCodec{
	KindIPs:        kvstore.IPv4Keys{},
	KindIdentities: kvstore.DecimalKeys{},
}

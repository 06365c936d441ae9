package store

import "context"

// Notifier is implemented by stores that several center instances share
// (PostgreSQL): it tells every instance about changes any of them commits,
// so an instance can act on them at once — close the connections of a
// kiosk suspended through another instance, load a signing key rotated
// there. A store used by one process (bbolt) does not implement it: the
// process that makes a change acts on it itself.
type Notifier interface {
	// WatchChanges calls fn for every change committed after it started,
	// until ctx ends; it then returns ctx's error. fn runs on the
	// watcher's goroutine, one change at a time, and must not block long.
	// When the watcher lost its connection and may have missed changes it
	// calls fn with ChangeResync once it is back: the caller then
	// re-reads what it relies on.
	WatchChanges(ctx context.Context, fn func(Change)) error
}

// ChangeKind names what changed.
type ChangeKind string

// Change kinds.
const (
	// ChangeKiosk: a kiosk's status changed (ID is the kiosk ID).
	ChangeKiosk ChangeKind = "kiosk"
	// ChangeMunicipality: a municipality was added or changed (ID is its code).
	ChangeMunicipality ChangeKind = "municipality"
	// ChangeSigningKey: a signing key was added or changed status (ID is its key ID).
	ChangeSigningKey ChangeKind = "signing_key"
	// ChangeResync: changes may have been missed; re-read everything.
	ChangeResync ChangeKind = "resync"
)

// Change is one committed change.
type Change struct {
	Kind ChangeKind
	ID   string
}

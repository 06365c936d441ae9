package store

// KioskQuery selects kiosks for a page of the operations console.
type KioskQuery struct {
	// IDPrefix selects kiosks whose ID starts with it.
	IDPrefix string
	// Chain, Prefecture, Region and Status, when set, select only kiosks
	// with exactly that value.
	Chain      string
	Prefecture string
	Region     string
	Status     KioskStatus
	// IDs, when not empty, selects only these kiosks (at most
	// MaxKioskIDs), e.g. the ones the center sees connected.
	IDs []string
	// After starts the page after this kiosk ID (exclusive).
	After string
	// Limit caps the page (0 means DefaultKioskLimit; at most
	// MaxKioskLimit).
	Limit int
}

// Limits on KioskQuery.
const (
	DefaultKioskLimit = 50
	MaxKioskLimit     = 1000
	MaxKioskIDs       = 100000
)

// EffectiveLimit returns the limit a store applies for q.
func (q KioskQuery) EffectiveLimit() int {
	switch {
	case q.Limit <= 0:
		return DefaultKioskLimit
	case q.Limit > MaxKioskLimit:
		return MaxKioskLimit
	}
	return q.Limit
}

// Validate checks the query.
func (q *KioskQuery) Validate() error {
	switch {
	case len(q.IDPrefix) > 64:
		return invalid("kioskQuery.idPrefix", "must be at most 64 bytes")
	case q.Status != "" && !q.Status.Valid():
		return invalid("kioskQuery.status", "must be active, suspended or revoked")
	case len(q.IDs) > MaxKioskIDs:
		return invalid("kioskQuery.ids", "are too many")
	}
	return nil
}

// Matches reports whether k satisfies q's conditions (not the page bounds).
// Implementations may use it to filter.
func (q *KioskQuery) Matches(k *Kiosk) bool {
	return (q.IDPrefix == "" || len(k.ID) >= len(q.IDPrefix) && k.ID[:len(q.IDPrefix)] == q.IDPrefix) &&
		(q.Chain == "" || k.Chain == q.Chain) &&
		(q.Prefecture == "" || k.Prefecture == q.Prefecture) &&
		(q.Region == "" || k.Region == q.Region) &&
		(q.Status == "" || k.Status == q.Status)
}

// KioskPage is one page of a kiosk query.
type KioskPage struct {
	Kiosks []Kiosk `json:"kiosks"`
	// Total is how many kiosks match the query's conditions in all.
	Total int `json:"total"`
	// More is true when kiosks after the page's last one match.
	More bool `json:"more"`
}

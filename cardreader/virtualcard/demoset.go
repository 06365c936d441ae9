package virtualcard

import (
	"sync"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

// DemoSet makes virtual cards for the demo residents, all personalised by
// one authority. Each resident's card image (and its RSA AP key, the slow
// part) is made once and reused; every Card call returns a fresh card with
// a full PIN counter.
type DemoSet struct {
	Authority carddata.Authority
	Verifier  *carddata.Verifier
	Residents *demo.Data

	mu     sync.Mutex
	images map[string]carddata.Raw
}

// NewDemoSet prepares cards issued by a.
func NewDemoSet(a carddata.Authority) (*DemoSet, error) {
	ik, err := a.IssuerKey()
	if err != nil {
		return nil, err
	}
	v, err := carddata.NewVerifier(ik)
	if err != nil {
		return nil, err
	}
	d, err := demo.Load()
	if err != nil {
		return nil, err
	}
	return &DemoSet{Authority: a, Verifier: v, Residents: d, images: map[string]carddata.Raw{}}, nil
}

// Card returns a new card for the demo resident with the given id.
func (s *DemoSet) Card(id string, opts Options) (*Card, demo.Resident, error) {
	r, err := s.Residents.Resident(id)
	if err != nil {
		return nil, demo.Resident{}, err
	}
	s.mu.Lock()
	raw, ok := s.images[id]
	if !ok {
		raw, err = Personalize(s.Authority, r)
		if err != nil {
			s.mu.Unlock()
			return nil, demo.Resident{}, err
		}
		s.images[id] = raw
	}
	s.mu.Unlock()
	c, err := New(raw, r.PIN, opts)
	return c, r, err
}

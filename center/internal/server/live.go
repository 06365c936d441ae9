package server

import (
	"crypto/x509"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// KioskLive is what operators see of one kiosk: connection and device
// health, never anything about residents.
type KioskLive struct {
	KioskID        string    `json:"kioskId"`
	Connected      bool      `json:"connected"`
	ConnectedSince time.Time `json:"connectedSince,omitzero"`
	LastSeen       time.Time `json:"lastSeen"`
	Reader         string    `json:"reader,omitempty"`
	Printer        string    `json:"printer,omitempty"`
	State          string    `json:"state,omitempty"`
	AgentVersion   string    `json:"agentVersion,omitempty"`
	LastError      string    `json:"lastError,omitempty"`
	// StatusAt is when the kiosk last reported its health.
	StatusAt time.Time `json:"statusAt,omitzero"`
	// CertSerial and CertNotAfter are of the client certificate the
	// kiosk's latest connection presented (hex serial): after a renewal
	// they change at its next connection.
	CertSerial   string    `json:"certSerial,omitempty"`
	CertNotAfter time.Time `json:"certNotAfter,omitzero"`
	// Flagged: the kiosk asked for many different residents within an
	// hour (DistinctResidentsPerHour): look at it.
	Flagged bool `json:"flagged,omitempty"`
}

type liveStatus struct {
	mu     sync.Mutex
	kiosks map[string]*KioskLive
	// conns counts open connections per kiosk: a reconnect may overlap the
	// old connection's teardown.
	conns map[string]int
}

func newLiveStatus() *liveStatus {
	return &liveStatus{kiosks: map[string]*KioskLive{}, conns: map[string]int{}}
}

func (l *liveStatus) get(id string) *KioskLive {
	k, ok := l.kiosks[id]
	if !ok {
		k = &KioskLive{KioskID: id}
		l.kiosks[id] = k
	}
	return k
}

func (l *liveStatus) connected(id string, cert *x509.Certificate, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.get(id)
	if cert != nil {
		k.CertSerial, k.CertNotAfter = cert.SerialNumber.Text(16), cert.NotAfter
	}
	l.conns[id]++
	if !k.Connected {
		k.Connected, k.ConnectedSince = true, now
	}
	k.LastSeen = now
}

func (l *liveStatus) disconnected(id string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.get(id)
	l.conns[id]--
	if l.conns[id] <= 0 {
		k.Connected, k.ConnectedSince = false, time.Time{}
		delete(l.conns, id)
	}
	k.LastSeen = now
}

func (l *liveStatus) status(id string, s protocol.Status, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.get(id)
	k.Reader, k.Printer, k.State, k.LastSeen = s.Reader, s.Printer, s.State, now
	k.AgentVersion, k.LastError, k.StatusAt = s.AgentVersion, s.LastError, now
}

func (l *liveStatus) one(id string) (KioskLive, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k, ok := l.kiosks[id]
	if !ok {
		return KioskLive{}, false
	}
	return *k, true
}

func (l *liveStatus) flag(id string, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.get(id).Flagged = on
}

func (l *liveStatus) list() []KioskLive {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]KioskLive, 0, len(l.kiosks))
	for _, k := range l.kiosks {
		out = append(out, *k)
	}
	slices.SortFunc(out, func(a, b KioskLive) int { return strings.Compare(a.KioskID, b.KioskID) })
	return out
}

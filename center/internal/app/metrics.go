package app

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// auditCounting counts the audit writes that fail (the store refusing or
// failing to record an event), for the alert on them. A refusal the
// register answers by design (a duplicate claim, a second settlement) is
// not a failure.
type auditCounting struct {
	store.Store
	failures prometheus.Counter
}

func (s auditCounting) count(err error) error {
	if err != nil && !errors.Is(err, store.ErrExists) && !errors.Is(err, store.ErrSettled) &&
		!errors.Is(err, store.ErrTransition) && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, context.Canceled) {
		s.failures.Inc()
	}
	return err
}

func (s auditCounting) AppendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	e, err := s.Store.AppendEvent(ctx, e)
	return e, s.count(err)
}

func (s auditCounting) ClaimRequest(ctx context.Context, r store.Request, staleBefore time.Time, events ...store.Event) (store.Request, error) {
	r, err := s.Store.ClaimRequest(ctx, r, staleBefore, events...)
	return r, s.count(err)
}

func (s auditCounting) FinishRequest(ctx context.Context, id string, attempt int, f store.RequestFinish, events ...store.Event) (store.Request, error) {
	r, err := s.Store.FinishRequest(ctx, id, attempt, f, events...)
	return r, s.count(err)
}

func (s auditCounting) SettleRequest(ctx context.Context, id, kioskID, outcome string, at time.Time, ev store.Event) (store.Request, error) {
	r, err := s.Store.SettleRequest(ctx, id, kioskID, outcome, at, ev)
	return r, s.count(err)
}

// expiryCollector exports when each published signing key stops signing
// and when the center's certificates expire, read at each scrape.
type expiryCollector struct {
	keys  store.SigningKeyStore
	certs map[string]string // name → PEM file
	key   *prometheus.Desc
	cert  *prometheus.Desc
}

func newExpiryCollector(keys store.SigningKeyStore, certs map[string]string) *expiryCollector {
	return &expiryCollector{keys: keys, certs: certs,
		key: prometheus.NewDesc("kioskcert_center_signing_key_not_after_timestamp_seconds",
			"When a published signing key stops signing (Unix time); rotate before.", []string{"purpose", "kid", "status"}, nil),
		cert: prometheus.NewDesc("kioskcert_center_certificate_not_after_timestamp_seconds",
			"When one of the center's certificates expires (Unix time).", []string{"certificate"}, nil),
	}
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.key; ch <- c.cert }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ks, err := c.keys.ListSigningKeys(ctx, ""); err == nil {
		for _, k := range ks {
			if k.Status.Published() {
				ch <- prometheus.MustNewConstMetric(c.key, prometheus.GaugeValue, float64(k.NotAfter.Unix()), string(k.Purpose), k.KID, string(k.Status))
			}
		}
	}
	for name, path := range c.certs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if blk, _ := pem.Decode(b); blk != nil {
			if cert, err := x509.ParseCertificate(blk.Bytes); err == nil {
				ch <- prometheus.MustNewConstMetric(c.cert, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), name)
			}
		}
	}
}

package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// Buckets of the operations console's queries.
var (
	bucketKioskSummary  = []byte("store.kiosks.summary")
	bucketOperators     = []byte("store.operators")
	bucketAPITokens     = []byte("store.api_tokens")
	bucketAPITokenHash  = []byte("store.api_tokens.by_hash")
	bucketAuditByMuni   = []byte("store.audit.by_municipality")
	bucketAuditByCert   = []byte("store.audit.by_certificate")
	bucketAuditByOp     = []byte("store.audit.by_operator")
	bucketAuditByResult = []byte("store.audit.by_result")
	bucketAuditByType   = []byte("store.audit.by_type")
	bucketSettleDaily   = []byte("store.audit.settle_daily")
	bucketSettleMonthly = []byte("store.audit.settle_monthly")
)

// addConsoleBuckets creates the console's buckets and, for a database that
// had events or kiosks before them, builds their indexes.
func addConsoleBuckets(tx *bolt.Tx) error {
	created := map[string]bool{}
	for _, name := range consoleBuckets {
		if tx.Bucket(name) == nil {
			created[string(name)] = true
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("boltstore: creating bucket %s: %w", name, err)
			}
		}
	}
	if len(created) == 0 {
		return nil
	}
	if created[string(bucketKioskSummary)] {
		err := tx.Bucket(bucketKiosks).ForEach(func(_, v []byte) error {
			var k store.Kiosk
			if err := json.Unmarshal(v, &k); err != nil {
				return fmt.Errorf("boltstore: decoding kiosk: %w", err)
			}
			return putKioskSummary(tx, &k)
		})
		if err != nil {
			return err
		}
	}
	indexed := indexedSeq(tx)
	return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
		var e store.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("boltstore: decoding event: %w", err)
		}
		// An event the indexer has not reached gets every index from it.
		if e.Seq <= indexed {
			if err := indexEvent(tx, &e, k, created); err != nil {
				return err
			}
		}
		return countSettlement(tx, &e, created)
	})
}

// eventIndexes are the flat indexes: bucket and the event's value for it.
var eventIndexes = []struct {
	bucket []byte
	value  func(*store.Event) string
}{
	{bucketAuditByMuni, func(e *store.Event) string { return e.Municipality }},
	{bucketAuditByCert, func(e *store.Event) string { return e.CertificateID }},
	{bucketAuditByOp, func(e *store.Event) string { return e.Operator }},
	{bucketAuditByResult, func(e *store.Event) string { return e.Result }},
	{bucketAuditByType, func(e *store.Event) string { return string(e.Type) }},
}

func indexKey(value string, auditKey []byte) []byte {
	k := make([]byte, 0, len(value)+1+len(auditKey))
	k = append(k, value...)
	k = append(k, 0)
	return append(k, auditKey...)
}

// indexEvent adds e (stored under key) to the lookup indexes: all of
// them (only nil), or only the console's named in only.
func indexEvent(tx *bolt.Tx, e *store.Event, key []byte, only map[string]bool) error {
	if only == nil && e.KioskID != "" {
		byKiosk, err := tx.Bucket(bucketAuditByKiosk).CreateBucketIfNotExists([]byte(e.KioskID))
		if err != nil {
			return err
		}
		if err := byKiosk.Put(key, nil); err != nil {
			return err
		}
	}
	if only == nil && e.RequestID != "" {
		if err := tx.Bucket(bucketAuditByReq).Put(requestIndexKey(e.RequestID, key), nil); err != nil {
			return err
		}
	}
	for _, ix := range eventIndexes {
		if only != nil && !only[string(ix.bucket)] {
			continue
		}
		if v := ix.value(e); v != "" {
			if err := tx.Bucket(ix.bucket).Put(indexKey(v, key), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// countSettlement adds a printed event to the settlement counters: both,
// or only those named in only.
func countSettlement(tx *bolt.Tx, e *store.Event, only map[string]bool) error {
	if e.Type != store.EventPrinted || e.Municipality == "" {
		return nil
	}
	chain := ""
	if e.KioskID != "" {
		if sum := tx.Bucket(bucketKioskSummary).Get([]byte(e.KioskID)); sum != nil {
			chain = parseKioskSummary(sum).chain
		}
	}
	day := store.SettlementDay(e.Time)
	for _, c := range []struct {
		bucket []byte
		period string
	}{{bucketSettleDaily, day}, {bucketSettleMonthly, day[:7]}} {
		if only != nil && !only[string(c.bucket)] {
			continue
		}
		b := tx.Bucket(c.bucket)
		k := settleKey(c.period, e.Municipality, chain, e.Kind, e.Copies)
		var n [8]byte
		if old := b.Get(k); len(old) == 8 {
			copy(n[:], old)
		}
		binary.BigEndian.PutUint64(n[:], binary.BigEndian.Uint64(n[:])+1)
		if err := b.Put(k, n[:]); err != nil {
			return err
		}
	}
	return nil
}

func settleKey(period, muni, chain string, kind certificate.Kind, copies int) []byte {
	return fmt.Appendf(nil, "%s\x00%s\x00%s\x00%s\x00%03d", period, muni, chain, kind, copies)
}

// eventSource is where a query reads audit keys: a bucket (the log itself
// or an index) and the prefix its keys carry before the audit key.
type eventSource struct {
	b       *bolt.Bucket
	prefix  []byte
	isIndex bool
}

// source picks the index that narrows q the most.
func source(tx *bolt.Tx, q *store.EventQuery) (eventSource, bool) {
	nested := func(parent []byte, v string) (eventSource, bool) {
		b := tx.Bucket(parent).Bucket([]byte(v))
		return eventSource{b: b, isIndex: true}, b != nil
	}
	flat := func(bucket []byte, v string) (eventSource, bool) {
		return eventSource{b: tx.Bucket(bucket), prefix: append([]byte(v), 0), isIndex: true}, true
	}
	switch {
	case q.RequestID != "":
		return flat(bucketAuditByReq, q.RequestID)
	case q.CertificateID != "":
		return flat(bucketAuditByCert, q.CertificateID)
	case q.KioskID != "":
		return nested(bucketAuditByKiosk, q.KioskID)
	case q.Operator != "":
		return flat(bucketAuditByOp, q.Operator)
	case q.Municipality != "":
		return flat(bucketAuditByMuni, q.Municipality)
	case q.Result != "":
		return flat(bucketAuditByResult, q.Result)
	case q.Type != "":
		return flat(bucketAuditByType, string(q.Type))
	}
	return eventSource{b: tx.Bucket(bucketAudit)}, true
}

func matches(q *store.EventQuery, e *store.Event) bool {
	return (q.RequestID == "" || e.RequestID == q.RequestID) &&
		(q.CertificateID == "" || e.CertificateID == q.CertificateID) &&
		(q.KioskID == "" || e.KioskID == q.KioskID) &&
		(q.Operator == "" || e.Operator == q.Operator) &&
		(q.Municipality == "" || e.Municipality == q.Municipality) &&
		(q.Result == "" || e.Result == q.Result) &&
		(q.Type == "" || e.Type == q.Type)
}

// Events implements store.AuditLog. It reads the most selective index
// for q (request, certificate, kiosk, operator, municipality, result,
// type, else the log in time order) between the time bounds and the
// page position, and filters the other conditions.
func (s *Store) Events(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	limit := q.EffectiveLimit()
	lo := timeKey(0)
	if !q.From.IsZero() {
		lo = timeKey(store.Time(q.From).UnixMicro())
	}
	var hi []byte // exclusive; nil: no end
	if !q.To.IsZero() {
		hi = timeKey(store.Time(q.To).UnixMicro())
	}
	var after []byte
	if !q.After.IsZero() {
		e := store.Event{Time: store.Time(q.After.Time), Seq: q.After.Seq}
		after = auditKey(&e)
		if q.After.Time.IsZero() {
			after = timeKey(0)
			binary.BigEndian.PutUint64(after[8:], q.After.Seq)
		}
	}
	var out []store.Event
	err := s.view(ctx, func(tx *bolt.Tx) error {
		// The index's events (in the index's order), then the events not
		// yet indexed (indexer.go), merged.
		var found []pendingEvent
		src, ok := source(tx, &q)
		if ok {
			var err error
			if found, err = scanEvents(ctx, tx, &q, src, lo, hi, after, limit); err != nil {
				return err
			}
		}
		if !src.isIndex {
			out = mergeEvents(found, nil, q.Descending, limit)
			return nil
		}
		pending, err := pendingMatches(tx, &q, lo, hi, after)
		if err != nil {
			return err
		}
		slices.SortFunc(pending, func(a, b pendingEvent) int {
			if q.Descending {
				return bytes.Compare(b.key, a.key)
			}
			return bytes.Compare(a.key, b.key)
		})
		out = mergeEvents(found, pending, q.Descending, limit)
		return nil
	})
	return out, err
}

// scanEvents reads up to limit events q selects from src between the
// bounds, in q's direction.
func scanEvents(ctx context.Context, tx *bolt.Tx, q *store.EventQuery, src eventSource, lo, hi, after []byte, limit int) ([]pendingEvent, error) {
	var out []pendingEvent
	audit := tx.Bucket(bucketAudit)
	c := src.b.Cursor()
	full := func(k []byte) []byte { return append(slices.Clone(src.prefix), k...) }
	var k, v []byte
	if !q.Descending {
		start := lo
		if after != nil && bytes.Compare(after, start) >= 0 {
			start = after
		}
		k, v = c.Seek(full(start))
	} else {
		var end []byte // exclusive upper bound of the audit key
		switch {
		case hi != nil && after != nil:
			end = hi
			if bytes.Compare(after, hi) < 0 {
				end = after
			}
		case hi != nil:
			end = hi
		default:
			end = after
		}
		if end == nil {
			// From the last key with the prefix: seek past it.
			k, v = c.Seek(append(slices.Clone(src.prefix), bytes.Repeat([]byte{0xff}, 17)...))
		} else {
			k, v = c.Seek(full(end))
		}
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	n := 0
	for ; k != nil && len(out) < limit; func() {
		if q.Descending {
			k, v = c.Prev()
		} else {
			k, v = c.Next()
		}
	}() {
		if !bytes.HasPrefix(k, src.prefix) {
			break
		}
		ak := k[len(src.prefix):]
		if len(ak) != 16 {
			return nil, fmt.Errorf("boltstore: malformed audit index key")
		}
		if q.Descending {
			if bytes.Compare(ak, lo) < 0 {
				break
			}
		} else {
			if hi != nil && bytes.Compare(ak, hi) >= 0 {
				break
			}
			if after != nil && bytes.Equal(ak, after) {
				continue
			}
		}
		if n++; n%iterCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if src.isIndex {
			v = audit.Get(ak)
			if v == nil {
				return nil, fmt.Errorf("boltstore: audit index names a missing event")
			}
		}
		var e store.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("boltstore: decoding event: %w", err)
		}
		if matches(q, &e) {
			out = append(out, pendingEvent{key: slices.Clone(ak), e: e})
		}
	}
	return out, nil
}

// SettlementCounts implements store.AuditLog from the settlement counters:
// a month the query covers whole is read from the monthly counters, any
// other day from the daily ones.
func (s *Store) SettlementCounts(ctx context.Context, q store.SettlementQuery) ([]store.SettlementCount, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	first, _ := store.ParseDay(q.FirstDay)
	last, _ := store.ParseDay(q.LastDay)
	type span struct {
		bucket []byte
		period string // counter period
		out    string // result period
	}
	var spans []span
	for d := first; !d.After(last); {
		day := d.Format(time.DateOnly)
		monthStart := time.Date(d.Year(), d.Month(), 1, 0, 0, 0, 0, d.Location())
		monthEnd := monthStart.AddDate(0, 1, -1)
		if q.Monthly && d.Equal(monthStart) && !monthEnd.After(last) {
			spans = append(spans, span{bucketSettleMonthly, day[:7], day[:7]})
			d = monthEnd.AddDate(0, 0, 1)
			continue
		}
		spans = append(spans, span{bucketSettleDaily, day, q.SettlementPeriod(day)})
		d = d.AddDate(0, 0, 1)
	}
	sums := map[store.SettlementCount]int64{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		for _, sp := range spans {
			if err := ctx.Err(); err != nil {
				return err
			}
			prefix := []byte(sp.period + "\x00")
			if q.Municipality != "" {
				prefix = append(prefix, q.Municipality+"\x00"...)
			}
			c := tx.Bucket(sp.bucket).Cursor()
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				parts := bytes.Split(k, []byte{0})
				if len(parts) != 5 || len(v) != 8 {
					return fmt.Errorf("boltstore: malformed settlement counter")
				}
				if q.Chain != "" && string(parts[2]) != q.Chain {
					continue
				}
				copies, err := strconv.Atoi(string(parts[4]))
				if err != nil {
					return fmt.Errorf("boltstore: malformed settlement counter")
				}
				key := store.SettlementCount{Period: sp.out, Municipality: string(parts[1]), Chain: string(parts[2]),
					Kind: certificate.Kind(parts[3]), Copies: copies}
				sums[key] += int64(binary.BigEndian.Uint64(v))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]store.SettlementCount, 0, len(sums))
	for k, n := range sums {
		k.Issuances = n
		out = append(out, k)
	}
	slices.SortFunc(out, store.CompareSettlement)
	return out, nil
}

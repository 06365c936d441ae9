// Package boltstore implements store.Store on a bbolt file.
//
// Each concern has its own top-level bucket, all prefixed "store." so the
// same *bbolt.DB can also hold the records component's buckets ("records.")
// when the operator chooses one file:
//
//	store.meta                schema version
//	store.kiosks              kiosk ID → Kiosk (JSON)
//	store.kiosks.by_cert      certificate SHA-256 (hex) → kiosk ID
//	store.municipalities      code → Municipality (JSON)
//	store.signing_keys        key ID → SigningKey (JSON)
//	store.audit               time (µs, 8 bytes BE) ‖ sequence (8 bytes BE) → Event (JSON)
//	store.audit.by_kiosk      one nested bucket per kiosk ID: audit key → empty
//	store.audit.by_req        request ID ‖ 0 ‖ audit key → empty (flat: a nested bucket
//	                          per request, as files before this version kept it, cost a
//	                          page per request; Open migrates them)
//	store.audit.daily         day ‖ 0 ‖ municipality ‖ 0 ‖ type ‖ 0 ‖ kind → events, copies (2 × 8 bytes BE)
//	store.audit.by_municipality, .by_certificate, .by_operator, .by_result, .by_type
//	                          value ‖ 0 ‖ audit key → empty (auditquery.go)
//	store.audit.settle_daily, .settle_monthly
//	                          period ‖ 0 ‖ municipality ‖ 0 ‖ chain ‖ 0 ‖ kind ‖ 0 ‖ copies → issuances (8 bytes BE)
//	store.audit.by_seq        sequence (8 bytes BE) → audit key (the hash chain's order)
//	store.audit.checkpoints   sequence (8 bytes BE) → Checkpoint (JSON)
//	store.meta audit.head     sequence ‖ hash of the last event
//	store.meta audit.indexed  sequence up to which the lookup indexes (by_kiosk,
//	                          by_req, by_municipality, …) hold every event: they
//	                          are written behind the log (indexer.go)
//	store.revocations         certificate ID → Revocation (JSON)
//	store.requests            request ID → Request (JSON, without the replay)
//	store.requests.replay     request ID → sealed replay
//	store.requests.by_claim   claim time (µs, 8 bytes BE) ‖ request ID → empty
//	store.requests.by_finish  finish time (µs, 8 bytes BE) ‖ request ID → empty (requests with a replay)
//	store.kiosks.summary      kiosk ID → status ‖ 0 ‖ chain ‖ 0 ‖ prefecture ‖ 0 ‖ region (kioskquery.go)
//	store.operators           operator ID → Operator (JSON)
//	store.api_tokens          token ID → APIToken (JSON)
//	store.api_tokens.by_hash  token SHA-256 (hex) → token ID
//
// Indexes added after a database was created (the console's) are built
// from the existing entries when the store first opens it for writing.
//
//	store.enrollment_codes    kiosk ID → EnrollmentCode (JSON; the code's SHA-256, never the code)
//
// The settlement counters are updated in the same transaction as the event
// append, so DailyCounts reads a handful of keys however many events a day
// has, and a counter never disagrees with the log.
//
// bbolt transactions cannot be interrupted once running; contexts are
// checked before each transaction and while iterating.
//
// # Group commit
//
// The writes on the issuance path (audit events, request claims, finishes
// and settlements, last-seen times) go through a commit queue (commit.go):
// concurrent callers share one transaction and one fsync, a caller alone
// is committed at once, and each returns only once its commit is durable.
// A function may run more than once (when another function in its batch
// fails, the batch is retried without it), so these functions only read
// and write inside the transaction and report refusals through captured
// results rather than errors, which would force a solo retry.
package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
)

// Bucket names.
var (
	bucketMeta          = []byte("store.meta")
	bucketKiosks        = []byte("store.kiosks")
	bucketKioskCerts    = []byte("store.kiosks.by_cert")
	bucketMunicipality  = []byte("store.municipalities")
	bucketSigningKeys   = []byte("store.signing_keys")
	bucketAudit         = []byte("store.audit")
	bucketAuditByKiosk  = []byte("store.audit.by_kiosk")
	bucketAuditDaily    = []byte("store.audit.daily")
	bucketAuditByReq    = []byte("store.audit.by_req")
	bucketAuditByReqOld = []byte("store.audit.by_request") // nested buckets; migrated at open
	bucketRevocations   = []byte("store.revocations")
	bucketAuditBySeq    = []byte("store.audit.by_seq")
	bucketCheckpoints   = []byte("store.audit.checkpoints")
	bucketRequests      = []byte("store.requests")
	bucketReqReplay     = []byte("store.requests.replay")
	bucketReqByClaim    = []byte("store.requests.by_claim")
	bucketReqByFinish   = []byte("store.requests.by_finish")
	bucketEnrollCodes   = []byte("store.enrollment_codes")
	allBuckets          = [][]byte{bucketMeta, bucketKiosks, bucketKioskCerts, bucketMunicipality, bucketSigningKeys, bucketAudit, bucketAuditByKiosk, bucketAuditDaily, bucketAuditByReq, bucketAuditBySeq, bucketCheckpoints, bucketRevocations, bucketRequests, bucketReqReplay, bucketReqByClaim, bucketReqByFinish, bucketEnrollCodes}
	keyAuditHead        = []byte("audit.head") // sequence (8 bytes BE) ‖ hash of the last event
	// consoleBuckets were added with the operations console; databases
	// created before get them, and their indexes built, on first open.
	consoleBuckets = [][]byte{bucketKioskSummary, bucketOperators, bucketAPITokens, bucketAPITokenHash,
		bucketAuditByMuni, bucketAuditByCert, bucketAuditByOp, bucketAuditByResult, bucketAuditByType,
		bucketSettleDaily, bucketSettleMonthly}
	keySchema           = []byte("schema")
	schemaVersion       = []byte("1")
	errClosed           = errors.New("boltstore: store is closed")
	errMissingBuckets   = errors.New("boltstore: database has no store buckets (opened read-only before the center created them)")
	errSchemaMismatched = errors.New("boltstore: unknown schema version; this build reads version 1")
)

// Store is the bbolt implementation of store.Store.
type Store struct {
	db     *bolt.DB
	owned  bool
	closed atomic.Bool
	commit *committer
	// indexStop ends the audit indexer (indexer.go); indexDone closes
	// when it has.
	indexStop, indexDone chan struct{}
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the bbolt file at path with boltfile.Open
// (mode 0600, bounded lock wait) and prepares the store's buckets. Close
// closes the file.
func Open(path string, opts boltfile.Options) (*Store, error) {
	db, err := boltfile.Open(path, opts)
	if err != nil {
		return nil, err
	}
	s, err := New(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

// New prepares the store's buckets in an already open database, which may be
// shared with other components. Close then leaves the database open: its
// owner closes it.
func New(db *bolt.DB) (*Store, error) {
	if db.IsReadOnly() {
		err := db.View(func(tx *bolt.Tx) error {
			for _, name := range append(slices.Clone(allBuckets), consoleBuckets...) {
				if tx.Bucket(name) == nil {
					return errMissingBuckets
				}
			}
			return checkSchema(tx.Bucket(bucketMeta))
		})
		if err != nil {
			return nil, err
		}
		return &Store{db: db}, nil // read-only: no writes to queue
	}
	if err := prepare(db); err != nil {
		return nil, err
	}
	return newStore(db, indexEvery), nil
}

// prepare creates the buckets, checks the schema and migrates older files.
func prepare(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("boltstore: creating bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keySchema) == nil {
			if err := meta.Put(keySchema, schemaVersion); err != nil {
				return err
			}
		}
		if err := checkSchema(meta); err != nil {
			return err
		}
		if err := migrateRequestIndex(tx); err != nil {
			return err
		}
		if err := initIndexedSeq(tx); err != nil {
			return err
		}
		return addConsoleBuckets(tx)
	})
}

// newStore starts the writers of a writable store: the commit queue and
// the audit indexer, which runs every interval (zero: only when told, for
// tests of the not-yet-indexed path).
func newStore(db *bolt.DB, interval time.Duration) *Store {
	s := &Store{db: db, commit: newCommitter(db), indexStop: make(chan struct{}), indexDone: make(chan struct{})}
	if interval <= 0 {
		close(s.indexDone)
		return s
	}
	go s.indexLoop(interval, s.indexStop, s.indexDone)
	return s
}

// migrateRequestIndex moves the per-request nested index buckets of older
// files into the flat index.
func migrateRequestIndex(tx *bolt.Tx) error {
	old := tx.Bucket(bucketAuditByReqOld)
	if old == nil {
		return nil
	}
	flat := tx.Bucket(bucketAuditByReq)
	err := old.ForEachBucket(func(id []byte) error {
		return old.Bucket(id).ForEach(func(k, _ []byte) error {
			return flat.Put(requestIndexKey(string(id), k), nil)
		})
	})
	if err != nil {
		return fmt.Errorf("boltstore: migrating the request index: %w", err)
	}
	return tx.DeleteBucket(bucketAuditByReqOld)
}

func checkSchema(meta *bolt.Bucket) error {
	if v := meta.Get(keySchema); string(v) != string(schemaVersion) {
		return errSchemaMismatched
	}
	return nil
}

// Close marks the store closed and, when Open created it, closes the file.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.indexStop != nil {
		close(s.indexStop)
		<-s.indexDone // it indexes what is left through the committer
	}
	if s.commit != nil {
		s.commit.close()
	}
	if s.owned {
		return s.db.Close()
	}
	return nil
}

// SetNoSync turns fsync after each commit off or on. Only for seeding
// benchmarks and tests: with it off a crash can lose committed writes.
func (s *Store) SetNoSync(off bool) { s.db.NoSync = off }

// CommitStats reports the group commit's work since the store opened:
// transactions, the writes they carried, and the seconds spent in them.
// Writes per transaction show how much the grouping saves.
func (s *Store) CommitStats() (commits, writes int64, seconds float64) {
	if s.commit == nil {
		return 0, 0, 0
	}
	return s.commit.commits.Load(), s.commit.writes.Load(), time.Duration(s.commit.commitNanos.Load()).Seconds()
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	return ctx.Err()
}

func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.db.View(fn)
}

func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.db.Update(fn)
}

// batch runs fn in a transaction shared with concurrent callers (group
// commit). fn must be safe to run more than once.
func (s *Store) batch(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if s.commit == nil {
		return s.db.Update(fn) // a read-only store: Update reports it
	}
	return s.commit.do(fn)
}

// iterCheckEvery is how many items a cursor loop handles between context
// checks.
const iterCheckEvery = 256

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("boltstore: decoding entry: %w", err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("boltstore: encoding: %w", err)
	}
	return b.Put(key, raw)
}

// listJSON decodes every value of a bucket, checking ctx as it goes.
func listJSON[T any](ctx context.Context, b *bolt.Bucket, keep func(*T) bool) ([]T, error) {
	var out []T
	c := b.Cursor()
	n := 0
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if n++; n%iterCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		var item T
		if err := json.Unmarshal(v, &item); err != nil {
			return nil, fmt.Errorf("boltstore: decoding entry: %w", err)
		}
		if keep == nil || keep(&item) {
			out = append(out, item)
		}
	}
	return out, nil
}

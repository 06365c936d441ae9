package records

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/pkg/lgcode"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
)

// Buckets, all prefixed "records." so the records can share a bbolt file
// with the center's store ("store.") or have one of their own.
var (
	bucketMeta     = []byte("records.meta")     // format, master key check value and ID
	bucketKeys     = []byte("records.keys")     // municipality code → wrapped region keys
	bucketVersions = []byte("records.versions") // municipality code → last key version used
	bucketRegions  = []byte("records.regions")  // one nested bucket per municipality code
	bucketLog      = []byte("records.log")      // sequence → Operation (JSON)
	allBuckets     = [][]byte{bucketMeta, bucketKeys, bucketVersions, bucketRegions, bucketLog}

	metaFormat      = []byte("format")
	metaMasterCheck = []byte("master-check")
	metaMasterID    = []byte("master-id")
	masterCheckText = []byte("kioskcert records master key check")
)

// timePrecision is the precision of stored times (as in the store).
const timePrecision = time.Microsecond

// Options tunes Open.
type Options struct {
	// Now is the clock for creation, import and deletion times; nil means
	// time.Now.
	Now func() time.Time
}

// Vault is the records component on one bbolt database. It is safe for
// concurrent use.
type Vault struct {
	db     *bolt.DB
	master *MasterKey
	now    func() time.Time

	mu      sync.Mutex
	regions map[string]*Region // open handles, so lookups do not unwrap keys each time
}

// Open prepares the records buckets in db (which may be shared with the
// store) and checks that master is the key the database was set up with,
// failing with ErrWrongMasterKey before any record is touched. The first
// Open of a database records the master key's check value.
func Open(db *bolt.DB, master *MasterKey, opts Options) (*Vault, error) {
	if master == nil {
		return nil, fmt.Errorf("%w: no master key", ErrMasterKeyFile)
	}
	v := &Vault{db: db, master: master, now: opts.Now, regions: map[string]*Region{}}
	if v.now == nil {
		v.now = time.Now
	}
	if db.IsReadOnly() {
		err := db.View(func(tx *bolt.Tx) error {
			for _, name := range allBuckets {
				if tx.Bucket(name) == nil {
					return fmt.Errorf("records: database has no records buckets (opened read-only before any import)")
				}
			}
			return checkMaster(tx.Bucket(bucketMeta), master)
		})
		if err != nil {
			return nil, err
		}
		return v, nil
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("records: creating bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if f := meta.Get(metaFormat); f == nil {
			if err := meta.Put(metaFormat, []byte{formatV1}); err != nil {
				return err
			}
		} else if !bytes.Equal(f, []byte{formatV1}) {
			return fmt.Errorf("records: unknown database format; this build reads format 1")
		}
		if meta.Get(metaMasterCheck) == nil {
			if tx.Bucket(bucketKeys).Stats().KeyN > 0 {
				return fmt.Errorf("records: database has region keys but no master key check value; refusing to guess")
			}
			return putMasterCheck(meta, master)
		}
		return checkMaster(meta, master)
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

func putMasterCheck(meta *bolt.Bucket, master *MasterKey) error {
	check, err := seal(master.aead, masterCheckText, []byte(adMasterCheck))
	if err != nil {
		return err
	}
	if err := meta.Put(metaMasterCheck, check); err != nil {
		return err
	}
	return meta.Put(metaMasterID, []byte(master.ID()))
}

func checkMaster(meta *bolt.Bucket, master *MasterKey) error {
	check := meta.Get(metaMasterCheck)
	if check == nil {
		return fmt.Errorf("records: database has no master key check value")
	}
	plain, err := open(master.aead, check, []byte(adMasterCheck))
	if err != nil || !bytes.Equal(plain, masterCheckText) {
		return fmt.Errorf("%w: master key %s is not the key these records are wrapped under (they expect key %s); check the master key file path, or use the key from before the last rotation",
			ErrWrongMasterKey, master.ID(), meta.Get(metaMasterID))
	}
	return nil
}

// Region opens the region of a municipality: it unwraps that region's keys
// and returns a handle that can read, count and delete that region only.
// ErrNoRegion when the municipality has none. Handles are cached, so calling
// Region per request is cheap.
func (v *Vault) Region(ctx context.Context, code string) (*Region, error) {
	if err := lgcode.Validate(code); err != nil {
		return nil, fmt.Errorf("records: municipality code: %w", err)
	}
	v.mu.Lock()
	r := v.regions[code]
	v.mu.Unlock()
	if r != nil && !r.deleted.Load() {
		return r, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var entry []byte
	err := v.db.View(func(tx *bolt.Tx) error {
		e := tx.Bucket(bucketKeys).Get([]byte(code))
		if e == nil {
			return fmt.Errorf("%w: municipality %s", ErrNoRegion, code)
		}
		entry = bytes.Clone(e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys, err := unwrapKeyEntry(v.master, code, entry)
	if err != nil {
		return nil, err
	}
	r = newRegion(v, keys)
	v.mu.Lock()
	defer v.mu.Unlock()
	if cached := v.regions[code]; cached != nil && !cached.deleted.Load() {
		return cached, nil
	}
	v.regions[code] = r
	return r, nil
}

func (v *Vault) evict(r *Region) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.regions[r.keys.code] == r {
		delete(v.regions, r.keys.code)
	}
}

// Lookup returns the record a municipality holds for a My Number. A My
// Number with a bad check digit is refused with ErrBadMyNumber before any
// lookup; a municipality without a region or without a record for the
// person gives ErrNoRecord (wrapping ErrNoRegion in the first case).
func (v *Vault) Lookup(ctx context.Context, code, myNumber string) (Record, error) {
	if err := mynumber.Validate(myNumber); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrBadMyNumber, err)
	}
	r, err := v.Region(ctx, code)
	if err != nil {
		if isNoRegion(err) {
			return Record{}, fmt.Errorf("%w: %w", ErrNoRecord, err)
		}
		return Record{}, err
	}
	rec, err := r.Lookup(ctx, myNumber)
	if isNoRegion(err) {
		return Record{}, fmt.Errorf("%w: %w", ErrNoRecord, err)
	}
	return rec, err
}

// ImportResult says what an import did; it carries counts only.
type ImportResult struct {
	Municipality string
	// Persons is the number of records written: Added new ones plus
	// Replaced existing ones.
	Persons, Added, Replaced int
	// Doses is the number of doses across the written records.
	Doses int
	// RegionCreated is true when this import created the region.
	RegionCreated bool
	KeyVersion    uint32
}

// Import writes the entries into a municipality's region in one
// transaction: either every entry is written or none is. Each entry's
// record replaces whatever record the person had in this municipality
// (persons not in entries are left alone). The region is created, with new
// random keys, on first import. Every entry is validated first: a bad My
// Number, an invalid record, a record naming another municipality or a
// repeated My Number fails the whole import, naming the entry by position.
func (v *Vault) Import(ctx context.Context, code, operator string, entries []Entry) (ImportResult, error) {
	res := ImportResult{Municipality: code}
	if err := lgcode.Validate(code); err != nil {
		return res, fmt.Errorf("records: municipality code: %w", err)
	}
	if err := checkOperator(operator); err != nil {
		return res, err
	}
	if len(entries) == 0 {
		return res, fmt.Errorf("%w: nothing to import", ErrInvalidRecord)
	}
	type prepared struct {
		myNumber string
		plain    []byte
	}
	batch := make([]prepared, len(entries))
	defer func() {
		for _, p := range batch {
			clear(p.plain)
		}
	}()
	seen := make(map[string]int, len(entries))
	for i, e := range entries {
		if err := mynumber.Validate(e.MyNumber); err != nil {
			return res, fmt.Errorf("%w: entry %d: %w", ErrBadMyNumber, i+1, err)
		}
		if first, dup := seen[e.MyNumber]; dup {
			return res, fmt.Errorf("%w: entry %d: the same My Number as entry %d", ErrInvalidRecord, i+1, first)
		}
		seen[e.MyNumber] = i + 1
		rec := e.Record
		if rec.Municipality == "" {
			rec.Municipality = code
		}
		if rec.Municipality != code {
			return res, fmt.Errorf("%w: entry %d: municipality differs from the region imported into", ErrInvalidRecord, i+1)
		}
		if err := rec.Validate(); err != nil {
			return res, fmt.Errorf("entry %d: %w", i+1, err)
		}
		plain, err := json.Marshal(&rec)
		if err != nil {
			return res, fmt.Errorf("records: encoding entry %d: %w", i+1, err)
		}
		batch[i] = prepared{e.MyNumber, plain}
		res.Doses += len(rec.Doses)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	now := v.now()
	err := v.db.Update(func(tx *bolt.Tx) error {
		keys, created, err := v.openOrCreateTx(tx, code, now)
		if err != nil {
			return err
		}
		res.RegionCreated, res.KeyVersion = created, keys.version
		b, err := tx.Bucket(bucketRegions).CreateBucketIfNotExists([]byte(code))
		if err != nil {
			return err
		}
		for i, p := range batch {
			if i%1024 == 1023 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			rk := keys.recordKey(p.myNumber)
			if b.Get(rk) != nil {
				res.Replaced++
			} else {
				res.Added++
			}
			sealed, err := keys.sealRecord(rk, p.plain)
			if err != nil {
				return err
			}
			if err := b.Put(rk, sealed); err != nil {
				return err
			}
		}
		res.Persons = res.Added + res.Replaced
		return appendLog(tx, &Operation{Kind: OpImport, Municipality: code, At: now, Records: res.Persons, Doses: res.Doses, Operator: operator, KeyVersion: keys.version})
	})
	if err != nil {
		return ImportResult{Municipality: code}, err
	}
	return res, nil
}

// openOrCreateTx returns the region's keys, creating the region with fresh
// keys (at the next key version) when it does not exist.
func (v *Vault) openOrCreateTx(tx *bolt.Tx, code string, now time.Time) (*regionKeys, bool, error) {
	keysB := tx.Bucket(bucketKeys)
	if e := keysB.Get([]byte(code)); e != nil {
		k, err := unwrapKeyEntry(v.master, code, bytes.Clone(e))
		return k, false, err
	}
	versions := tx.Bucket(bucketVersions)
	var version uint32 = 1
	if last := versions.Get([]byte(code)); len(last) == 4 {
		version = binary.BigEndian.Uint32(last) + 1
	}
	k, entry, err := newRegionKeys(v.master, code, version, now)
	if err != nil {
		return nil, false, err
	}
	if err := keysB.Put([]byte(code), entry); err != nil {
		return nil, false, err
	}
	if err := versions.Put([]byte(code), binary.BigEndian.AppendUint32(nil, version)); err != nil {
		return nil, false, err
	}
	return k, true, nil
}

// RegionCount is what the operator commands show about a region: counts and
// key metadata, no personal data.
type RegionCount struct {
	Municipality string
	Records      int
	KeyVersion   uint32
	Created      time.Time
}

// Counts lists every region with its number of records, ordered by code.
// It reads key metadata and counts keys; nothing is decrypted.
func (v *Vault) Counts(ctx context.Context) ([]RegionCount, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []RegionCount
	err := v.db.View(func(tx *bolt.Tx) error {
		regions := tx.Bucket(bucketRegions)
		return tx.Bucket(bucketKeys).ForEach(func(code, entry []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			version, _, created, _, err := parseKeyEntry(entry)
			if err != nil {
				return fmt.Errorf("records: key entry of municipality %s: %w", code, err)
			}
			c := RegionCount{Municipality: string(code), KeyVersion: version, Created: created}
			if b := regions.Bucket(code); b != nil {
				c.Records = b.Stats().KeyN
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// OperationKind names an entry of the operations log.
type OperationKind string

// Operation kinds.
const (
	OpImport OperationKind = "import" // records written into a region
	OpDelete OperationKind = "delete" // a region and its keys destroyed
	OpRewrap OperationKind = "rewrap" // region keys re-wrapped under a new master key
)

// Operation is one entry of the operations log: who changed which region,
// when, and how many records. It holds no personal data.
type Operation struct {
	Seq          uint64        `json:"seq"`
	Kind         OperationKind `json:"kind"`
	Municipality string        `json:"municipality,omitempty"` // empty for rewrap
	At           time.Time     `json:"at"`
	// Records: import — records written; delete — records destroyed;
	// rewrap — regions re-wrapped.
	Records int `json:"records"`
	// Doses: import — doses in the records written.
	Doses      int    `json:"doses,omitempty"`
	Operator   string `json:"operator"`
	KeyVersion uint32 `json:"keyVersion,omitempty"`
	// MasterKeyID: rewrap — the new master key's ID.
	MasterKeyID string `json:"masterKeyId,omitempty"`
}

// appendLog writes op to the operations log, setting its sequence number
// and normalising its time.
func appendLog(tx *bolt.Tx, op *Operation) error {
	b := tx.Bucket(bucketLog)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	op.Seq = seq
	op.At = op.At.UTC().Truncate(timePrecision)
	raw, err := json.Marshal(op)
	if err != nil {
		return err
	}
	return b.Put(binary.BigEndian.AppendUint64(nil, seq), raw)
}

// Log returns the operations log, oldest first: imports, deletions (the
// record of deletion the brief requires) and master key rotations.
func (v *Vault) Log(ctx context.Context) ([]Operation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Operation
	err := v.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLog).ForEach(func(_, raw []byte) error {
			var op Operation
			if err := json.Unmarshal(raw, &op); err != nil {
				return fmt.Errorf("records: decoding operations log: %w", err)
			}
			out = append(out, op)
			return nil
		})
	})
	return out, err
}

// checkOperator requires an individual operator ID (brief §2: access by
// individual user ID): 1-64 characters of [A-Za-z0-9._@-].
func checkOperator(op string) error {
	if len(op) == 0 || len(op) > 64 {
		return fmt.Errorf("%w: must be 1-64 characters of [A-Za-z0-9._@-]", ErrInvalidOperator)
	}
	for i := 0; i < len(op); i++ {
		c := op[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return fmt.Errorf("%w: must be 1-64 characters of [A-Za-z0-9._@-]", ErrInvalidOperator)
		}
	}
	return nil
}

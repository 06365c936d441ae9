package boltrecords

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/records"
)

// Generation states in records.genstate.
const (
	genStaging byte = 1 // an import is staging runs into it
	genBuilt   byte = 2 // built, waiting for Promote
	genLive    byte = 3 // a region's active generation or overlay
	genRetired byte = 4 // out of use, to be dropped
)

// Value tags inside a generation: a stored value or, in an overlay, the
// removal of the key.
const (
	tagRemoved byte = 0
	tagValue   byte = 1
)

func genKey(g records.Generation) []byte { return binary.BigEndian.AppendUint64(nil, uint64(g)) }

// genstate encoding: state(1) ‖ heartbeat µs(8) ‖ municipality code.
func getGenState(tx *bolt.Tx, g records.Generation) (state byte, heartbeat time.Time, code string, ok bool) {
	raw := tx.Bucket(bucketGenState).Get(genKey(g))
	if len(raw) < 9 {
		return 0, time.Time{}, "", false
	}
	return raw[0], time.UnixMicro(int64(binary.BigEndian.Uint64(raw[1:9]))), string(raw[9:]), true
}

// setGenState sets a generation's state; a zero generation is ignored. A
// zero heartbeat or an empty code keeps the stored one.
func setGenState(tx *bolt.Tx, g records.Generation, st byte, code string, heartbeat int64) error {
	if g == 0 {
		return nil
	}
	if raw := tx.Bucket(bucketGenState).Get(genKey(g)); len(raw) >= 9 {
		if heartbeat == 0 {
			heartbeat = int64(binary.BigEndian.Uint64(raw[1:9]))
		}
		if code == "" {
			code = string(raw[9:])
		}
	}
	v := append([]byte{st}, binary.BigEndian.AppendUint64(nil, uint64(heartbeat))...)
	return tx.Bucket(bucketGenState).Put(genKey(g), append(v, code...))
}

// lookup finds key in generation g: the value, and whether the key is
// there at all (an overlay's removal is present with a nil value). The
// value points into the transaction.
func lookup(tx *bolt.Tx, g records.Generation, key []byte) (value []byte, present bool) {
	if g == 0 || len(key) == 0 {
		return nil, false
	}
	gb := tx.Bucket(bucketGens).Bucket(genKey(g))
	if gb == nil {
		return nil, false
	}
	sb := gb.Bucket(key[:1])
	if sb == nil {
		return nil, false
	}
	v := sb.Get(key)
	if len(v) == 0 {
		return nil, false
	}
	if v[0] == tagRemoved {
		return nil, true
	}
	return v[1:], true
}

// visible is what a lookup sees: the overlay first, then the active
// generation.
func visible(tx *bolt.Tx, st *records.RegionState, key []byte) []byte {
	if v, ok := lookup(tx, st.Overlay, key); ok {
		return v
	}
	v, _ := lookup(tx, st.Active, key)
	return v
}

// shard returns (creating) the shard bucket of key in generation g.
func shard(tx *bolt.Tx, g records.Generation, key []byte) (*bolt.Bucket, error) {
	gb, err := tx.Bucket(bucketGens).CreateBucketIfNotExists(genKey(g))
	if err != nil {
		return nil, err
	}
	return gb.CreateBucketIfNotExists(key[:1])
}

func tagged(v []byte) []byte {
	if v == nil {
		return []byte{tagRemoved}
	}
	return append([]byte{tagValue}, v...)
}

// Get implements records.Backend. It reads the region's generations and
// identity in place (a lookup per issuance: no copies).
func (b *Backend) Get(ctx context.Context, code string, id, key []byte) ([]byte, error) {
	var out []byte
	err := b.view(ctx, func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketRegions).Get([]byte(code))
		if len(raw) < stateHeader || raw[0] != 1 || len(raw) < stateHeader+int(raw[stateHeader-1]) {
			// Absent, or damaged: stateFor says which.
			_, err := stateFor(tx, code, id)
			return err
		}
		if !bytes.Equal(raw[stateHeader:stateHeader+int(raw[stateHeader-1])], id) {
			return fmt.Errorf("%w: the region of municipality %s was deleted (or re-created) after this handle was opened", records.ErrNoRegion, code)
		}
		st := records.RegionState{
			Active:  records.Generation(binary.BigEndian.Uint64(raw[5:13])),
			Overlay: records.Generation(binary.BigEndian.Uint64(raw[13:21])),
		}
		v := visible(tx, &st, key)
		if v == nil {
			return records.ErrNoRecord
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

// Update implements records.Backend.
func (b *Backend) Update(ctx context.Context, u records.RecordUpdate) (records.Operation, error) {
	op := u.Log
	if len(u.Key) == 0 || u.New == nil {
		return records.Operation{}, errors.New("boltrecords: update needs a key and a new value")
	}
	err := b.update(ctx, func(tx *bolt.Tx) error {
		st, err := stateFor(tx, u.Code, u.ID)
		if err != nil {
			return err
		}
		cur := visible(tx, &st, u.Key)
		if cur == nil {
			return fmt.Errorf("%w in municipality %s", records.ErrNoRecord, u.Code)
		}
		if !bytes.Equal(cur, u.Old) {
			return fmt.Errorf("%w: the record changed since it was read", records.ErrConflict)
		}
		// Into the overlay too when the key is there, so that neither a
		// lookup now nor the merge later brings the old value back.
		if _, inOverlay := lookup(tx, st.Overlay, u.Key); inOverlay {
			sb, err := shard(tx, st.Overlay, u.Key)
			if err != nil {
				return err
			}
			if err := sb.Put(u.Key, tagged(u.New)); err != nil {
				return err
			}
		}
		sb, err := shard(tx, st.Active, u.Key)
		if err != nil {
			return err
		}
		if err := sb.Put(u.Key, tagged(u.New)); err != nil {
			return err
		}
		st.Serial++
		if err := putState(tx, &st); err != nil {
			return err
		}
		return appendLog(tx, &op)
	})
	if err != nil {
		return records.Operation{}, err
	}
	return op, nil
}

// Merge implements records.Backend.
func (b *Backend) Merge(ctx context.Context, code string, id []byte) (records.Generation, error) {
	var overlay records.Generation
	var after []byte // the last key merged; nil: start
	for {
		done := false
		err := b.update(ctx, func(tx *bolt.Tx) error {
			st, err := stateFor(tx, code, id)
			if err != nil {
				return err
			}
			switch {
			case st.Overlay == 0 && overlay == 0:
				done = true
				return nil
			case st.Overlay == 0 || overlay != 0 && st.Overlay != overlay:
				// A full import replaced the region meanwhile; its
				// promotion retired this overlay.
				done = true
				return nil
			}
			overlay = st.Overlay
			ob := tx.Bucket(bucketGens).Bucket(genKey(overlay))
			// The overlay's keys land at random places in the active
			// generation: every one dirties a page, so batches are kept
			// a tenth of a build's to bound the transaction's memory.
			limit := max(1, b.batch/10)
			n := 0
			if ob != nil {
				c := ob.Cursor()
				var sk []byte
				if after == nil {
					sk, _ = c.First()
				} else {
					sk, _ = c.Seek(after[:1])
				}
				for ; sk != nil && n < limit; sk, _ = c.Next() {
					sb := ob.Bucket(sk)
					if sb == nil {
						continue
					}
					sc := sb.Cursor()
					var k, v []byte
					if after != nil && after[0] == sk[0] {
						k, v = sc.Seek(after)
						if bytes.Equal(k, after) {
							k, v = sc.Next()
						}
					} else {
						k, v = sc.First()
					}
					for ; k != nil && n < limit; k, v = sc.Next() {
						target, err := shard(tx, st.Active, k)
						if err != nil {
							return err
						}
						if v[0] == tagRemoved {
							err = target.Delete(k)
						} else {
							err = target.Put(k, bytes.Clone(v))
						}
						if err != nil {
							return err
						}
						after = bytes.Clone(k)
						n++
					}
				}
			}
			if n < limit {
				// Everything is in the active generation: retire the
				// overlay in the same transaction.
				st.Overlay = 0
				if err := putState(tx, &st); err != nil {
					return err
				}
				done = true
				return setGenState(tx, overlay, genRetired, code, 0)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if done {
			return overlay, nil
		}
	}
}

// BeginStaging implements records.Backend.
func (b *Backend) BeginStaging(ctx context.Context, code string, now time.Time) (records.Generation, error) {
	var g records.Generation
	err := b.update(ctx, func(tx *bolt.Tx) error {
		seq, err := tx.Bucket(bucketGenState).NextSequence()
		if err != nil {
			return err
		}
		g = records.Generation(seq)
		if _, err := tx.Bucket(bucketRuns).CreateBucket(genKey(g)); err != nil {
			return err
		}
		return setGenState(tx, g, genStaging, code, now.UnixMicro())
	})
	return g, err
}

// Promote implements records.Backend.
func (b *Backend) Promote(ctx context.Context, p records.Promotion) (records.Operation, error) {
	op := p.Log
	err := b.update(ctx, func(tx *bolt.Tx) error {
		gs, _, gcode, ok := getGenState(tx, p.Gen)
		if !ok || gs != genBuilt || gcode != p.Code {
			return fmt.Errorf("%w: generation %d is not a built import of municipality %s", records.ErrStaging, p.Gen, p.Code)
		}
		var st records.RegionState
		if p.ExpectID == nil {
			if p.Create == nil || p.Create.Code != p.Code {
				return errors.New("boltrecords: promoting into a new region needs its state")
			}
			if tx.Bucket(bucketRegions).Get([]byte(p.Code)) != nil {
				return fmt.Errorf("%w: municipality %s has a region now", records.ErrConflict, p.Code)
			}
			if last := lastVersion(tx, p.Code); p.Create.KeyVersion != last+1 {
				return fmt.Errorf("%w: municipality %s is at key version %d", records.ErrConflict, p.Code, last)
			}
			st = *p.Create
			st.Active, st.Overlay, st.Serial = p.Gen, 0, 1
			if err := tx.Bucket(bucketVersions).Put([]byte(p.Code), binary.BigEndian.AppendUint32(nil, st.KeyVersion)); err != nil {
				return err
			}
		} else {
			var err error
			if st, err = stateFor(tx, p.Code, p.ExpectID); err != nil {
				return err
			}
			if st.Serial != p.ExpectSerial {
				return fmt.Errorf("%w: municipality %s changed since the import began", records.ErrConflict, p.Code)
			}
			if p.Overlay {
				if st.Overlay != 0 {
					return fmt.Errorf("%w: municipality %s has changes still being merged", records.ErrConflict, p.Code)
				}
				st.Overlay = p.Gen
			} else {
				for _, g := range []records.Generation{st.Active, st.Overlay} {
					if err := setGenState(tx, g, genRetired, p.Code, 0); err != nil {
						return err
					}
				}
				st.Active, st.Overlay = p.Gen, 0
			}
			st.Serial++
		}
		st.Records = p.Records
		if err := putState(tx, &st); err != nil {
			return err
		}
		if err := setGenState(tx, p.Gen, genLive, p.Code, 0); err != nil {
			return err
		}
		return appendLog(tx, &op)
	})
	if err != nil {
		return records.Operation{}, err
	}
	return op, nil
}

// Garbage implements records.Backend.
func (b *Backend) Garbage(ctx context.Context, staleBefore time.Time) ([]records.Generation, error) {
	var out []records.Generation
	err := b.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGenState).ForEach(func(k, v []byte) error {
			if len(k) != 8 || len(v) < 9 {
				return nil
			}
			heartbeat := time.UnixMicro(int64(binary.BigEndian.Uint64(v[1:9])))
			switch {
			case v[0] == genRetired,
				(v[0] == genStaging || v[0] == genBuilt) && heartbeat.Before(staleBefore):
				out = append(out, records.Generation(binary.BigEndian.Uint64(k)))
			}
			return nil
		})
	})
	return out, err
}

// Drop implements records.Backend: one shard (or staging run) per
// transaction, so no transaction frees more than a few megabytes.
func (b *Backend) Drop(ctx context.Context, g records.Generation) error {
	for {
		done := false
		err := b.update(ctx, func(tx *bolt.Tx) error {
			st, _, _, ok := getGenState(tx, g)
			if !ok {
				done = true
				return nil
			}
			if st == genLive {
				return fmt.Errorf("boltrecords: generation %d is in use by a region; it cannot be dropped", g)
			}
			key := genKey(g)
			for _, parent := range [][]byte{bucketGens, bucketRuns} {
				pb := tx.Bucket(parent).Bucket(key)
				if pb == nil {
					continue
				}
				if k, v := pb.Cursor().First(); k != nil {
					if v == nil { // a nested bucket: a shard, or a run
						return pb.DeleteBucket(k)
					}
					return pb.Delete(k)
				}
				if err := tx.Bucket(parent).DeleteBucket(key); err != nil {
					return err
				}
			}
			done = true
			return tx.Bucket(bucketGenState).Delete(key)
		})
		if err != nil || done {
			return err
		}
	}
}

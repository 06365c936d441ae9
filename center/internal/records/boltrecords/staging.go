package boltrecords

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/records"
)

const (
	// blockSize is the size a run's blocks are filled to: large values are
	// written as contiguous overflow pages, cheap to append and to free.
	blockSize = 64 << 10
	// runTxBytes bounds the blocks one StageRun transaction writes.
	runTxBytes = 8 << 20
	// buildFill is the fill of pages built by appending in key order.
	buildFill = 0.95
)

// runCountKey holds a run's item count; block keys are 4 bytes.
var runCountKey = []byte("count")

func blockKey(seq uint32) []byte { return binary.BigEndian.AppendUint32(nil, seq) }

// appendItem encodes one item into a block: key length ‖ key ‖ ref ‖
// length ‖ tag ‖ value. The tag is the one stored in the generation, so a
// build writes the slice as is.
func appendItem(dst []byte, it *records.Staged) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(it.Key)))
	dst = append(dst, it.Key...)
	dst = binary.AppendUvarint(dst, it.Ref)
	if it.Value == nil {
		dst = binary.AppendUvarint(dst, 1)
		return append(dst, tagRemoved)
	}
	dst = binary.AppendUvarint(dst, uint64(len(it.Value))+1)
	dst = append(dst, tagValue)
	return append(dst, it.Value...)
}

// StageRun implements records.Backend.
func (b *Backend) StageRun(ctx context.Context, g records.Generation, kind records.RunKind, items []records.Staged, now time.Time) error {
	if kind != records.RunRecords && kind != records.RunUnique {
		return fmt.Errorf("boltrecords: unknown run kind %d", kind)
	}
	for i := range items {
		if len(items[i].Key) == 0 {
			return errors.New("boltrecords: a staged item has an empty key")
		}
		if i > 0 && bytes.Compare(items[i-1].Key, items[i].Key) > 0 {
			return errors.New("boltrecords: a staging run is not sorted by key")
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	var name []byte
	var seq uint32
	pos := 0
	for pos < len(items) {
		// bbolt keeps each value until its transaction commits: the
		// blocks come from a pool and go back once it has.
		var used []*[]byte
		err := b.update(ctx, func(tx *bolt.Tx) error {
			st, _, _, ok := getGenState(tx, g)
			rb := tx.Bucket(bucketRuns).Bucket(genKey(g))
			if !ok || st != genStaging || rb == nil {
				return fmt.Errorf("%w: generation %d is not staging", records.ErrStaging, g)
			}
			if name == nil {
				id, err := rb.NextSequence()
				if err != nil {
					return err
				}
				name = binary.BigEndian.AppendUint64([]byte{byte(kind)}, id)
				run, err := rb.CreateBucket(name)
				if err != nil {
					return err
				}
				if err := run.Put(runCountKey, binary.BigEndian.AppendUint64(nil, uint64(len(items)))); err != nil {
					return err
				}
				if err := touch(tx, g, now); err != nil {
					return err
				}
			}
			run := rb.Bucket(name)
			if run == nil {
				return fmt.Errorf("%w: generation %d lost a run", records.ErrStaging, g)
			}
			written := 0
			for pos < len(items) && written < runTxBytes {
				bp := blockPool.Get().(*[]byte)
				used = append(used, bp)
				block := (*bp)[:0]
				for pos < len(items) && len(block) < blockSize {
					block = appendItem(block, &items[pos])
					pos++
				}
				*bp = block
				if err := run.Put(blockKey(seq), block); err != nil {
					return err
				}
				seq++
				written += len(block)
			}
			return nil
		})
		for _, bp := range used {
			blockPool.Put(bp)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// blockPool holds block buffers between StageRun transactions.
var blockPool = sync.Pool{New: func() any {
	b := make([]byte, 0, blockSize+4096)
	return &b
}}

// touch refreshes a staging generation's heartbeat, keeping its code.
func touch(tx *bolt.Tx, g records.Generation, now time.Time) error {
	st, _, code, ok := getGenState(tx, g)
	if !ok {
		return fmt.Errorf("%w: generation %d", records.ErrStaging, g)
	}
	return setGenState(tx, g, st, code, now.UnixMicro())
}

// runReader walks one run's items in order.
type runReader struct {
	name  []byte
	run   *bolt.Bucket // in the current transaction
	seq   uint32       // the block being read
	bp    *[]byte      // the block's buffer, from blockPool
	block []byte       // a copy, valid across transactions
	off   int
	item  records.Staged
	raw   []byte // tag ‖ value, as stored in a generation
	valid bool
	err   error
	// retired collects the buffers of blocks read to the end in the
	// current transaction: items in them may be held by the transaction
	// until it ends, so they go back to the pool only then.
	retired *[]*[]byte
}

// load reads block seq into a pooled buffer; false when the run has no
// more blocks.
func (r *runReader) load(seq uint32) bool {
	v := r.run.Get(blockKey(seq))
	if v == nil {
		return false
	}
	bp := blockPool.Get().(*[]byte)
	*bp = append((*bp)[:0], v...)
	r.seq, r.bp, r.block, r.off = seq, bp, *bp, 0
	return true
}

// next moves to the next item, loading the next block as needed; consume
// deletes a block once it is read (a write transaction only).
func (r *runReader) next(consume bool) {
	for r.off >= len(r.block) {
		if r.bp != nil {
			*r.retired = append(*r.retired, r.bp)
			r.bp = nil
		}
		if r.block != nil && consume {
			if err := r.run.Delete(blockKey(r.seq)); err != nil {
				r.err, r.valid = err, false
				return
			}
		}
		seq := r.seq + 1
		if r.block == nil {
			seq = 0
		}
		if !r.load(seq) {
			r.valid = false
			return
		}
	}
	b := r.block[r.off:]
	fail := func() { r.err, r.valid = errors.New("boltrecords: a staging run block is damaged"), false }
	kl, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < kl {
		fail()
		return
	}
	b = b[n:]
	key := b[:kl:kl]
	b = b[kl:]
	ref, n := binary.Uvarint(b)
	if n <= 0 {
		fail()
		return
	}
	b = b[n:]
	vl, n := binary.Uvarint(b)
	if n <= 0 || vl == 0 || uint64(len(b)-n) < vl {
		fail()
		return
	}
	raw := b[n : n+int(vl) : n+int(vl)]
	r.off = len(r.block) - len(b) + n + int(vl)
	r.item = records.Staged{Key: key, Ref: ref}
	if raw[0] == tagValue {
		r.item.Value = raw[1:]
	}
	r.raw, r.valid = raw, true
}

// readers is a min-heap of run readers by (key, ref): equal keys come out
// together, the earliest reference first.
type readers []*runReader

func (h readers) Len() int { return len(h) }
func (h readers) Less(i, j int) bool {
	if c := bytes.Compare(h[i].item.Key, h[j].item.Key); c != 0 {
		return c < 0
	}
	return h[i].item.Ref < h[j].item.Ref
}
func (h readers) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *readers) Push(x any)   { *h = append(*h, x.(*runReader)) }
func (h *readers) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

// merger streams a set of runs in key order across transactions.
type merger struct {
	rs      []*runReader
	h       readers
	started bool
	retired []*[]byte // see runReader.retired
}

// release returns the blocks read to the end to the pool; call it once
// the transaction that read them has ended.
func (m *merger) release() {
	for _, bp := range m.retired {
		blockPool.Put(bp)
	}
	clear(m.retired)
	m.retired = m.retired[:0]
}

// begin binds the readers to tx; the first time, it reads each run's first
// item.
func (m *merger) begin(tx *bolt.Tx, g records.Generation) error {
	rb := tx.Bucket(bucketRuns).Bucket(genKey(g))
	if rb == nil {
		return fmt.Errorf("%w: generation %d lost its runs", records.ErrStaging, g)
	}
	for _, r := range m.rs {
		if r.run = rb.Bucket(r.name); r.run == nil {
			return fmt.Errorf("%w: generation %d lost a run", records.ErrStaging, g)
		}
	}
	if !m.started {
		m.started = true
		for _, r := range m.rs {
			r.next(false)
			if r.err != nil {
				return r.err
			}
			if r.valid {
				m.h = append(m.h, r)
			}
		}
		heap.Init(&m.h)
	}
	return nil
}

// pop returns the smallest current item's reader, or nil at the end. The
// caller must call advance with it before the next pop.
func (m *merger) pop() *runReader {
	if len(m.h) == 0 {
		return nil
	}
	return m.h[0]
}

func (m *merger) advance(consume bool) error {
	r := m.h[0]
	r.next(consume)
	if r.err != nil {
		return r.err
	}
	if r.valid {
		heap.Fix(&m.h, 0)
	} else {
		heap.Pop(&m.h)
	}
	return nil
}

type runInfo struct {
	name  []byte
	count int64
}

// FinishStaging implements records.Backend.
func (b *Backend) FinishStaging(ctx context.Context, g records.Generation, f records.Finish) (records.StagingResult, error) {
	var res records.StagingResult
	maxConflicts := f.MaxConflicts
	if maxConflicts <= 0 {
		maxConflicts = 100
	}
	now := f.Now
	if now == nil {
		now = time.Now
	}
	runs := map[records.RunKind][]runInfo{}
	var total int64
	err := b.view(ctx, func(tx *bolt.Tx) error {
		st, _, _, ok := getGenState(tx, g)
		rb := tx.Bucket(bucketRuns).Bucket(genKey(g))
		if !ok || st != genStaging || rb == nil {
			return fmt.Errorf("%w: generation %d is not staging", records.ErrStaging, g)
		}
		return rb.ForEach(func(k, v []byte) error {
			if v != nil || len(k) != 9 {
				return nil
			}
			c := rb.Bucket(k).Get(runCountKey)
			if len(c) != 8 {
				return errors.New("boltrecords: a staging run has no item count")
			}
			n := int64(binary.BigEndian.Uint64(c))
			runs[records.RunKind(k[0])] = append(runs[records.RunKind(k[0])], runInfo{bytes.Clone(k), n})
			total += n
			return nil
		})
	})
	if err != nil {
		return res, err
	}
	var done int64
	report := func() {
		if f.Progress != nil {
			f.Progress(done, total)
		}
	}
	report()
	conflict := func(c records.Conflict) {
		if len(res.Conflicts) < maxConflicts {
			res.Conflicts = append(res.Conflicts, c)
		} else {
			res.MoreConflicts++
		}
	}

	// Resident numbers first: cheap (no writes), and a conflict there
	// means the build can be skipped.
	err = b.merge(ctx, g, runs[records.RunUnique], false, now, func(_ *bolt.Tx, it *records.Staged, _ []byte, first *records.Staged) error {
		done++
		if first != nil {
			conflict(records.Conflict{Kind: records.RunUnique, FirstRef: first.Ref, Ref: it.Ref, FirstValue: bytes.Clone(first.Value), Value: bytes.Clone(it.Value)})
		}
		if done%65536 == 0 {
			report()
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	build := f.Build && len(res.Conflicts) == 0 && res.MoreConflicts == 0
	var gb, sb *bolt.Bucket
	var shardOf byte
	var lastTx *bolt.Tx
	err = b.merge(ctx, g, runs[records.RunRecords], build, now, func(tx *bolt.Tx, it *records.Staged, raw []byte, first *records.Staged) error {
		done++
		if done%65536 == 0 {
			report()
		}
		if it.Value == nil {
			res.Removals++
		} else {
			res.Records++
		}
		if first != nil {
			conflict(records.Conflict{Kind: records.RunRecords, FirstRef: first.Ref, Ref: it.Ref})
			build = false
		}
		if !build {
			return nil
		}
		// The join with the base: the items come in key order, so the
		// base's pages are read in order too.
		base, inBase := lookup(tx, f.Base, it.Key)
		switch {
		case it.Value == nil && inBase && base != nil:
			res.Removed++
		case it.Value == nil:
			res.Absent++
		case base != nil:
			res.Replaced++
			if f.Carry != nil {
				v, err := f.Carry(*it, base)
				if err != nil {
					return err
				}
				if len(v) == 0 {
					return errors.New("boltrecords: Carry returned no value")
				}
				if len(v) != len(it.Value) || &v[0] != &it.Value[0] {
					raw = tagged(v)
				}
			}
		default:
			res.Added++
		}
		if tx != lastTx || sb == nil || it.Key[0] != shardOf {
			if tx != lastTx {
				lastTx = tx
				var err error
				if gb, err = tx.Bucket(bucketGens).CreateBucketIfNotExists(genKey(g)); err != nil {
					return err
				}
			}
			var err error
			if sb, err = gb.CreateBucketIfNotExists(it.Key[:1]); err != nil {
				return err
			}
			sb.FillPercent = buildFill
			shardOf = it.Key[0]
		}
		return sb.Put(it.Key, raw)
	})
	if err != nil {
		return res, err
	}
	report()
	// Free the runs (a build consumed their blocks already), one run per
	// transaction, and mark the generation built.
	for {
		finished := false
		err := b.update(ctx, func(tx *bolt.Tx) error {
			rb := tx.Bucket(bucketRuns).Bucket(genKey(g))
			if rb == nil {
				return fmt.Errorf("%w: generation %d lost its runs", records.ErrStaging, g)
			}
			if k, v := rb.Cursor().First(); k != nil && v == nil {
				return rb.DeleteBucket(k)
			}
			finished = true
			if build {
				return setGenState(tx, g, genBuilt, "", now().UnixMicro())
			}
			return touch(tx, g, now())
		})
		if err != nil {
			return res, err
		}
		if finished {
			break
		}
	}
	if f.Build && !build && len(res.Conflicts) == 0 && res.MoreConflicts == 0 {
		return res, errors.New("boltrecords: build stopped without a conflict")
	}
	return res, nil
}

// merge streams the runs in key order through fn, a batch per
// transaction (write transactions, consuming the blocks, when write is
// set). fn gets the item, its tag ‖ value as a generation stores it, and,
// if its key repeats an earlier item's, that group's first item (valid
// during the call only). raw stays valid until the transaction ends.
func (b *Backend) merge(ctx context.Context, g records.Generation, runs []runInfo, write bool, now func() time.Time, fn func(tx *bolt.Tx, it *records.Staged, raw []byte, first *records.Staged) error) error {
	if len(runs) == 0 {
		return nil
	}
	m := &merger{}
	for _, r := range runs {
		m.rs = append(m.rs, &runReader{name: r.name, retired: &m.retired})
	}
	defer func() {
		// The readers' current blocks, at the end or on an error.
		for _, r := range m.rs {
			if r.bp != nil {
				blockPool.Put(r.bp)
				r.bp = nil
			}
		}
		m.release()
	}()
	var groupFirst records.Staged
	var groupKey, groupValue []byte
	haveGroup := false
	for {
		finished := false
		body := func(tx *bolt.Tx) error {
			if err := m.begin(tx, g); err != nil {
				return err
			}
			if write {
				if err := touch(tx, g, now()); err != nil {
					return err
				}
			}
			for n := 0; n < b.batch; n++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				r := m.pop()
				if r == nil {
					finished = true
					return nil
				}
				it := r.item
				var first *records.Staged
				if haveGroup && bytes.Equal(groupKey, it.Key) {
					first = &groupFirst
				} else {
					// Reused buffers: one copy per item, no allocation.
					groupKey = append(groupKey[:0], it.Key...)
					groupValue = append(groupValue[:0], it.Value...)
					groupFirst = records.Staged{Key: groupKey, Value: groupValue, Ref: it.Ref}
					haveGroup = true
				}
				if err := fn(tx, &it, r.raw, first); err != nil {
					return err
				}
				if err := m.advance(write); err != nil {
					return err
				}
			}
			return nil
		}
		var err error
		if write {
			err = b.update(ctx, body)
		} else {
			err = b.view(ctx, body)
		}
		m.release()
		if err != nil {
			return err
		}
		if finished {
			return nil
		}
	}
}

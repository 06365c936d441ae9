package recordsbench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/boltrecords"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv"
	"github.com/kioskcert/kioskcert/center/internal/records/pgrecords"
	"github.com/kioskcert/kioskcert/center/internal/records/progress"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
)

// Code is the municipality the benchmarks import into: Yokohama (141003).
const Code = "141003"

// Memory is what the sampler saw, in bytes.
type Memory struct {
	// HWM is the kernel's peak resident set (VmHWM, reset before the
	// measured work): it counts the pages of the memory-mapped records
	// file the process touched, which the kernel may drop at will.
	HWM int64
	// PeakAnon is the highest anonymous resident memory (RssAnon) sampled
	// every 50 ms: the memory the work itself holds (Go heap, stacks,
	// bbolt's dirty pages), what must stay bounded.
	PeakAnon int64
	// PeakHeap is the highest Go heap in use sampled.
	PeakHeap int64
}

func (m Memory) String() string {
	return fmt.Sprintf("peak RssAnon %d MiB, peak Go heap %d MiB, VmHWM %d MiB (includes mapped file pages)", m.PeakAnon>>20, m.PeakHeap>>20, m.HWM>>20)
}

// sampler samples memory until stopped.
type sampler struct {
	mu   sync.Mutex
	mem  Memory
	done chan struct{}
	wg   sync.WaitGroup
}

// resetHWM asks the kernel to restart VmHWM from the current resident set
// (Linux 4.0 and later); without it HWM covers the whole process.
func resetHWM() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func procStatus() map[string]int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	for _, line := range bytes.Split(raw, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		f := bytes.Fields(v)
		if len(f) == 2 && string(f[1]) == "kB" {
			n, _ := strconv.ParseInt(string(f[0]), 10, 64)
			out[string(k)] = n << 10
		}
	}
	return out
}

func startSampler() *sampler {
	runtime.GC()
	resetHWM()
	s := &sampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			st := procStatus()
			metrics.Read(heap)
			s.mu.Lock()
			s.mem.PeakAnon = max(s.mem.PeakAnon, st["RssAnon"])
			s.mem.PeakHeap = max(s.mem.PeakHeap, int64(heap[0].Value.Uint64()))
			s.mu.Unlock()
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() Memory {
	close(s.done)
	s.wg.Wait()
	s.mem.HWM = procStatus()["VmHWM"]
	return s.mem
}

// CityOptions tunes City.
type CityOptions struct {
	// Dir holds the generated ledger and the records file.
	Dir string
	// Persons in the generated ledger.
	Persons int
	Seed    uint64
	// Regenerate writes the ledger even if Dir has one of this size.
	Regenerate bool
	// Changes also applies a changes file (1% changed, 0.5% added, 0.1%
	// removed) after the import; Reimport then imports the full ledger
	// again over the records (the path where every person is looked up
	// and replaced).
	Changes, Reimport bool
	// NoSync skips fsync (not what the center does).
	NoSync bool
	// Postgres, when set, imports into PostgreSQL (pgrecords) at this URL
	// instead of a bbolt file; the database must hold no records yet.
	Postgres string
	// KeepPriority imports at normal priority (see ledgercsv.Options).
	KeepPriority bool
	// Progress receives the progress display (nil: none).
	Progress io.Writer
}

// ImportFigures are one measured import.
type ImportFigures struct {
	What    string
	Result  records.ImportResult
	Rows    int64
	Elapsed time.Duration
	// CPU is the process's user and system CPU time during the import
	// (getrusage): what the import costs whatever else loads the machine.
	CPU    time.Duration
	Memory Memory
}

// RowsPerCPUSecond is the rate the import would reach with one CPU of its
// own: rows per second of CPU time it used.
func (f ImportFigures) RowsPerCPUSecond() float64 { return float64(f.Rows) / f.CPU.Seconds() }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// RowsPerSecond is the import's rate in ledger rows (doses) per second.
func (f ImportFigures) RowsPerSecond() float64 { return float64(f.Rows) / f.Elapsed.Seconds() }

// CityReport is what City measured.
type CityReport struct {
	Persons, Rows   int
	FileBytes       int64
	Generated       time.Duration
	Imports         []ImportFigures
	RecordsFile     int64 // size of the records file (database) after the first import
	Stored          Usage
	LookupsVerified int
}

// Usage is the space the region's records take: Bytes of pages (bbolt:
// B+tree pages; PostgreSQL: the region's share of the table and its
// index), InUse of them holding data (bbolt only; PostgreSQL: Bytes).
type Usage struct {
	Records, Bytes, InUse int64
}

// opened is a records backend opened for a benchmark.
type opened struct {
	vault *records.Vault
	// usage measures a region; size the whole file or database.
	usage func(ctx context.Context, code string) (Usage, error)
	size  func(ctx context.Context) int64
	close func()
}

// open opens a new, empty records backend: a bbolt file at path, or
// PostgreSQL at pgURL when it is set.
func open(ctx context.Context, path, pgURL string, noSync bool) (*opened, error) {
	key := make([]byte, records.MasterKeySize)
	rand.Read(key)
	master, err := records.NewMasterKey(key)
	if err != nil {
		return nil, err
	}
	if pgURL != "" {
		b, err := pgrecords.Open(ctx, pgURL, pgrecords.Options{})
		if err != nil {
			return nil, err
		}
		v, err := records.Open(ctx, b, master, records.Options{})
		if err != nil {
			b.Close()
			return nil, err
		}
		return &opened{vault: v,
			usage: func(ctx context.Context, code string) (Usage, error) {
				u, err := b.Usage(ctx, code)
				return Usage{Records: u.Records, Bytes: u.Bytes, InUse: u.Bytes}, err
			},
			size: func(ctx context.Context) int64 {
				var n int64
				b.Pool().QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n)
				return n
			},
			close: func() { b.Close() }}, nil
	}
	os.Remove(path)
	db, err := boltfile.Open(path, boltfile.Options{NoSync: noSync})
	if err != nil {
		return nil, err
	}
	b, err := boltrecords.New(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	v, err := records.Open(ctx, b, master, records.Options{})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &opened{vault: v,
		usage: func(ctx context.Context, code string) (Usage, error) {
			u, err := b.Usage(ctx, code)
			return Usage{Records: u.Records, Bytes: u.Bytes, InUse: u.InUse}, err
		},
		size: func(context.Context) int64 {
			st, err := os.Stat(path)
			if err != nil {
				return 0
			}
			return st.Size()
		},
		close: func() { db.Close() }}, nil
}

// BytesPerPerson is the stored generation's bytes (pages in use, keys,
// values and B+tree overhead) per person.
func (r CityReport) BytesPerPerson() float64 {
	return float64(r.Stored.Bytes) / float64(r.Stored.Records)
}

// City generates (or reuses) a ledger of opts.Persons persons, imports it
// into a new records file and reports the figures.
func City(ctx context.Context, opts CityOptions) (CityReport, error) {
	var rep CityReport
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return rep, err
	}
	ledger := filepath.Join(opts.Dir, fmt.Sprintf("ledger-%s-%d-%d.csv", Code, opts.Persons, opts.Seed))
	rows, took, err := ensureLedger(ledger, 0, opts.Persons, opts.Seed, opts.Regenerate)
	if err != nil {
		return rep, err
	}
	fi, err := os.Stat(ledger)
	if err != nil {
		return rep, err
	}
	rep.Persons, rep.Rows, rep.FileBytes, rep.Generated = opts.Persons, rows, fi.Size(), took

	o, err := open(ctx, filepath.Join(opts.Dir, "records.db"), opts.Postgres, opts.NoSync)
	if err != nil {
		return rep, err
	}
	defer o.close()
	v := o.vault
	f, err := runImport(ctx, v, ledger, records.ModeFull, "full import into an empty region", int64(rows), opts.KeepPriority, opts.Progress)
	if err != nil {
		return rep, err
	}
	rep.Imports = append(rep.Imports, f)
	rep.RecordsFile = o.size(ctx)
	if rep.Stored, err = o.usage(ctx, Code); err != nil {
		return rep, err
	}
	if rep.LookupsVerified, err = verify(ctx, v, opts.Persons, opts.Seed, 2000); err != nil {
		return rep, err
	}
	if opts.Changes {
		path := filepath.Join(opts.Dir, "changes.csv")
		n, err := writeChanges(path, opts.Persons, opts.Seed)
		if err != nil {
			return rep, err
		}
		f, err := runImport(ctx, v, path, records.ModeChanges, "changes file (1% changed, 0.5% added, 0.1% removed)", int64(n), opts.KeepPriority, opts.Progress)
		if err != nil {
			return rep, err
		}
		rep.Imports = append(rep.Imports, f)
	}
	if opts.Reimport {
		f, err := runImport(ctx, v, ledger, records.ModeFull, "full import over the existing records", int64(rows), opts.KeepPriority, opts.Progress)
		if err != nil {
			return rep, err
		}
		rep.Imports = append(rep.Imports, f)
	}
	return rep, nil
}

// ensureLedger writes the ledger file unless it exists (and regenerate is
// false); it returns the rows and the time taken.
func ensureLedger(path string, first, persons int, seed uint64, regenerate bool) (int, time.Duration, error) {
	if !regenerate {
		if f, err := os.Open(path); err == nil {
			defer f.Close()
			rows, err := countRows(f)
			return rows, 0, err
		}
	}
	start := time.Now()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, 0, err
	}
	rows, err := Generate(f, Code, first, persons, seed)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return rows, time.Since(start), err
}

func countRows(r io.Reader) (int, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	n := -1 // the header
	for {
		_, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
		n++
	}
}

func runImport(ctx context.Context, v *records.Vault, path string, mode records.ImportMode, what string, rows int64, keepPriority bool, progressOut io.Writer) (ImportFigures, error) {
	f, err := os.Open(path)
	if err != nil {
		return ImportFigures{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ImportFigures{}, err
	}
	s := startSampler()
	start, cpu := time.Now(), cpuTime()
	im, err := ledgercsv.Start(ctx, v, f, Code, "bench-operator", ledgercsv.Options{Mode: mode, Size: fi.Size(), KeepPriority: keepPriority})
	if err != nil {
		s.stop()
		return ImportFigures{}, err
	}
	stop := func() {}
	if progressOut != nil {
		stop = progress.Follow(progress.New(progressOut, progress.Options{}), func() progress.Status { return im.Progress().Status() }, 500*time.Millisecond)
	}
	res, err := im.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu
	stop()
	mem := s.stop()
	if err != nil {
		return ImportFigures{}, err
	}
	return ImportFigures{What: what, Result: res, Rows: rows, Elapsed: elapsed, CPU: cpu, Memory: mem}, nil
}

// verify looks up n persons spread over the ledger and checks each record
// is the one generated.
func verify(ctx context.Context, v *records.Vault, persons int, seed uint64, n int) (int, error) {
	for k := range n {
		i := int(uint64(k) * 2654435761 % uint64(persons))
		want := Person(Code, i, seed)
		got, err := v.Lookup(ctx, Code, want.MyNumber)
		if err != nil {
			return k, fmt.Errorf("recordsbench: looking up person %d: %w", i, err)
		}
		if got.ResidentNumber != want.Record.ResidentNumber || len(got.Doses) != len(want.Record.Doses) || got.Doses[len(got.Doses)-1] != want.Record.Doses[len(want.Record.Doses)-1] {
			return k, fmt.Errorf("recordsbench: person %d's record differs from the generated one", i)
		}
	}
	return n, nil
}

// writeChanges writes a changes file against a ledger of persons: every
// 100th person gets an eighth-day later last dose lot (changed), every
// 1000th is removed, persons/200 new ones are added.
func writeChanges(path string, persons int, seed uint64) (int, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := ledgercsv.NewWriter(bw, records.ModeChanges)
	if err != nil {
		return 0, err
	}
	rows := 0
	for i := 0; i < persons; i++ {
		switch {
		case i%1000 == 500:
			if err := w.Remove(Code, Person(Code, i, seed).MyNumber); err != nil {
				return rows, err
			}
			rows++
		case i%100 == 7:
			e := Person(Code, i, seed)
			e.Record.Doses[len(e.Record.Doses)-1].Lot = "CHANGED1"
			if err := w.Set(e); err != nil {
				return rows, err
			}
			rows += len(e.Record.Doses)
		}
	}
	for i := persons; i < persons+persons/200; i++ {
		e := Person(Code, i, seed)
		if err := w.Set(e); err != nil {
			return rows, err
		}
		rows += len(e.Record.Doses)
	}
	if err := w.Flush(); err != nil {
		return rows, err
	}
	return rows, bw.Flush()
}

// LookupOptions tunes Lookups.
type LookupOptions struct {
	Dir     string
	Persons int
	Seed    uint64
	// Rate is the lookups per second, spread over Workers goroutines,
	// issued on a fixed schedule (latency counts from the scheduled time,
	// so a stall is not hidden by the lookups it delays).
	Rate, Workers int
	// Baseline is how long lookups run without an import: half before
	// the import, half after.
	Baseline time.Duration
	NoSync   bool
	// Postgres: see CityOptions.
	Postgres string
	// KeepPriority runs the measured import at normal priority.
	KeepPriority bool
}

// Latencies summarises lookup latencies.
type Latencies struct {
	N                        int
	P50, P90, P99, P999, Max time.Duration
	Errors                   int
}

func summarise(d []time.Duration, errs int) Latencies {
	if len(d) == 0 {
		return Latencies{Errors: errs}
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return Latencies{N: len(d), P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: d[len(d)-1], Errors: errs}
}

func (l Latencies) String() string {
	return fmt.Sprintf("n=%d p50=%s p90=%s p99=%s p99.9=%s max=%s errors=%d", l.N, l.P50, l.P90, l.P99, l.P999, l.Max, l.Errors)
}

// LookupReport compares lookups without and during a full import of the
// same region.
type LookupReport struct {
	Persons            int
	Idle, DuringImport Latencies
	Import             ImportFigures
}

// Lookups imports a ledger of opts.Persons persons, then measures lookups
// of persons of that region for opts.Baseline/2, then while the same
// ledger is imported over the region (a full re-import: every record
// replaced) until the import ends, then for opts.Baseline/2 again.
func Lookups(ctx context.Context, opts LookupOptions) (LookupReport, error) {
	rep := LookupReport{Persons: opts.Persons}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return rep, err
	}
	ledger := filepath.Join(opts.Dir, fmt.Sprintf("ledger-%s-%d-%d.csv", Code, opts.Persons, opts.Seed))
	rows, _, err := ensureLedger(ledger, 0, opts.Persons, opts.Seed, false)
	if err != nil {
		return rep, err
	}
	o, err := open(ctx, filepath.Join(opts.Dir, "lookups.db"), opts.Postgres, opts.NoSync)
	if err != nil {
		return rep, err
	}
	defer o.close()
	v := o.vault
	if _, err := runImport(ctx, v, ledger, records.ModeFull, "setup", int64(rows), true, nil); err != nil {
		return rep, err
	}
	myNumbers := make([]string, 4096)
	for i := range myNumbers {
		myNumbers[i] = Person(Code, int(uint64(i)*2654435761%uint64(opts.Persons)), opts.Seed).MyNumber
	}
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	measure := func(until <-chan struct{}) Latencies {
		mu.Lock()
		lat, errs = nil, 0
		mu.Unlock()
		var wg sync.WaitGroup
		interval := time.Duration(opts.Workers) * time.Second / time.Duration(opts.Rate)
		for w := range opts.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				next := time.Now().Add(time.Duration(w) * interval / time.Duration(opts.Workers))
				for i := w; ; i += opts.Workers {
					if d := time.Until(next); d > 0 {
						select {
						case <-until:
							return
						case <-time.After(d):
						}
					}
					select {
					case <-until:
						return
					default:
					}
					_, err := v.Lookup(ctx, Code, myNumbers[i%len(myNumbers)])
					took := time.Since(next)
					mu.Lock()
					if err != nil {
						errs++
					} else {
						lat = append(lat, took)
					}
					mu.Unlock()
					next = next.Add(interval)
				}
			}()
		}
		<-until
		wg.Wait()
		return summarise(slices.Clone(lat), errs)
	}
	// The machine's other load changes over minutes: measure without an
	// import both before and after the import, and compare with both
	// together.
	var idleLat []time.Duration
	idleErrs := 0
	idle := func() {
		done := make(chan struct{})
		time.AfterFunc(opts.Baseline/2, func() { close(done) })
		l := measure(done)
		mu.Lock()
		idleLat = append(idleLat, lat...)
		mu.Unlock()
		idleErrs += l.Errors
	}
	idle()

	during := make(chan struct{})
	var imp ImportFigures
	var impErr error
	go func() {
		defer close(during)
		imp, impErr = runImport(ctx, v, ledger, records.ModeFull, "full import over the region being looked up", int64(rows), opts.KeepPriority, nil)
	}()
	rep.DuringImport = measure(during)
	rep.Import = imp
	if impErr != nil {
		return rep, impErr
	}
	idle()
	rep.Idle = summarise(idleLat, idleErrs)
	return rep, nil
}

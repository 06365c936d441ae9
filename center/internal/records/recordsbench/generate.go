// Package recordsbench measures the records component at city scale: it
// generates a synthetic municipal ledger of any size, imports it through
// ledgercsv into a records file on disk, and reports time, rate, peak
// memory and stored size (City); and it measures lookup latency with and
// without a large import running beside it (Lookups). center/cmd/
// recordsbench is its command; docs/BENCHMARKS.md has the figures.
//
// The generated persons are synthetic: names from the 試験 family of the
// demo residents with numbered given names, My Numbers from a counter
// completed with their check digit, passport numbers of no issuing
// state's series. Nothing in them belongs to anyone.
package recordsbench

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
)

// products the generator draws from, with the ledger's wording (the codes
// are ledgercsv's demo products).
var products = []struct{ code, maker, kind string }{
	{"comirnaty", "ファイザー", "mRNAワクチン"},
	{"spikevax", "モデルナ", "mRNAワクチン"},
	{"comirnaty-bivalent-ba45", "ファイザー", "mRNAワクチン(2価:起源株/オミクロン株BA.4-5)"},
	{"spikevax-bivalent-ba45", "モデルナ", "mRNAワクチン(2価:起源株/オミクロン株BA.4-5)"},
	{"comirnaty-xbb", "ファイザー", "mRNAワクチン(1価:オミクロン株XBB.1.5)"},
	{"nuvaxovid", "武田薬品工業(ノババックス)", "組換えタンパクワクチン"},
}

var (
	givenKanji = []string{"花子", "太郎", "一郎", "次郎", "美咲", "翔太", "陽菜", "大輔", "さくら", "健一"}
	givenKana  = []string{"ハナコ", "タロウ", "イチロウ", "ジロウ", "ミサキ", "ショウタ", "ヒナ", "ダイスケ", "サクラ", "ケンイチ"}
	givenRoman = []string{"HANAKO", "TARO", "ICHIRO", "JIRO", "MISAKI", "SHOTA", "HINA", "DAISUKE", "SAKURA", "KENICHI"}
	// doseWeights: how many persons have 1..7 doses, per 100; about 3.0
	// on average, as in Japan's ledgers (most had 2-3, a few 7).
	doseWeights = []int{8, 30, 30, 12, 10, 6, 4}
)

// Person returns synthetic person number i of municipality code: valid,
// deterministic for (seed, i).
func Person(code string, i int, seed uint64) records.Entry {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	mn, err := mynumber.Complete(fmt.Sprintf("8%010d", i))
	if err != nil {
		panic(err) // 11 digits always complete
	}
	g := rng.IntN(len(givenKanji))
	birth := 1925 + rng.IntN(95)
	r := records.Record{
		Municipality:   code,
		ResidentNumber: fmt.Sprintf("%010d", i+1),
		TicketNumber:   fmt.Sprintf("%s%07d", code[:5], i%10_000_000),
		Name:           "試験　" + givenKanji[g],
		NameKana:       "シケン　" + givenKana[g],
		RomanFamily:    "SHIKEN",
		RomanGiven:     givenRoman[g],
		BirthDate:      fmt.Sprintf("%04d-%02d-%02d", birth, 1+rng.IntN(12), 1+rng.IntN(28)),
		Sex:            []string{"1", "2"}[rng.IntN(2)],
	}
	if rng.IntN(10) == 0 {
		r.Nationality = "JPN"
		r.PassportNumber = fmt.Sprintf("TZ%07d", rng.IntN(10_000_000))
	}
	n, w := 1, rng.IntN(100)
	for ; n <= len(doseWeights) && w >= doseWeights[n-1]; n++ {
		w -= doseWeights[n-1]
	}
	// Doses from mid-2021, a few months apart.
	day := 120 + rng.IntN(60) // days after 2021-02-17
	for d := 1; d <= n; d++ {
		p := products[min(rng.IntN(2)+max(d-2, 0), len(products)-1)]
		r.Doses = append(r.Doses, records.Dose{
			Number: d, Date: dayString(day), Product: p.code, Manufacturer: p.maker,
			Lot: fmt.Sprintf("%c%c%04d", 'A'+rng.IntN(26), 'A'+rng.IntN(26), rng.IntN(10000)), VaccineType: p.kind,
		})
		day += 21 + rng.IntN(180)
	}
	return records.Entry{MyNumber: mn, Record: r}
}

// dayString is 2021-02-17 plus days.
func dayString(days int) string {
	y, m, d := 2021, 2, 17+days
	for {
		dim := []int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m-1]
		if m == 2 && y%4 == 0 {
			dim = 29
		}
		if d <= dim {
			break
		}
		d -= dim
		if m++; m > 12 {
			m, y = 1, y+1
		}
	}
	return fmt.Sprintf("%04d-%02d-%02d", y, m, d)
}

// Generate writes a full ledger of persons synthetic persons (numbered from
// first) for municipality code, rows of a person together, and returns the
// number of rows.
func Generate(w io.Writer, code string, first, persons int, seed uint64) (int, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	lw, err := ledgercsv.NewWriter(bw, records.ModeFull)
	if err != nil {
		return 0, err
	}
	rows := 0
	for i := first; i < first+persons; i++ {
		e := Person(code, i, seed)
		if err := lw.Set(e); err != nil {
			return rows, err
		}
		rows += len(e.Record.Doses)
	}
	if err := lw.Flush(); err != nil {
		return rows, err
	}
	return rows, bw.Flush()
}

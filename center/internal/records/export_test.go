package records

import "time"

// Internals the external tests (package records_test, which may import
// boltrecords) reach for.

func RecordKeyOf(r *Region, myNumber string) []byte { return r.keys.recordKey(myNumber) }

func RegionIDOf(r *Region) []byte { return r.id }

func OpenValue(r *Region, recordKey, value []byte) (Record, error) {
	return r.keys.openRecord(recordKey, value)
}

// ForgeRegion is a handle with from's keys and identity but another
// municipality's code: what an attacker who swapped key entries would get.
func ForgeRegion(v *Vault, from *Region, code string) *Region {
	k := *from.keys
	k.code = code
	return &Region{v: v, keys: &k, id: from.id}
}

func UnwrapKeyEntry(master *MasterKey, code string, entry []byte) error {
	_, err := unwrapKeyEntry(master, code, entry)
	return err
}

func CheckOperator(op string) error { return checkOperator(op) }

func SetClock(v *Vault, now func() time.Time) { v.now = now }

func EncodeRecord(r *Record) []byte { return appendRecord(nil, r) }

func DecodeRecord(b []byte, code string) (Record, error) { return decodeRecord(b, code) }

func DateFromDays(d int) string { return dateFromDays(d) }

func DaysSince1900(s string) int { return daysSince1900(s) }

const ValueFormat = formatV1

func IsDate(s string) bool { return isDate(s) }

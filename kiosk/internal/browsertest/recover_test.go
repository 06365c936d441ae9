package browsertest

import (
	"slices"
	"testing"
)

// TestRecoverWrongMunicipality: no record in the municipality chosen
// brings the resident back to the municipality choice, saying so, with the
// card read once: no second card, no second PIN.
func TestRecoverWrongMunicipality(t *testing.T) {
	r := newRig(t, "recover-muni", rigOptions{})
	r.open("/")
	r.toMunicipality("hanako")
	r.chooseMunicipality("011002") // Sapporo: hanako was registered in Asahikawa
	r.waitFor("the no-record notice", `document.querySelector('[data-id="notice"][data-code="no_record"]') !== null`)
	r.screen("municipality", "no-record-ja", true)
	r.contains("municipality", "札幌市：", "接種の記録が見つかりません", "接種を受けたときに住民登録をしていた市区町村を選んでください", "北海道")
	var role string
	r.eval(`document.querySelector('[data-id="notice"]').getAttribute('role')`, &role)
	if role != "alert" {
		t.Errorf("the notice has role %q, want alert", role)
	}
	r.waitQueued("error")
	r.tap("lang-en")
	r.waitFor("English", `document.documentElement.lang === 'en'`)
	r.screen("municipality", "no-record-en", false)
	r.contains("municipality", "Sapporo City: ", "No vaccination record found", "Choose the municipality where you were registered")
	r.tap("lang-ja")
	r.waitFor("Japanese", `document.documentElement.lang === 'ja'`)
	r.chooseMunicipality("012041")
	r.waitState("kind")
	if got := r.center.Checks(); !slices.Equal(got, []string{"011002", "012041"}) {
		t.Errorf("checks %v, want Sapporo then Asahikawa", got)
	}
	if n := r.lastCard().TriesLeft(); n != 3 {
		t.Errorf("card has %d tries left: the PIN was asked again", n)
	}
	r.tap("cancel")
	r.checkNoPersonalData(personal{resident(t, "hanako").Name}, false)
}

// TestRecoverNoPassport: a resident without passport data sees the
// overseas kind greyed with the reason before choosing, and gets the
// domestic certificate at one touch.
func TestRecoverNoPassport(t *testing.T) {
	r := newRig(t, "recover-passport", rigOptions{})
	r.open("/")
	r.toMunicipality("takasaki")
	r.chooseMunicipality("012041")
	r.waitState("kind")
	r.screen("kind", "kind-no-passport-ja", true)
	r.contains("kind", "海外用", "選べません：旅券の情報が登録されていません", "日本国内用")
	r.tap("kind-overseas")
	r.waitFor("the reason", `document.querySelector('#local-notice [data-code="passport_required"]') !== null`)
	r.shot("kind-no-passport-touched-ja")
	r.contains("kind", "海外用は市区町村の窓口でお申し込みください")
	if st := r.kiosk.Snapshot().State; st != "kind" {
		t.Fatalf("touching the greyed kind moved the kiosk to %s", st)
	}
	r.tap("lang-en")
	r.waitFor("English", `document.documentElement.lang === 'en'`)
	r.screen("kind", "kind-no-passport-en", false)
	r.contains("kind", "Not available", "No passport details on record")
	r.tap("kind-domestic") // the one touch
	r.waitState("copies")
	r.tap("cancel")
	r.waitState("idle")
}

// TestRecoverFromRefusedIssue: with a center that does not answer checks,
// the same two refusals come back from the issue request and lead to the
// same screens; the domestic offer keeps the copies chosen, so one touch
// leads to the preview.
func TestRecoverFromRefusedIssue(t *testing.T) {
	r := newRig(t, "recover-issue", rigOptions{})
	r.center.WithoutCheck()
	r.open("/")
	r.toMunicipality("takasaki")
	r.chooseMunicipality("012041")
	r.waitState("kind")
	r.tap("kind-overseas")
	r.waitState("copies")
	r.tap("copies-2")
	r.waitFor("the domestic offer", `document.querySelector('[data-id="notice"][data-code="domestic_offer"]') !== null`)
	r.screen("kind", "domestic-offer-ja", true)
	r.contains("kind", "海外用は発行できません", "日本国内用の証明書は発行できます")
	r.tap("lang-en")
	r.waitFor("English", `document.documentElement.lang === 'en'`)
	r.screen("kind", "domestic-offer-en", false)
	r.contains("kind", "The overseas certificate cannot be issued")
	r.tap("lang-ja")
	r.tap("kind-domestic")
	r.waitState("preview")
	r.contains("preview", "日本国内用", "部数2", "240円")
	r.tap("cancel-preview")
	r.waitState("idle")

	// No record, from the issue request.
	r.toMunicipality("hanako")
	r.chooseMunicipality("011002")
	r.waitState("kind")
	r.tap("kind-domestic")
	r.waitState("copies")
	r.tap("copies-1")
	r.waitFor("the no-record notice", `document.querySelector('[data-id="notice"][data-code="no_record"]') !== null`)
	r.screen("municipality", "no-record-from-issue", false)
	r.chooseMunicipality("012041")
	r.waitState("kind")
	r.tap("cancel")
	r.waitState("idle")
}

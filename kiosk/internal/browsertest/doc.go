// Package browsertest tests the resident's touch screen (assets/ui, served
// by kiosk/internal/localapi) in a real headless Chromium driven over the
// DevTools protocol (github.com/chromedp/chromedp). It has no code of its
// own: the tests start the session flow with a fake issuance center, a
// virtual card slot and the simulator's payment and printer, serve the page
// on loopback, and walk it as a resident would: the happy path in Japanese
// and in English, a wrong PIN and the last-try warning, time-out back to
// idle, the wait for the card to be taken, the take-your-certificate
// reminder, a print failure and a declined payment; every screen in both
// languages with its voice prompt (TestEveryScreenInBothLanguages); the
// municipality choice for the whole country, designated cities' wards
// included (TestMunicipalityNational, TestMunicipalityWards).
//
// On each screen they check the accessibility basics (every control has an
// accessible name in Chromium's accessibility tree, text contrast of at
// least 4.5:1 computed from the page's styles, focus order that follows the
// visual order, and axe-core's WCAG 2.2 rules with no violation) and save
// a screenshot to $KIOSKCERT_ARTIFACTS/screenshots, or out/screenshots at
// the module root. After each session they check that
// the page holds no personal data (DOM text, window globals, storage,
// cookies, caches).
//
// Chromium is /usr/bin/chromium (Debian's chromium package, installed by
// `make deps`) or $KIOSKCERT_CHROMIUM. Without it the tests fail and say so.
package browsertest

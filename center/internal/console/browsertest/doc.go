// Package browsertest tests the operations console (center/internal/console)
// in a real headless Chromium driven over the DevTools protocol
// (github.com/chromedp/chromedp), against a real center started in process
// (app.Open, its TLS console listener, its kiosk endpoint) with the demo
// municipalities and records. A kiosk enrolled through the console's form
// connects with the bundle the browser downloaded, speaking the kiosk
// protocol over mutual TLS, and issues certificates with virtual cards.
//
// It walks what the operations team does: log in with password and TOTP;
// enroll a kiosk and see it connect; find an issuance by certificate ID;
// export the settlement CSV and check its totals against the issuances
// made; switch a municipality off and see the kiosk's next request
// refused; rotate the SMART Health Card key and see the JWKS change;
// revoke a certificate ID and see it in the revocation list; watch the
// live page update. And what must be refused: a wrong password, a wrong
// TOTP code, an expired session (the center's clock is the test's), a
// viewer attempting an administrator action, and a request from another
// site. Screenshots of every page go to $KIOSKCERT_ARTIFACTS/screenshots,
// or out/screenshots at the module root.
//
// Chromium is /usr/bin/chromium (Debian's chromium, installed by `make
// deps`) or $KIOSKCERT_CHROMIUM. Without it the tests fail and say so.
package browsertest

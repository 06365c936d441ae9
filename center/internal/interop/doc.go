// Package interop proves, with other people's code, that what the center
// publishes works with the verifiers the world uses. It has no code of its
// own beyond this comment: its test issues SMART Health Cards and ICAO
// VDS-NC proofs of vaccination with the center's real key handling
// (keyring over a bbolt store), serves the issuer's JWKS and revocation
// lists with publicapi over HTTPS on loopback, and then
//
//   - runs PathCheck's @pathcheck/shc-sdk and @pathcheck/vds-sdk from the
//     npm registry (pinned in testdata/npm/package-lock.json, installed by
//     .ci/install-node-verifiers into out/node-verifiers) as Node
//     subprocesses over those codes, the SHC verifier fetching the key set
//     from the loopback server as it would from a real issuer; and
//   - checks the key set and the revocation lists against the SMART Health
//     Cards specification's rules (crlVersion on every key with a list, the
//     list's ctr equal to it and rising with every change, rid syntax).
//
// Any error a verifier reports fails the test; so does a tampered code that
// one of them accepts. The verifiers run with a preload that refuses every
// connection off the loopback, so none of them reaches its vendor's trust
// registry. Node and npm come from the machine (Debian's nodejs is
// installed when missing); the test is never skipped.
package interop

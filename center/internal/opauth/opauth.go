// Package opauth is how the operations team proves who they are: individual
// accounts (store.Operator) with a password hashed by Argon2id and a TOTP
// second factor, login throttling per account and per source address, API
// tokens bound to one operator, and the table of what each role may do.
// The operations console (center/internal/console) logs operators in with
// it; the operations API (center/internal/opsapi) authenticates its bearer
// tokens with it; admin.Service creates the accounts.
//
// # Passwords
//
// Argon2id (RFC 9106) with the second recommended parameter set: 3 passes
// over 64 MiB with 4 lanes, a 16-byte random salt and a 32-byte tag,
// encoded in the PHC string format ("$argon2id$v=19$m=65536,t=3,p=4$salt$tag")
// so the parameters travel with each hash and can be raised later without
// invalidating old hashes. One hash takes about a tenth of a second on one
// core; at most two run at once (MaxConcurrentHashes), so a flood of
// logins cannot exhaust the center's memory. A login for an unknown account
// hashes all the same, so timing does not tell which accounts exist.
//
// # Second factor
//
// TOTP (RFC 6238) with github.com/pquerna/otp: SHA-1, 6 digits, 30-second
// steps, one step of clock skew either way — what every authenticator app
// understands. A code is accepted once: the account records the last step
// used. The secret is sealed with AES-256-GCM under the center's operator
// key (keys/operators.key, mode 0600), bound to the operator ID, so the
// store never holds it in the clear.
//
// # Throttling
//
// An account is locked for LockoutPeriod after MaxFailures consecutive
// failures (kept in the store, so it survives restarts and holds across
// instances); a source address is refused for a while after
// MaxSourceFailures failures within SourceWindow (kept in memory).
package opauth

import (
	"errors"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Errors of a login. The console shows all of them to the person logging
// in as the same message, so they learn nothing about which factor failed
// or whether the account exists; the audit log keeps the distinction.
var (
	ErrBadCredentials = errors.New("opauth: wrong operator ID, password or one-time code")
	ErrLocked         = errors.New("opauth: the account is locked after repeated failed logins; wait or ask an administrator")
	ErrThrottled      = errors.New("opauth: too many failed logins from this address; wait before trying again")
	ErrDisabled       = errors.New("opauth: the account is disabled")
	ErrNoPermission   = errors.New("opauth: your role does not allow this")
)

// Action is something an operator may be allowed to do.
type Action string

// Actions, from reading to administering.
const (
	ViewAll             Action = "view_all"          // every page (kiosks, live, keys, all municipalities)
	ViewOwnMunicipality Action = "view_municipality" // one municipality's page, audit and settlement
	ManageKiosks        Action = "manage_kiosks"     // enroll, suspend, resume
	RevokeKiosks        Action = "revoke_kiosks"     // revoke for good
	SetParticipation    Action = "set_participation"
	EditMunicipalities  Action = "edit_municipalities" // add, rename
	ImportRecords       Action = "import_records"
	DeleteRecords       Action = "delete_records"
	RevokeCertificates  Action = "revoke_certificates"
	RotateKeys          Action = "rotate_keys"
	ManageOperators     Action = "manage_operators" // accounts and other operators' tokens
	OwnTokens           Action = "own_tokens"       // issue and revoke one's own API tokens
	ExportData          Action = "export_data"      // audit and settlement CSV
)

var permissions = map[store.OperatorRole][]Action{
	store.RoleViewer:   {ViewAll, OwnTokens, ExportData},
	store.RoleOperator: {ViewAll, OwnTokens, ExportData, ManageKiosks, SetParticipation, ImportRecords, RevokeCertificates},
	store.RoleAdministrator: {ViewAll, OwnTokens, ExportData, ManageKiosks, SetParticipation, ImportRecords, RevokeCertificates,
		RevokeKiosks, EditMunicipalities, DeleteRecords, RotateKeys, ManageOperators},
	store.RoleMunicipality: {ViewOwnMunicipality, ExportData},
}

// Allowed reports whether role may do a.
func Allowed(role store.OperatorRole, a Action) bool {
	for _, p := range permissions[role] {
		if p == a {
			return true
		}
	}
	return false
}

// CanView reports whether an operator may see a municipality's data.
func CanView(o *store.Operator, municipality string) bool {
	if Allowed(o.Role, ViewAll) {
		return true
	}
	return Allowed(o.Role, ViewOwnMunicipality) && o.Municipality == municipality && municipality != ""
}

package protocol

import "fmt"

// Code is a stable error code. Kiosks branch on it; people read the
// messages that go with it.
type Code string

// Error codes. docs/PROTOCOL.md lists them with their messages.
const (
	CodeBadMessage          Code = "bad_message"           // malformed or invalid frame
	CodeUnsupportedVersion  Code = "unsupported_version"   // envelope version not spoken
	CodeUnexpectedMessage   Code = "unexpected_message"    // valid message at the wrong time or direction
	CodeMessageTooLarge     Code = "message_too_large"     // frame over the size limit
	CodeKioskNotAllowed     Code = "kiosk_not_allowed"     // kiosk unknown, suspended or revoked
	CodeUnknownMunicipality Code = "unknown_municipality"  // no such municipality
	CodeNotParticipating    Code = "not_participating"     // municipality does not offer kiosk issuance
	CodeKindNotOffered      Code = "kind_not_offered"      // certificate kind not offered
	CodeTooManyCopies       Code = "too_many_copies"       // copies outside 1..MaxCopies
	CodeCardInvalid         Code = "card_invalid"          // card data failed verification
	CodeCardIssuerUnknown   Code = "card_issuer_unknown"   // card certified by an untrusted key
	CodeMyNumberInvalid     Code = "my_number_invalid"     // check digit wrong
	CodeNoRecord            Code = "no_record"             // no vaccination record in that municipality
	CodeHolderMismatch      Code = "holder_mismatch"       // card holder differs from the record
	CodeHolderSexMismatch   Code = "holder_sex_mismatch"   // name and birth date agree, sex differs
	CodeCounterOnly         Code = "counter_only"          // issued at the municipal counter only (the reason stays with the municipality)
	CodePassportRequired    Code = "passport_required"     // overseas kind without passport data on record
	CodeRequestIDReused     Code = "request_id_reused"     // same request ID with different data
	CodeUnknownRequest      Code = "unknown_request"       // outcome for a request the center does not hold
	CodePrinterPaperOut     Code = "printer_paper_out"     // outcome reason
	CodePrinterJam          Code = "printer_jam"           // outcome reason
	CodePrinterFailed       Code = "printer_failed"        // outcome reason
	CodeRateLimited         Code = "rate_limited"          // too many requests from this kiosk
	CodeBusy                Code = "busy"                  // the center is at capacity: retry after RetryAfterMs
	CodeUnavailable         Code = "unavailable"           // center shutting down or overloaded
	CodeInternal            Code = "internal_error"        // unexpected failure at the center
	CodeCancelled           Code = "cancelled"             // outcome reason: resident cancelled
	CodeTimeout             Code = "timeout"               // outcome reason: resident did not continue
	CodeIssuanceClosed      Code = "issuance_closed"       // outside service hours
	CodeRecordNotAuthorized Code = "record_not_authorized" // reserved: record access refused by the records system
)

// Text is a message shown to a resident or an operator, in both languages.
type Text struct {
	Ja string `json:"ja"`
	En string `json:"en"`
}

type codeInfo struct {
	text      Text
	retryable bool
}

// codes maps each code to what a resident at the kiosk is told and whether
// retrying the same request can succeed.
var codes = map[Code]codeInfo{
	CodeBadMessage:          {Text{"通信エラーが発生しました。係員にお知らせください。", "A communication error occurred. Please tell the store staff."}, false},
	CodeUnsupportedVersion:  {Text{"この端末は更新が必要です。係員にお知らせください。", "This kiosk needs an update. Please tell the store staff."}, false},
	CodeUnexpectedMessage:   {Text{"通信エラーが発生しました。最初からやり直してください。", "A communication error occurred. Please start again."}, false},
	CodeMessageTooLarge:     {Text{"通信エラーが発生しました。係員にお知らせください。", "A communication error occurred. Please tell the store staff."}, false},
	CodeKioskNotAllowed:     {Text{"この端末では現在証明書を発行できません。", "Certificates cannot be issued at this kiosk at the moment."}, false},
	CodeUnknownMunicipality: {Text{"選択された市区町村はありません。", "The selected municipality does not exist."}, false},
	CodeNotParticipating:    {Text{"選択された市区町村はコンビニ交付を行っていません。市区町村の窓口でお申し込みください。", "The selected municipality does not issue certificates at convenience stores. Please apply at the municipal office."}, false},
	CodeKindNotOffered:      {Text{"この種類の証明書は発行できません。", "This kind of certificate cannot be issued."}, false},
	CodeTooManyCopies:       {Text{"発行枚数が多すぎます。", "Too many copies requested."}, false},
	CodeCardInvalid:         {Text{"マイナンバーカードの情報を確認できませんでした。市区町村の窓口にお問い合わせください。", "The information on your My Number card could not be verified. Please contact your municipal office."}, false},
	CodeCardIssuerUnknown:   {Text{"マイナンバーカードの情報を確認できませんでした。市区町村の窓口にお問い合わせください。", "The information on your My Number card could not be verified. Please contact your municipal office."}, false},
	CodeMyNumberInvalid:     {Text{"マイナンバーカードの情報を確認できませんでした。市区町村の窓口にお問い合わせください。", "The information on your My Number card could not be verified. Please contact your municipal office."}, false},
	CodeNoRecord:            {Text{"選択された市区町村に接種記録がありません。接種時に住民登録のあった市区町村を選んでください。", "No vaccination record was found in the selected municipality. Please choose the municipality where you were registered when vaccinated."}, false},
	CodeHolderMismatch:      {Text{"カードの情報と接種記録が一致しません。市区町村の窓口にお問い合わせください。", "Your card does not match the vaccination record. Please contact your municipal office."}, false},
	// One neutral answer whatever the reason (a support measure, an alias,
	// a death on record…): a person behind the resident learns nothing.
	CodeCounterOnly: {Text{"この証明書は市区町村の窓口で発行します。お手数ですが、窓口でお申し込みください。料金はかかっていません。", "Please apply for this certificate at your municipal office. You have not been charged."}, false},
	// The same words as holder_mismatch: the screen does not say which item
	// differs to whoever stands behind the resident; the code tells the
	// municipality.
	CodeHolderSexMismatch:   {Text{"カードの情報と接種記録が一致しません。市区町村の窓口にお問い合わせください。", "Your card does not match the vaccination record. Please contact your municipal office."}, false},
	CodePassportRequired:    {Text{"海外用の証明書には旅券情報の登録が必要です。市区町村の窓口でお申し込みください。", "An overseas certificate needs your passport details on record. Please apply at the municipal office."}, false},
	CodeRequestIDReused:     {Text{"通信エラーが発生しました。最初からやり直してください。", "A communication error occurred. Please start again."}, false},
	CodeUnknownRequest:      {Text{"通信エラーが発生しました。最初からやり直してください。", "A communication error occurred. Please start again."}, false},
	CodePrinterPaperOut:     {Text{"用紙がありません。料金はかかりません。係員にお知らせください。", "The printer is out of paper. You have not been charged. Please tell the store staff."}, true},
	CodePrinterJam:          {Text{"紙づまりが発生しました。料金はかかりません。係員にお知らせください。", "The paper jammed. You have not been charged. Please tell the store staff."}, true},
	CodePrinterFailed:       {Text{"印刷できませんでした。料金はかかりません。", "Printing failed. You have not been charged."}, true},
	CodeRateLimited:         {Text{"混み合っています。しばらくしてからお試しください。", "The service is busy. Please try again shortly."}, true},
	CodeUnavailable:         {Text{"ただいま発行サービスを利用できません。しばらくしてからお試しください。", "The issuance service is unavailable. Please try again shortly."}, true},
	CodeBusy:                {Text{"ただいま混み合っています。このままお待ちください。", "The service is busy. Please wait a moment; the kiosk will try again."}, true},
	CodeInternal:            {Text{"システムエラーが発生しました。しばらくしてからお試しください。", "A system error occurred. Please try again shortly."}, true},
	CodeCancelled:           {Text{"取り消しました。", "Cancelled."}, false},
	CodeTimeout:             {Text{"一定時間操作がなかったため終了しました。", "The session ended because there was no input for a while."}, false},
	CodeIssuanceClosed:      {Text{"ただいまの時間は発行できません（6:30〜23:00）。", "Certificates cannot be issued at this time (service hours 6:30–23:00)."}, false},
	CodeRecordNotAuthorized: {Text{"接種記録を確認できませんでした。市区町村の窓口にお問い合わせください。", "The vaccination record could not be checked. Please contact your municipal office."}, false},
}

// Known reports whether c is a defined code.
func (c Code) Known() bool { _, ok := codes[c]; return ok }

// Text returns the resident-facing message for c.
func (c Code) Text() Text {
	if info, ok := codes[c]; ok {
		return info.text
	}
	return codes[CodeInternal].text
}

// Retryable reports whether the same request may succeed later.
func (c Code) Retryable() bool { return codes[c].retryable }

// Codes lists every defined code, for documentation and tests.
func Codes() []Code {
	out := make([]Code, 0, len(codes))
	for c := range codes {
		out = append(out, c)
	}
	return out
}

// Error is the error message. It is also a Go error, so a kiosk can return
// what the center said and callers can test the code with errors.As.
type Error struct {
	RequestID string `json:"requestId,omitempty"`
	Code      Code   `json:"code"`
	Message   Text   `json:"message"`
	Retryable bool   `json:"retryable"`
	// Detail says what went wrong for operators' logs. It never carries
	// personal data.
	Detail string `json:"detail,omitempty"`
	// RetryAfterMs, with code busy, is how long the kiosk should wait
	// before sending the request again (it adds jitter).
	RetryAfterMs int `json:"retryAfterMs,omitempty"`
}

// NewError builds the Error for code, with its standard messages.
func NewError(requestID string, code Code, detail string) *Error {
	return &Error{RequestID: requestID, Code: code, Message: code.Text(), Retryable: code.Retryable(), Detail: detail}
}

// Type implements Message.
func (*Error) Type() string { return TypeError }

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("protocol: %s: %s", e.Code, e.Detail)
	}
	return fmt.Sprintf("protocol: %s", e.Code)
}

// Is matches another *Error with the same code, so errors.Is(err,
// protocol.NewError("", protocol.CodeNoRecord, "")) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

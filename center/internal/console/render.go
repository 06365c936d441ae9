package console

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

var jst = time.FixedZone("JST", 9*3600)

var funcs = template.FuncMap{
	"t": tr,
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.In(jst).Format("2006-01-02 15:04:05")
	},
	"yen":  yen,
	"num":  num,
	"list": func(s ...string) []string { return s },
	// counterTable is the data of the "counter_only" table.
	"counterTable": func(lang, id string, rows []counterReason) map[string]any {
		return map[string]any{"Lang": lang, "ID": id, "Rows": rows}
	},
	"can":   func(role store.OperatorRole, a string) bool { return opauth.Allowed(role, opauth.Action(a)) },
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"ms":    func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) },
	"query": func(v map[string]string) template.URL { return template.URL(encodeQuery(v)) },
}

// yen formats an amount of yen.
func yen(n any) string { return "¥" + num(n) }

// num formats an integer with thousands separators.
func num(n any) string {
	switch v := n.(type) {
	case int:
		return groupDigits(strconv.Itoa(v))
	case int64:
		return groupDigits(strconv.FormatInt(v, 10))
	case float64:
		return groupDigits(strconv.FormatInt(int64(math.Round(v)), 10))
	}
	return fmt.Sprint(n)
}

func groupDigits(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

var pages = []string{"login", "message", "confirm", "kiosks", "kiosk", "municipalities", "live", "audit", "keys",
	"revocations", "settlement", "report", "operators"}

func (c *Console) parseTemplates() error {
	c.tmpl = map[string]*template.Template{}
	for _, p := range pages {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return fmt.Errorf("console: template %s: %w", p, err)
		}
		c.tmpl[p] = t
	}
	return nil
}

// view is what every template gets.
type view struct {
	Lang  string
	Op    store.Operator
	CSRF  string
	Page  string
	Path  string
	Data  any
	Title string
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, q *request, page string, data any) {
	v := view{Lang: q.lang, Op: q.op, Page: page, Path: r.URL.RequestURI(), Data: data}
	if q.sess != nil {
		v.CSRF = q.sess.csrf
	}
	var buf bytes.Buffer
	if err := c.tmpl[page].ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.cfg.Log.Error("console: render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// confirm shows a confirmation page that re-posts the form with
// confirm=yes: changes that matter take two deliberate clicks, with or
// without JavaScript.
func (c *Console) confirm(w http.ResponseWriter, r *http.Request, q *request, question string, fields map[string]string) {
	c.render(w, r, q, "confirm", map[string]any{"Question": question, "Action": r.URL.Path, "Fields": fields})
}

func confirmed(r *http.Request) bool { return r.PostFormValue("confirm") == "yes" }

func encodeQuery(v map[string]string) string {
	var parts []string
	for k, s := range v {
		if s != "" {
			parts = append(parts, k+"="+template.URLQueryEscaper(s))
		}
	}
	return strings.Join(parts, "&")
}

// messages holds every text of the console in Japanese and English.
var messages = map[string][2]string{
	"title":               {"証明書交付センター 運用コンソール", "Issuance center operations console"},
	"kiosks":              {"キオスク端末", "Kiosks"},
	"municipalities":      {"市区町村", "Municipalities"},
	"live":                {"稼働状況", "Live"},
	"audit":               {"監査ログ", "Audit"},
	"keys":                {"署名鍵", "Keys"},
	"revocations":         {"失効", "Revocations"},
	"settlement":          {"精算", "Settlement"},
	"operators":           {"運用者", "Operators"},
	"logout":              {"ログアウト", "Log out"},
	"login":               {"ログイン", "Log in"},
	"operator_id":         {"運用者ID", "Operator ID"},
	"password":            {"パスワード", "Password"},
	"totp_code":           {"ワンタイムコード（6桁）", "One-time code (6 digits)"},
	"login_failed":        {"運用者ID、パスワードまたはワンタイムコードが違います。", "Wrong operator ID, password or one-time code."},
	"login_locked":        {"ログインの失敗が続いたため、このアカウントは一時的にロックされています。しばらく待つか管理者に連絡してください。", "This account is locked after repeated failed logins. Wait, or ask an administrator."},
	"login_throttled":     {"この端末からのログイン失敗が多すぎます。しばらく待ってから再度お試しください。", "Too many failed logins from this address. Wait before trying again."},
	"login_expired":       {"一定時間操作がなかったため、セッションが終了しました。再度ログインしてください。", "Your session expired. Log in again."},
	"login_ended":         {"セッションが終了しました。再度ログインしてください。", "Your session has ended. Log in again."},
	"login_logout":        {"ログアウトしました。", "You are logged out."},
	"login_stale":         {"ログイン画面の有効期限が切れました。もう一度入力してください。", "The login form expired. Please enter your details again."},
	"forbidden":           {"権限がありません", "Not allowed"},
	"forbidden_text":      {"この操作はあなたの役割では行えません。", "Your role does not allow this."},
	"internal_error":      {"内部エラーが発生しました。詳細はセンターのログにあります。", "Internal error; the center's log has the cause."},
	"transition_error":    {"この状態変更はできません（失効した端末は失効のままです）。", "This status change is not allowed (a revoked kiosk stays revoked)."},
	"error":               {"エラー", "Error"},
	"confirm":             {"確認", "Confirm"},
	"cancel":              {"取消", "Cancel"},
	"search":              {"検索", "Search"},
	"id":                  {"ID", "ID"},
	"chain":               {"チェーン", "Chain"},
	"prefecture":          {"都道府県", "Prefecture"},
	"region":              {"地域", "Region"},
	"status":              {"状態", "Status"},
	"any":                 {"すべて", "Any"},
	"active":              {"稼働", "active"},
	"suspended":           {"停止中", "suspended"},
	"revoked":             {"失効", "revoked"},
	"needs_visit":         {"要訪問", "Needs a visit"},
	"store":               {"店舗", "Store"},
	"last_seen":           {"最終接続", "Last seen"},
	"agent_version":       {"エージェント版", "Agent version"},
	"kiosk_certificate":   {"端末証明書", "Kiosk certificate"},
	"serial":              {"シリアル", "serial"},
	"valid_until":         {"有効期限", "valid until"},
	"as_enrolled":         {"登録時", "as enrolled"},
	"connected":           {"接続中", "Connected"},
	"not_connected":       {"未接続", "Not connected"},
	"issued_today":        {"本日の交付", "Issued today"},
	"error_rate":          {"エラー率", "Error rate"},
	"health":              {"機器", "Devices"},
	"reader":              {"カードリーダー", "Card reader"},
	"printer":             {"プリンター", "Printer"},
	"last_error":          {"最後のエラー", "Last error"},
	"enroll":              {"端末を登録", "Enroll a kiosk"},
	"enroll_help":         {"登録すると端末の鍵・証明書・センターCAを含むZIPがダウンロードされます。端末に設置したら、手元の写しは削除してください。", "Enrolling downloads a ZIP with the kiosk's key, certificate and the center's CA. Install it on the kiosk, then delete every other copy."},
	"store_name":          {"店舗名", "Store name"},
	"store_code":          {"店舗コード", "Store code"},
	"suspend":             {"停止", "Suspend"},
	"resume":              {"再開", "Resume"},
	"revoke":              {"失効", "Revoke"},
	"reason":              {"理由", "Reason"},
	"next_page":           {"次へ", "Next"},
	"total":               {"合計", "Total"},
	"code":                {"コード", "Code"},
	"name":                {"名称", "Name"},
	"participating":       {"コンビニ交付実施", "Offers kiosk issuance"},
	"switch_on":           {"実施する", "Switch on"},
	"switch_off":          {"停止する", "Switch off"},
	"yes":                 {"はい", "yes"},
	"no":                  {"いいえ", "no"},
	"kinds_offered":       {"交付する種類", "Kinds offered"},
	"copies_offered":      {"部数（上限）", "Copies (at most)"},
	"records":             {"記録件数", "Records"},
	"last_import":         {"最終台帳取込", "Last ledger import"},
	"imports":             {"台帳取込ジョブ", "Ledger imports"},
	"imports_note":        {"このインスタンスの取込（実行中と最近終了したもの）。再読込で更新されます。", "Imports on this instance (running, and the last that ended). Reload to update."},
	"import_job":          {"ジョブ", "Job"},
	"import_state":        {"状態", "State"},
	"import_rows":         {"読込行数", "Rows read"},
	"import_rate":         {"行/秒", "Rows/s"},
	"import_left":         {"残り時間", "Time left"},
	"import_cancel":       {"取込を中止", "Cancel import"},
	"import_cancel_q":     {"この取込を中止しますか？記録は取込前のまま残ります。", "Cancel this import? The records stay as they were."},
	"started_by":          {"開始者", "Started by"},
	"domestic":            {"日本国内用", "domestic"},
	"overseas":            {"海外用", "overseas"},
	"kiosks_connected":    {"接続中の端末", "Kiosks connected"},
	"issuances_per_min":   {"交付件数／分", "Issuances per minute"},
	"errors_by_code":      {"エラー（コード別、直近1分）", "Errors by code (last minute)"},
	"latency":             {"応答時間", "Latency"},
	"in_flight":           {"処理中", "In flight"},
	"from":                {"開始", "From"},
	"to":                  {"終了", "To"},
	"municipality":        {"市区町村", "Municipality"},
	"certificate_id":      {"証明書ID", "Certificate ID"},
	"result":              {"結果", "Result"},
	"operator":            {"運用者", "Operator"},
	"type":                {"種別", "Type"},
	"time":                {"日時", "Time"},
	"kiosk":               {"端末", "Kiosk"},
	"kind":                {"種類", "Kind"},
	"copies":              {"部数", "Copies"},
	"request":             {"要求ID", "Request ID"},
	"source":              {"接続元", "Source"},
	"object":              {"対象", "Object"},
	"export_csv":          {"CSVで出力", "Export CSV"},
	"no_personal_data":    {"監査ログには個人情報は含まれません。個人情報では検索できません。", "The audit log holds no personal data and cannot be searched by it."},
	"purpose":             {"用途", "Purpose"},
	"key_id":              {"鍵ID", "Key ID"},
	"created":             {"作成", "Created"},
	"not_after":           {"有効期限", "Not after"},
	"published":           {"公開", "Published"},
	"rotate_shc":          {"SMART Health Card 鍵を更新", "Rotate the SMART Health Card key"},
	"rotate_question":     {"新しい SMART Health Card 鍵を有効にします。現在の鍵は退役し、公開は続きます。よろしいですか。", "Make a new SMART Health Card key active? The current key retires and stays published."},
	"jwks_served":         {"公開中の JWKS", "The JWKS as served"},
	"revoke_certificate":  {"証明書を失効", "Revoke a certificate"},
	"revoke_question":     {"この証明書IDを失効させ、失効リストに載せます。取り消せません。よろしいですか。", "Revoke this certificate ID and publish it in the revocation list? This cannot be undone."},
	"revoked_at":          {"失効日時", "Revoked at"},
	"crl_served":          {"公開中の失効リスト", "Revocation list as served"},
	"key_hint":            {"空欄の場合、交付日時に有効だった鍵を使います。", "Leave empty to use the key that was active when the certificate was issued."},
	"day":                 {"日次", "Day"},
	"month":               {"月次", "Month"},
	"period":              {"期間", "Period"},
	"issuances":           {"交付件数", "Issuances"},
	"copies_total":        {"交付部数", "Copies"},
	"fee":                 {"手数料", "Fees"},
	"fee_per_copy":        {"1部あたりの手数料", "Fee per copy"},
	"by_municipality":     {"市区町村別", "By municipality"},
	"by_chain":            {"チェーン別", "By chain"},
	"monthly_report":      {"月次報告書", "Monthly report"},
	"co_by_reason":        {"窓口へご案内した件数（理由別）", "Sent to the counter, by reason"},
	"co_note":             {"端末ではどの理由でも同じ案内を表示し、理由は表示しません。理由別の件数はこの市区町村の画面にのみ表示します。", "The kiosk shows every resident the same message and never the reason; the counts by reason appear only in this municipality's view."},
	"residents":           {"件数", "Residents"},
	"co_support_measure":  {"支援措置（DV等）", "Support measure (DV and similar)"},
	"co_alias_on_record":  {"旧姓・別姓・別名の記録", "Former name or alias on record"},
	"co_travel_document":  {"旅券以外の渡航文書", "Travel document other than a passport"},
	"co_staff_review":     {"職員による確認", "Staff review"},
	"co_deceased":         {"死亡", "Deceased"},
	"co_alias_on_card":    {"カードに旧氏・通称の併記", "Former name or alias on the card"},
	"settlement_basis":    {"精算は、端末が印刷・支払完了を報告した交付（printed イベント）のみから計算します。", "Settlement counts only issuances whose kiosk reported paper printed and paid for (printed events)."},
	"role":                {"役割", "Role"},
	"add_operator":        {"運用者を追加", "Add an operator"},
	"console_login":       {"コンソール", "Console login"},
	"disabled":            {"無効", "Disabled"},
	"disable":             {"無効にする", "Disable"},
	"enable":              {"有効にする", "Enable"},
	"reset_credentials":   {"パスワードと2要素を再発行", "Reset password and second factor"},
	"created_once":        {"以下は今回だけ表示されます。本人に直接渡してください。", "Shown only now: hand it to the operator in person."},
	"totp_secret":         {"TOTP シークレット", "TOTP secret"},
	"totp_uri":            {"TOTP 登録URI", "TOTP enrolment URI"},
	"api_tokens":          {"APIトークン", "API tokens"},
	"issue_token":         {"トークンを発行", "Issue a token"},
	"label":               {"用途ラベル", "Label"},
	"expires":             {"有効期限", "Expires"},
	"token_once":          {"トークンは今回だけ表示されます。", "The token is shown only now."},
	"last_login":          {"最終ログイン", "Last login"},
	"done":                {"完了しました。", "Done."},
	"enrolled":            {"端末を登録しました。", "Kiosk enrolled."},
	"all_municipalities":  {"全市区町村", "All municipalities"},
	"language":            {"English", "日本語"},
	"visit_reader":        {"カードリーダーなし", "no card reader"},
	"visit_printer":       {"プリンター要対応", "printer needs attention"},
	"visit_offline":       {"長時間未接続", "offline for long"},
	"visit_errors":        {"エラー多発", "many errors"},
	"suspend_question":    {"この端末を停止します。接続はすぐに切断されます。よろしいですか。", "Suspend this kiosk? Its connections close at once."},
	"resume_question":     {"この端末を再開します。よろしいですか。", "Resume this kiosk?"},
	"revoke_kiosk_q":      {"この端末を失効させます。元に戻せません。よろしいですか。", "Revoke this kiosk for good? This cannot be undone."},
	"participation_on_q":  {"この市区町村のコンビニ交付を開始します。よろしいですか。", "Switch kiosk issuance on for this municipality?"},
	"participation_off_q": {"この市区町村のコンビニ交付を停止します。以後の要求は拒否されます。よろしいですか。", "Switch kiosk issuance off for this municipality? Its next requests are refused."},
	"events_today":        {"本日のイベント", "Events today"},
}

// tr returns the text for key in lang.
func tr(lang, key string) string {
	m, ok := messages[key]
	if !ok {
		return key
	}
	if lang == "en" {
		return m[1]
	}
	return m[0]
}

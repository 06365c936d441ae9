// The kiosk's touch screen (see README.md beside this file).
//
// It draws the agent's session snapshots, which arrive as server-sent events
// from /api/v1/screen/events, and sends what the resident does to
// /api/v1/screen/input. The agent decides everything; this page only shows.
//
// Privacy: the page keeps nothing. No storage, no cookies, no caches; the
// only session data it holds is the snapshot on screen, replaced by the next
// one and dropped when the session returns to idle or the connection drops.
// The PIN is held as digits until OK is pressed, sent to the agent (which
// hands it to the card) and cleared. This is a module: nothing here is a
// global of the window.

const EVENTS = '/api/v1/screen/events';
const INPUT = '/api/v1/screen/input';
const LANGUAGES = '/ui/i18n/languages.json';
const PREFECTURES = '/ui/prefectures.json';
const WARDS = '/ui/wards.json';
const PAGE = 24;         // municipalities one index tab shows at most (4 rows of 6)
const WARN_MS = 15000; // speak and show the time-out warning this long before
const BUSY_MS = 5000;  // give up waiting for the agent's answer to an input

let langs = [];          // [{code, name, voice, file}], the default first
const dicts = new Map(); // language code → messages
let lang = '';           // language shown
let snap = null;         // the snapshot on screen (personal data only in preview)
let shown = '';          // state and seq on screen, to tell a new screen from a redraw
let deadlineAt = 0;      // performance.now() when this screen times out; 0: none
let warned = false;      // the time-out warning was given on this screen
let busy = false;        // an input is on its way; controls are off until the answer
let busyTimer = 0;
const pin = [];          // PIN digits typed so far
let pinSent = false;     // the PIN was sent; wait for the card's answer
let lastHeading = '';
let prefectures = [];    // [{code, ja, kana, en, region}] (prefectures.json)
// The designated cities' wards, by city code: [{code, city, ja, kana, en,
// until}] (wards.json), the wards of today first, each group in kana order.
const wardsByCity = new Map();
// The municipality screen's own navigation: the prefecture and index tab
// shown. It is the page's alone (the agent sees only the final choice) and
// is reset on every new municipality screen.
const pick = { seq: -1, pref: '', tab: '', notice: '' };
let index = null;        // the municipalities of the snapshot on show, grouped (see indexOf)
let chosenTab = '';      // the index tab the last municipality was chosen on (not personal data)

const $ = (id) => document.getElementById(id);
const audio = $('voice');
let voiceQueue = [];
let voiceCount = 0;

// ---- Messages --------------------------------------------------------------

function msg(key) {
  const d = dicts.get(lang);
  if (d && key in d) return d[key];
  const def = dicts.get(langs[0]?.code);
  if (def && key in def) return def[key];
  return key;
}

function has(key) {
  return dicts.get(lang)?.[key] !== undefined;
}

// Message syntax: [漢字|かな] is a word with furigana, {name} a parameter.
const TOKEN = /\[([^|\]]+)\|([^\]]+)\]|\{(\w+)\}/g;

// nodes renders a message as DOM nodes (never as HTML: no markup is parsed).
function nodes(key, params = {}) {
  const src = msg(key);
  const out = [];
  let last = 0;
  for (const m of src.matchAll(TOKEN)) {
    if (m.index > last) out.push(document.createTextNode(src.slice(last, m.index)));
    if (m[1] !== undefined) {
      out.push(el('ruby', {}, m[1], el('rp', {}, '('), el('rt', {}, m[2]), el('rp', {}, ')')));
    } else {
      const v = params[m[3]];
      if (Array.isArray(v)) out.push(...v);
      else if (v instanceof Node) out.push(v);
      else out.push(document.createTextNode(v === undefined ? '' : String(v)));
    }
    last = m.index + m[0].length;
  }
  if (last < src.length) out.push(document.createTextNode(src.slice(last)));
  return out;
}

// text renders a message as plain text (furigana dropped), for labels.
function text(key, params = {}) {
  return msg(key).replace(TOKEN, (_, base, _ruby, name) =>
    base !== undefined ? base : (params[name] === undefined ? '' : String(params[name])));
}

function yen(n) {
  return nodes('app.yen', { fee: Number(n || 0).toLocaleString(lang) });
}

function yenText(n) {
  return text('app.yen', { fee: Number(n || 0).toLocaleString(lang) });
}

// ---- DOM helpers -------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'onclick') e.addEventListener('click', v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function heading(key, params) {
  return el('h2', { id: 'heading', tabindex: '-1', 'data-id': 'heading' }, nodes(key, params));
}

function para(key, cls = 'lead', params) {
  return el('p', { class: cls }, nodes(key, params));
}

function button(id, label, onclick, cls = 'btn') {
  return el('button', { type: 'button', class: cls, 'data-id': id, onclick }, label);
}

function progress() {
  return el('div', { class: 'progress', role: 'progressbar', 'aria-label': text('app.busy') },
    el('div', { class: 'bar' }));
}

// ---- Talking to the agent ----------------------------------------------------

// send delivers one input for the screen on show. The agent refuses an
// input meant for another screen (the page may lag behind it), and the page
// sends nothing more until the next snapshot, so a double tap cannot carry
// over into the next screen.
async function send(input) {
  if (busy || !snap) return;
  setBusy(true);
  const body = JSON.stringify({ ...input, state: snap.state });
  try {
    const r = await fetch(INPUT, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body,
      cache: 'no-store',
      credentials: 'same-origin',
      referrerPolicy: 'no-referrer',
    });
    if (!r.ok) setBusy(false);
  } catch {
    setBusy(false);
  }
}

function setBusy(on) {
  busy = on;
  clearTimeout(busyTimer);
  if (on) busyTimer = setTimeout(() => setBusy(false), BUSY_MS);
  document.body.classList.toggle('busy', on);
  $('screen').setAttribute('aria-busy', on ? 'true' : 'false');
  for (const b of document.querySelectorAll('#screen button, .bottom button')) b.disabled = on || b.dataset.off === '1';
}

function connect() {
  const es = new EventSource(EVENTS);
  es.addEventListener('snapshot', (e) => {
    let s;
    try { s = JSON.parse(e.data); } catch { return; }
    onSnapshot(s);
  });
  es.addEventListener('error', () => {
    // The agent went away (or is restarting). Drop what is shown at once:
    // the current snapshot comes again on reconnection.
    onSnapshot(null);
  });
}

// ---- Snapshots ---------------------------------------------------------------

function onSnapshot(s) {
  const prev = snap;
  snap = s;
  if (!s || s.state === 'idle') {
    // Back to the start: the next resident starts in the default language,
    // and nothing typed or shown for the last one is kept.
    if (!prev || prev.state !== 'idle') lang = langs[0]?.code || lang;
    clearPIN();
    index = null;
    chosenTab = '';
  }
  if (prev && s && prev.seq !== s.seq) setBusy(false);
  if (s && s.state === 'pin' && (!prev || prev.seq !== s.seq)) { clearPIN(); pinSent = false; }
  deadlineAt = s && s.remainingMs > 0 ? performance.now() + s.remainingMs : 0;
  if (!prev || !s || prev.state !== s.state || prev.deadline !== s.deadline) warned = false;
  // Speak first: a time-out warning the redraw gives follows the prompt.
  speakFor(prev, s);
  render();
}

// level is how insistent a reminder is: 0 first time, 1 repeated, 2 urgent.
function level(s) {
  if (!s) return 0;
  const reminding = s.state === 'remove-card' || s.state === 'take-certificate' || (s.state === 'error' && s.takeCard);
  if (!reminding || !s.reminder) return 0;
  return s.reminder >= 3 ? 2 : 1;
}

// ---- Rendering ---------------------------------------------------------------

function render() {
  const t0 = performance.now();
  const s = snap;
  const state = s ? s.state : 'offline';
  const key = s ? `${s.state}/${s.seq}/${lang}` : 'offline';
  const focusedId = document.activeElement?.dataset?.id;
  document.documentElement.lang = lang;
  document.title = text('app.title');
  $('title').replaceChildren(...nodes('app.title'));
  document.body.dataset.state = state;
  document.body.dataset.level = String(level(s));
  renderTools();

  const build = screens[state] || screens.offline;
  $('screen').replaceChildren(...build(s || {}).filter((n) => n !== null && n !== undefined && n !== false));
  renderNav(s);
  tick();
  setBusy(busy);

  // Move focus to the new screen's heading (screen readers then read it),
  // or keep it on the control that had it when the same screen is redrawn.
  const newScreen = !shown || shown.split('/')[0] !== state;
  shown = key;
  const again = focusedId && document.querySelector(`[data-id="${CSS.escape(focusedId)}"]`);
  if (!newScreen && again) again.focus();
  else if (newScreen) $('heading')?.focus({ preventScroll: true });
  // A reminder that escalates changes the heading without moving focus:
  // announce it.
  const h = $('heading')?.textContent || '';
  if (!newScreen && h !== lastHeading) $('announce').textContent = h;
  lastHeading = h;
  // How long this draw took (the browser tests read it; no session data).
  document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
}

function renderTools() {
  $('repeat').replaceChildren(...nodes('app.repeat'));
  $('voice-on').replaceChildren(...nodes('app.voiceOn'));
  const buttons = langs.filter((l) => l.code !== lang).map((l) =>
    el('button', {
      type: 'button', class: 'tool', lang: l.code, 'data-id': `lang-${l.code}`,
      'aria-label': `${l.name} (${textIn(l.code, 'app.langSwitch', { name: l.name })})`,
      onclick: () => switchLang(l.code),
    }, l.name));
  $('langs').replaceChildren(...buttons);
}

function textIn(code, key, params) {
  const saved = lang;
  lang = code;
  try { return text(key, params); } finally { lang = saved; }
}

function nodesIn(code, key, params) {
  const saved = lang;
  lang = code;
  try { return nodes(key, params); } finally { lang = saved; }
}

function switchLang(code) {
  lang = code;
  render();
  $(`heading`)?.focus({ preventScroll: true });
  speakFor(null, snap);
}

function renderNav(s) {
  const start = [], end = [];
  const st = s?.state;
  if (st === 'kind' || st === 'copies') start.push(button('back', nodes('app.back'), () => send({ type: 'back' })));
  if (st === 'pin' || st === 'municipality' || st === 'kind' || st === 'copies') {
    end.push(button('cancel', nodes('app.cancel'), () => { clearPIN(); send({ type: 'cancel' }); }));
  }
  if (st === 'preview') {
    start.push(button('cancel-preview', nodes('preview.cancel'), () => send({ type: 'cancel' })));
    end.push(button('confirm', nodes('preview.confirm', { fee: yen(s.feeYen) }), () => send({ type: 'confirm' }), 'btn go'));
  }
  $('nav-start').replaceChildren(...start);
  $('nav-end').replaceChildren(...end);
}

// tick updates the countdown (every 250 ms, and on each redraw).
function tick() {
  const c = $('countdown');
  if (!deadlineAt || !snap) { c.hidden = true; c.classList.remove('warn'); return; }
  const left = Math.max(0, deadlineAt - performance.now());
  const secs = Math.ceil(left / 1000);
  const time = `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}`;
  const warn = left <= WARN_MS;
  c.hidden = false;
  c.classList.toggle('warn', warn);
  c.setAttribute('aria-label', text('app.countdownLabel'));
  const label = warn ? [...nodes('app.countdown', { time }), ' — ', ...nodes('app.countdownWarn')] : nodes('app.countdown', { time });
  c.replaceChildren(...label);
  if (warn && !warned && left > 0) {
    warned = true;
    speakAfter('timeout-soon');
  }
}

// ---- Screens -----------------------------------------------------------------

const screens = {
  // Nobody has chosen a language while the agent is away: the notice is
  // shown in every language the kiosk offers.
  offline: () => [heading('app.offline'),
    ...langs.filter((l) => l.code !== lang).map((l) => el('p', { class: 'lead', lang: l.code, 'data-id': `offline-${l.code}` }, nodesIn(l.code, 'app.offline'))),
    progress()],

  idle: () => [
    heading('idle.heading'),
    para('idle.what'),
    el('div', { class: 'reader', 'aria-hidden': 'true' }, el('div', { class: 'slot' }, el('div', { class: 'card' }))),
    para('idle.need', 'note calm'),
    // Written in the other language, for those who cannot read this one.
    el('p', { class: 'hint', lang: langs.find((l) => l.code !== lang)?.code }, nodes('idle.lang')),
  ],

  'card-check': () => [heading('card-check.heading'), progress(), para('card-check.hint', 'note warn')],

  pin: pinScreen,

  reading: () => [heading('reading.heading'), progress(), para('reading.hint', 'note warn')],

  'remove-card': (s) => [
    heading(s.reminder ? 'remove-card.again' : 'remove-card.heading'),
    el('p', { class: 'big-callout' }, nodes('remove-card.callout')),
    para('remove-card.hint', 'hint'),
  ],

  municipality: municipalityScreen,

  checking: () => [heading('checking.heading'), progress(), para('checking.hint', 'hint')],

  kind: (s) => [
    heading('kind.heading'),
    s.notice ? notice(s.notice) : null,
    el('div', { class: 'choices wide' }, (s.kinds || []).map((k) => {
      const refused = s.refusedKinds?.[k];
      const label = [el('span', {}, nodes(`kind.${k}`)), el('span', { class: 'sub' }, nodes(`kind.${k}.hint`))];
      if (refused) {
        // Shown, not hidden, with the reason: the resident learns why.
        label.push(el('span', { class: 'why' }, nodes('kind.refused'), '：', errorTitle(refused)));
        return el('button', { type: 'button', class: 'choice off', 'data-id': `kind-${k}`, 'aria-disabled': 'true',
          onclick: () => showNotice(refused) }, label);
      }
      return button(`kind-${k}`, label, () => send({ type: 'kind', kind: k }), 'choice');
    })),
    el('div', { id: 'local-notice', role: 'status', 'aria-live': 'polite' }),
  ],

  copies: (s) => {
    const max = Math.max(1, s.maxCopies || 1);
    const opts = [];
    for (let n = 1; n <= max; n++) {
      opts.push(button(`copies-${n}`, [
        el('span', {}, nodes('copies.option', { n })),
        el('span', { class: 'sub' }, nodes('copies.fee', { n, fee: yen(n * (s.feePerCopyYen || 0)) })),
      ], () => send({ type: 'copies', copies: n }), 'choice'));
    }
    return [
      heading('copies.heading'),
      para('copies.perCopy', 'lead', { fee: yen(s.feePerCopyYen) }),
      el('div', { class: 'choices copies' }, opts),
    ];
  },

  requesting: () => [heading('requesting.heading'), progress(), para('requesting.hint', 'hint')],

  preview: previewScreen,

  payment: (s) => [
    heading('payment.heading'),
    el('p', { class: 'big-callout' }, nodes('payment.amount', { fee: yen(s.feeYen) })),
    progress(),
  ],

  printing: () => [heading('printing.heading'), progress(), para('printing.hint', 'hint')],

  'print-failed': (s) => [
    heading('print-failed.heading'),
    s.error ? el('p', { class: 'lead' }, errorTitle(s.error)) : null,
    para('print-failed.noCharge', 'note calm'),
    el('div', { class: 'actions' },
      s.canRetry ? button('retry', nodes('print-failed.retry'), () => send({ type: 'retry' }), 'btn primary') : null,
      button('cancel-print', nodes('app.cancel'), () => send({ type: 'cancel' }), 'btn quiet')),
  ],

  'take-certificate': (s) => [
    heading(s.reminder ? 'take-certificate.again' : 'take-certificate.heading'),
    el('p', { class: 'big-callout' }, nodes('take-certificate.callout')),
    para('take-certificate.card', 'note warn'),
    el('div', { class: 'actions' }, button('stop', nodes('take-certificate.stop'), () => send({ type: 'stop' }), 'btn go')),
  ],

  error: (s) => {
    const code = s.error?.code || '';
    const title = has(`error.title.${code}`) ? `error.title.${code}` : 'error.heading';
    const out = [heading(title)];
    // The detail says what to do, with furigana; it never repeats the
    // title. Without one, the agent's message stands in (unless it would
    // only repeat the title).
    const detail = errorDetail(s.error, title);
    if (detail) out.push(el('p', { class: 'lead' }, detail));
    // counter_only: the municipality's counter, the same for every reason
    // (the kiosk is never told the reason).
    if (s.counter && code === 'counter_only') {
      const name = lang === 'ja' ? s.counter.ja : s.counter.en;
      out.push(el('p', { class: 'lead', 'data-id': 'counter' }, nodes('error.counter', { counter: name })));
    }
    if (s.takeCard) {
      out.push(el('p', { class: 'big-callout' }, nodes(s.reminder ? 'error.takeCardAgain' : 'error.takeCard')));
    }
    if (s.deadline) {
      out.push(el('div', { class: 'actions' }, button('ack', nodes('error.ok'), () => send({ type: 'confirm' }), 'btn primary')));
    }
    return out;
  },
};

// errorTitle is a refusal's short title (furigana included).
function errorTitle(e) {
  return has(`error.title.${e.code}`) ? nodes(`error.title.${e.code}`) : [document.createTextNode(errorText(e))];
}

// errorDetail is what to do about e, as nodes, or null.
function errorDetail(e, titleKey) {
  if (!e) return null;
  if (has(`error.detail.${e.code}`)) {
    return msg(`error.detail.${e.code}`) ? nodes(`error.detail.${e.code}`) : null;
  }
  const body = errorText(e);
  if (!body || body.replace(/[。.]$/, '') === text(titleKey)) return null;
  return [document.createTextNode(body)];
}

// notice is the box that says why the resident is back on a choice screen.
function notice(e, prefix) {
  const detail = errorDetail(e, `error.title.${e.code}`);
  return el('div', { class: 'note warn notice', role: 'alert', 'data-id': 'notice', 'data-code': e.code },
    el('p', { class: 'notice-title' }, prefix || null, errorTitle(e)),
    detail ? el('p', { class: 'notice-detail' }, detail) : null);
}

// showNotice explains, on this screen, why a greyed choice cannot be made.
function showNotice(e, prefix) {
  const box = $('local-notice');
  if (box) box.replaceChildren(notice(e, prefix));
}

// errorText is the agent's message in the language shown; a language the
// agent does not speak supplies its own text (error.message.<code>), else
// English.
function errorText(e) {
  if (typeof e[lang] === 'string' && e[lang]) return e[lang];
  if (has(`error.message.${e.code}`)) return text(`error.message.${e.code}`);
  return e.en || e.ja || '';
}

// ---- Municipality: prefecture, then kana index, then municipality ----------
//
// Three touches reach any municipality: the prefecture (all 47 on one
// screen, grouped by region), the 50-sound index tab (あ か さ …), the
// municipality. A tab never holds more than PAGE municipalities: a crowded
// row (Hokkaido's あ row has 40) is split by its first sounds (あいう, えお),
// so nothing is ever scrolled out of sight. Tokyo's 23 special wards have
// their own tab. Each designated city's wards have a tab of their own
// (札幌市の区): residents know their ward, but the city keeps the records,
// so a ward sends its city's code. Tokyo's special wards are municipalities
// and send their own.
// Municipalities that do not take part are shown greyed with the reason.

const ROWS = ['アイウエオ', 'カキクケコ', 'サシスセソ', 'タチツテト', 'ナニヌネノ', 'ハヒフヘホ', 'マミムメモ', 'ヤユヨ', 'ラリルレロ', 'ワヰヱヲン'];
const ROMAJI = { ア: 'A', イ: 'I', ウ: 'U', エ: 'E', オ: 'O', カ: 'Ka', キ: 'Ki', ク: 'Ku', ケ: 'Ke', コ: 'Ko', サ: 'Sa', シ: 'Shi', ス: 'Su', セ: 'Se', ソ: 'So',
  タ: 'Ta', チ: 'Chi', ツ: 'Tsu', テ: 'Te', ト: 'To', ナ: 'Na', ニ: 'Ni', ヌ: 'Nu', ネ: 'Ne', ノ: 'No', ハ: 'Ha', ヒ: 'Hi', フ: 'Fu', ヘ: 'He', ホ: 'Ho',
  マ: 'Ma', ミ: 'Mi', ム: 'Mu', メ: 'Me', モ: 'Mo', ヤ: 'Ya', ユ: 'Yu', ヨ: 'Yo', ラ: 'Ra', リ: 'Ri', ル: 'Ru', レ: 'Re', ロ: 'Ro', ワ: 'Wa', ヰ: 'I', ヱ: 'E', ヲ: 'O', ン: 'N' };
const collator = new Intl.Collator('ja');

// initial is the plain sound a reading starts with (ガ → カ, ァ → ア, ヴ → ウ).
function initial(kana) {
  let c = (kana || '').normalize('NFD').charAt(0);
  const small = 'ァィゥェォャュョッヮ', big = 'アイウエオヤユヨツワ';
  if (small.includes(c)) c = big[small.indexOf(c)];
  return c;
}

function hiragana(kana) {
  return (kana || '').replace(/[ァ-ヶ]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0x60));
}

// indexOf groups the snapshot's municipalities by prefecture, sorted by
// reading, and splits each prefecture into index tabs. It is computed once
// per snapshot: the national list is 1,741 entries.
function indexOf(s) {
  if (index && index.snap === s) return index;
  const byPref = new Map();
  const add = (m, on) => {
    const p = m.code.slice(0, 2);
    if (!byPref.has(p)) byPref.set(p, []);
    byPref.get(p).push({ m, on });
  };
  for (const m of s.municipalities || []) add(m, true);
  for (const m of s.notParticipating || []) add(m, false);
  const prefs = new Map();
  for (const [p, list] of byPref) {
    list.sort((a, b) => collator.compare(a.m.kana || '\uffff', b.m.kana || '\uffff') || a.m.code.localeCompare(b.m.code));
    prefs.set(p, { list, tabs: tabsOf(list) });
  }
  index = { snap: s, prefs };
  return index;
}

// tabsOf splits a prefecture's sorted list into index tabs of at most PAGE.
function tabsOf(list) {
  const tabs = [];
  const wards = list.filter((x) => x.m.kind === 'special_ward');
  if (wards.length) tabs.push({ key: 'wards', label: () => nodes('municipality.wards'), items: wards });
  for (const x of list) {
    const ws = x.m.kind === 'designated_city' ? wardsByCity.get(x.m.code) : null;
    if (!ws?.length) continue;
    // Two short lines (札幌市 / の区), so that the kana tabs keep their room.
    tabs.push({ key: `city-${x.m.code}`, label: () => nodes('municipality.cityWards', { city: el('span', { class: 'city-name' }, cityShort(x.m)) }), city: true,
      items: ws.slice(0, PAGE).map((w) => ({ w, m: x.m, on: x.on })) });
  }
  const rest = list.filter((x) => x.m.kind !== 'special_ward');
  for (const row of ROWS) {
    const items = rest.filter((x) => row.includes(initial(x.m.kana)));
    if (items.length <= PAGE) {
      tabs.push({ key: row[0], label: () => tabLabel(row[0], row[0]), items, row: true });
      continue;
    }
    // A crowded row: runs of its sounds, each tab at most PAGE.
    let run = [], first = '', last = '';
    const flush = () => { if (run.length) tabs.push({ key: first, label: ((a, b) => () => tabLabel(a, b))(first, last), items: run, row: true }); run = []; };
    for (const c of row) {
      const some = items.filter((x) => initial(x.m.kana) === c);
      if (!some.length) continue;
      if (run.length + some.length > PAGE) flush();
      if (!run.length) first = c;
      last = c;
      run = run.concat(some);
    }
    flush();
  }
  const other = rest.filter((x) => !ROWS.some((r) => r.includes(initial(x.m.kana))));
  if (other.length) tabs.push({ key: 'other', label: () => nodes('municipality.other'), items: other });
  return tabs;
}

function tabLabel(a, b) {
  if (lang === 'ja') return hiragana(a === b ? a : a + '〜' + b);
  return a === b ? ROMAJI[a] : `${ROMAJI[a]}–${ROMAJI[b]}`;
}

// cityShort is a city's name for its ward tab: 札幌市, Sapporo.
function cityShort(m) {
  return lang === 'ja' ? m.nameJa : muniName(m).replace(/ City$/, '');
}

function prefName(p) {
  const x = prefectures.find((q) => q.code === p);
  if (!x) return p;
  return lang === 'ja' ? x.ja : x.en;
}

function muniName(m) {
  return lang === 'ja' ? m.nameJa : (m.nameEn || m.nameJa);
}

function municipalityScreen(s) {
  if (pick.seq !== s.seq) {
    // A new municipality screen. Back from the next screen (or a refusal)
    // opens the prefecture of the municipality chosen before.
    Object.assign(pick, { seq: s.seq, pref: s.municipality ? s.municipality.slice(0, 2) : '', tab: '', notice: '' });
  }
  const idx = indexOf(s);
  const out = [heading('municipality.heading')];
  if (s.notice) {
    const tried = [...(s.municipalities || [])].find((m) => m.code === s.municipality);
    out.push(notice(s.notice, tried ? nodes('municipality.notice', { name: muniName(tried) }) : null));
  }
  if (!pick.pref || !idx.prefs.has(pick.pref) && !prefectures.some((p) => p.code === pick.pref)) {
    out.push(para('municipality.prefHint', 'hint'), prefectureMap(idx));
    return out;
  }
  return out.concat(municipalityList(s, idx));
}

// prefectureMap is the 47 prefectures in six regions, north to south.
function prefectureMap(idx) {
  const regions = [];
  for (const p of prefectures) {
    let r = regions.find((x) => x.id === p.region);
    if (!r) regions.push(r = { id: p.region, prefs: [] });
    r.prefs.push(p);
  }
  return el('div', { class: 'regions' }, regions.map((r) =>
    el('section', { class: 'region', 'aria-labelledby': `region-${r.id}` },
      el('h3', { id: `region-${r.id}` }, nodes(`region.${r.id}`)),
      el('div', { class: 'prefs' }, r.prefs.map((p) => {
        const none = !idx.prefs.has(p.code);
        return el('button', { type: 'button', class: 'pref' + (none ? ' off' : ''), 'data-id': `pref-${p.code}`, lang: lang === 'ja' ? 'ja' : 'en',
          onclick: () => { pick.pref = p.code; pick.tab = ''; render(); $('heading')?.focus({ preventScroll: true }); } },
        lang === 'ja' ? p.ja : p.en);
      })))));
}

function municipalityList(s, idx) {
  const pref = idx.prefs.get(pick.pref) || { list: [], tabs: [] };
  const tabs = pref.tabs;
  const live = tabs.filter((t) => t.items.length);
  if (!live.some((t) => t.key === pick.tab)) {
    // Back on this screen (a refusal, or back from the next one): the tab
    // the municipality was chosen on, a ward's tab included; else the first.
    const back = s.municipality && live.find((t) => t.key === chosenTab && t.items.some((x) => x.m.code === s.municipality));
    pick.tab = back?.key || live[0]?.key || '';
  }
  const tab = tabs.find((t) => t.key === pick.tab);
  const designated = pref.list.filter((x) => x.m.kind === 'designated_city').map((x) => muniName(x.m));
  const head = el('div', { class: 'pref-head' },
    button('other-pref', nodes('municipality.otherPref'), () => { pick.pref = ''; pick.tab = ''; render(); }, 'btn quiet back-pref'),
    el('h3', { class: 'pref-name', id: 'pref-name' }, prefName(pick.pref)),
    designated.length
      ? el('p', { class: 'hint designated' }, nodes('municipality.designatedHint', { cities: designated.join(lang === 'ja' ? '・' : ', ') }))
      : para('municipality.muniHint', 'hint'));
  if (!tabs.length) return [head, para('municipality.none', 'note calm')];
  const bar = el('div', { class: 'tabs', role: 'tablist', 'aria-label': text('municipality.index') }, tabs.map((t) => {
    const on = t.key === pick.tab;
    return el('button', { type: 'button', role: 'tab', class: t.city ? 'tab city' : 'tab', 'data-id': `tab-${t.key}`, 'aria-selected': on ? 'true' : 'false',
      'aria-controls': 'muni-panel', disabled: !t.items.length, 'data-off': t.items.length ? '0' : '1',
      onclick: () => { pick.tab = t.key; render(); } }, t.label());
  }));
  const panel = el('div', { class: 'munis', id: 'muni-panel', role: 'tabpanel', 'aria-labelledby': 'pref-name' },
    (tab?.items || []).map((x) => x.w ? wardTile(x.w, x.m, x.on) : muniTile(x.m, x.on)));
  return [head, bar, panel, el('div', { id: 'local-notice', role: 'status', 'aria-live': 'polite' })];
}

function muniTile(m, on) {
  const reading = lang === 'ja'
    ? el('span', { class: 'reading', 'aria-hidden': 'true' }, hiragana(m.kana))
    : el('span', { class: 'reading', lang: 'ja' }, m.nameJa);
  const label = [reading, el('span', { class: 'name' }, muniName(m))];
  // The tile's small lines are plain text: furigana would not fit.
  if (m.kind === 'designated_city') label.push(el('span', { class: 'sub' }, text('municipality.designated')));
  if (!on) {
    label.push(el('span', { class: 'sub' }, text('municipality.notOffered')));
    // Greyed, still touchable: the touch says why it cannot be chosen.
    return el('button', { type: 'button', class: 'choice muni off', 'data-id': `muni-${m.code}`, 'aria-disabled': 'true',
      onclick: () => showNotice({ code: 'not_participating' }, nodes('municipality.notice', { name: muniName(m) })) }, label);
  }
  return button(`muni-${m.code}`, label, () => { chosenTab = pick.tab; send({ type: 'municipality', municipality: m.code }); }, 'choice muni');
}

// wardTile is one ward of a designated city. It sends the city's code:
// the city keeps the records. An abolished ward says until when it was.
function wardTile(w, city, on) {
  // In English the Japanese name, as on the resident's papers; left out of
  // a greyed tile, which has a line to say why instead.
  const reading = lang === 'ja'
    ? el('span', { class: 'reading', 'aria-hidden': 'true' }, hiragana(w.kana))
    : on ? el('span', { class: 'reading', lang: 'ja' }, w.ja) : null;
  const until = () => new Intl.DateTimeFormat(lang, { year: 'numeric', month: 'short', timeZone: 'Asia/Tokyo' })
    .format(new Date(`${w.until}T12:00:00+09:00`));
  // At most one small line: until when an abolished ward was, or (greyed)
  // that the city does not take part. The tab names the city.
  const sub = !on ? text('municipality.notOffered') : w.until ? text('municipality.wardUntil', { date: until() }) : '';
  const label = [reading, el('span', { class: 'name' }, lang === 'ja' ? w.ja : w.en), sub ? el('span', { class: 'sub' }, sub) : null];
  if (!on) {
    return el('button', { type: 'button', class: 'choice muni off', 'data-id': `ward-${w.code}`, 'aria-disabled': 'true',
      onclick: () => showNotice({ code: 'not_participating' }, nodes('municipality.notice', { name: muniName(city) })) }, label);
  }
  return button(`ward-${w.code}`, label, () => { chosenTab = pick.tab; send({ type: 'municipality', municipality: city.code }); }, 'choice muni');
}

function pinScreen(s) {
  const dots = el('div', { class: 'pin-dots', 'aria-hidden': 'true' });
  const status = el('span', { class: 'visually-hidden', id: 'pin-status' });
  const out = el('output', { id: 'pin-output', 'aria-live': 'polite', 'aria-label': text('pin.display') }, dots, status);
  const info = el('div', { class: 'pin-info' },
    heading('pin.heading'),
    // After a wrong entry the explanation gives way to the warnings.
    s.wrongPin || s.lastTry ? null : para('pin.what', 'hint'),
    el('div', { class: 'pin-row' },
      el('p', { class: 'tries', id: 'tries' }, nodes('pin.tries', { n: s.triesLeft })),
      out),
    s.wrongPin ? para('pin.wrong', 'note bad') : null,
    s.lastTry ? el('p', { class: 'note warn', id: 'last-try', role: 'alert' }, nodes('pin.lastTry')) : null,
    pinSent ? para('pin.verifying', 'hint') : null,
  );
  const pad = el('div', { class: 'pad', role: 'group', 'aria-label': text('pin.pad') });
  for (const d of ['1', '2', '3', '4', '5', '6', '7', '8', '9']) pad.append(key(d));
  pad.append(
    button('pin-clear', nodes('pin.clear'), () => { clearPIN(); drawPIN(); }, 'key fn'),
    key('0'),
    el('button', { type: 'button', class: 'key fn', 'data-id': 'pin-delete', 'aria-label': text('pin.delete'),
      onclick: () => { if (pin.length) { pin[pin.length - 1] = ''; pin.pop(); } drawPIN(); } }, '⌫'),
    el('button', { type: 'button', class: 'btn primary ok', id: 'pin-ok', 'data-id': 'pin-ok', onclick: submitPIN },
      nodes('app.ok')),
  );
  queueMicrotask(drawPIN);
  return [el('div', { class: 'pin-layout' }, info, pad)];
}

function key(d) {
  return el('button', { type: 'button', class: 'key', 'data-id': `pin-${d}`, onclick: () => typeDigit(d) }, d);
}

function typeDigit(d) {
  if (pinSent || pin.length >= 4) return;
  pin.push(d);
  drawPIN();
}

// drawPIN shows one mask per digit typed; the digits themselves are never
// put into the page.
function drawPIN() {
  const dots = document.querySelector('.pin-dots');
  if (!dots) return;
  const cells = [];
  for (let i = 0; i < 4; i++) cells.push(el('span', {}, i < pin.length ? '●' : ''));
  dots.replaceChildren(...cells);
  const status = $('pin-status');
  if (status) status.textContent = text('pin.entered', { n: pin.length });
  const ok = $('pin-ok');
  if (ok) {
    ok.dataset.off = pin.length === 4 && !pinSent ? '0' : '1';
    ok.disabled = busy || ok.dataset.off === '1';
  }
}

function submitPIN() {
  if (pin.length !== 4 || pinSent) return;
  pinSent = true;
  const digits = pin.join('');
  clearPIN();
  render();
  send({ type: 'pin', pin: digits });
}

function clearPIN() {
  for (let i = 0; i < pin.length; i++) pin[i] = '';
  pin.length = 0;
}

function previewScreen(s) {
  const certs = s.preview || [];
  const c = certs[0];
  const facts = el('dl', { class: 'facts' });
  const fact = (key, value, wide) => {
    if (value === undefined || value === null || value === '') return;
    facts.append(el('div', { class: wide ? 'fact wide' : 'fact' }, el('dt', {}, nodes(key)), el('dd', {}, value)));
  };
  if (c) {
    const h = c.holder || {};
    fact('preview.name', h.name);
    fact('preview.birthDate', h.birthDate);
    if (h.romanFamily || h.romanGiven) fact('preview.romanName', `${h.romanFamily || ''} ${h.romanGiven || ''}`.trim());
    fact('preview.nationality', h.nationality);
    fact('preview.passport', h.passportNumber);
    const iss = c.issuer || {};
    fact('preview.issuer', lang === 'ja' ? iss.nameJa : (iss.nameEn || iss.nameJa));
  }
  fact('preview.kind', nodes(`kind.${s.kind}`));
  fact('preview.copies', String(s.copies || ''));
  fact('preview.fee', yen(s.feeYen));

  // Every dose on one screen (up to ten, the most a certificate holds):
  // one line each, no scroll box, so nothing is hidden from the resident
  // who pays on the strength of this screen.
  // Two columns: the facts (and the notes) on the left, the doses on the
  // right, so that ten doses fit beside everything else.
  const side = el('div', { class: 'preview-side' }, facts);
  const region = el('section', { class: 'preview', role: 'region', 'aria-label': text('preview.region'), 'data-id': 'preview' }, side);
  if (c && c.doses?.length) {
    const head = el('tr', {}, ['preview.doseN', 'preview.date', 'preview.product', 'preview.maker', 'preview.lot'].map((k) =>
      el('th', { scope: 'col' }, k === 'preview.doseN' ? '#' : nodes(k))));
    const rows = c.doses.map((d) => el('tr', { 'data-dose': String(d.number) },
      // Plain (no furigana) so that ten rows fit; the column head has it.
      el('th', { scope: 'row' }, text('preview.doseN', { n: d.number })),
      el('td', {}, d.date),
      el('td', { class: 'product' }, d.productName),
      el('td', {}, lang === 'ja' ? d.manufacturerJa : (d.manufacturerEn || d.manufacturerJa)),
      el('td', {}, d.lot)));
    region.append(el('div', { class: 'preview-doses' },
      el('table', { class: 'doses' }, el('caption', { class: 'visually-hidden' }, nodes('preview.doses')), el('thead', {}, head), el('tbody', {}, rows))));
  }
  if (certs.length > 1) {
    const also = el('p', { class: 'note calm also', 'data-id': 'also-domestic' }, nodes('preview.alsoDomestic'));
    if (region.children.length > 1) region.lastChild.append(also); else side.append(also);
  }
  // Confirm and cancel sit in the bottom bar, so the content gets the
  // whole screen.
  return [el('div', { class: 'preview-head' }, heading('preview.heading'), para('preview.wrong', 'hint wrong')), region];
}

// ---- Voice -------------------------------------------------------------------

// promptsFor lists the voice prompts (assets/audio) for a snapshot.
function promptsFor(s) {
  if (!s) return [];
  switch (s.state) {
    case 'pin': {
      const p = [s.wrongPin ? 'pin-wrong' : 'pin'];
      if (s.lastTry) p.push('pin-last');
      return p;
    }
    case 'remove-card': return [s.reminder ? 'remove-card-again' : 'remove-card'];
    case 'take-certificate': return [s.reminder ? 'take-certificate-again' : 'take-certificate'];
    case 'error':
      if (s.takeCard && s.reminder) return ['remove-card-again'];
      return s.takeCard ? ['error', 'remove-card'] : ['error'];
    case 'municipality': case 'kind':
      return s.notice ? ['error', s.state] : [s.state];
    case 'idle': case 'card-check': case 'reading': case 'checking': case 'copies':
    case 'requesting': case 'preview': case 'payment': case 'printing': case 'print-failed':
      return [s.state];
  }
  return [];
}

// speakFor speaks when the screen changes or a reminder repeats.
function speakFor(prev, s) {
  if (!s) { speak([]); return; }
  const changed = !prev || prev.state !== s.state || prev.reminder !== s.reminder ||
    (s.state === 'pin' && prev.seq !== s.seq) || prev.error?.code !== s.error?.code ||
    (s.notice && prev.seq !== s.seq);
  if (changed) speak(promptsFor(s));
}

function voiceDir() {
  return langs.find((l) => l.code === lang)?.voice || lang;
}

function speak(keys) {
  voiceQueue = keys.slice();
  audio.dataset.queue = keys.join(' ');
  audio.pause();
  playNext();
}

// speakAfter adds a prompt after what is being said.
function speakAfter(key) {
  voiceQueue.push(key);
  audio.dataset.queue = [audio.dataset.queue || '', key].join(' ').trim();
  if (audio.paused || audio.ended) playNext();
}

function playNext() {
  const k = voiceQueue.shift();
  if (!k) return;
  audio.src = `/audio/${voiceDir()}/${k}.opus`;
  voiceCount++;
  audio.dataset.prompt = `${voiceDir()}/${k}`;
  audio.dataset.count = String(voiceCount);
  audio.play().then(() => { $('voice-on').hidden = true; }).catch((err) => {
    // Without --autoplay-policy=no-user-gesture-required (a desktop
    // browser rather than the kiosk's), sound needs a first touch.
    if (err && err.name === 'NotAllowedError') $('voice-on').hidden = false;
  });
}

audio.addEventListener('ended', playNext);
audio.addEventListener('error', playNext);

$('repeat').addEventListener('click', () => speak(promptsFor(snap)));
$('voice-on').addEventListener('click', () => { $('voice-on').hidden = true; speak(promptsFor(snap)); });

// A hardware keyboard works too (digits, Backspace, Enter) on the PIN screen.
document.addEventListener('keydown', (e) => {
  if (snap?.state !== 'pin' || e.altKey || e.ctrlKey || e.metaKey) return;
  if (/^[0-9]$/.test(e.key)) { typeDigit(e.key); e.preventDefault(); }
  else if (e.key === 'Backspace') { if (pin.length) { pin[pin.length - 1] = ''; pin.pop(); } drawPIN(); e.preventDefault(); }
  else if (e.key === 'Enter' && pin.length === 4 && !(document.activeElement instanceof HTMLButtonElement)) { submitPIN(); e.preventDefault(); }
});

// ---- Start -------------------------------------------------------------------

async function start() {
  const r = await fetch(LANGUAGES, { cache: 'no-store' });
  langs = await r.json();
  await Promise.all(langs.map(async (l) => {
    const m = await fetch(`/ui/${l.file}`, { cache: 'no-store' });
    dicts.set(l.code, await m.json());
  }));
  prefectures = await (await fetch(PREFECTURES, { cache: 'no-store' })).json();
  const wards = await (await fetch(WARDS, { cache: 'no-store' })).json();
  for (const w of wards) {
    if (!wardsByCity.has(w.city)) wardsByCity.set(w.city, []);
    wardsByCity.get(w.city).push(w);
  }
  for (const ws of wardsByCity.values()) ws.sort((a, b) => (a.until ? 1 : 0) - (b.until ? 1 : 0) || collator.compare(a.kana, b.kana));
  lang = langs[0].code;
  render();
  setInterval(tick, 250);
  connect();
}

start().catch(() => {
  document.body.dataset.state = 'offline';
  setTimeout(() => location.reload(), 5000);
});

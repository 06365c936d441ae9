// The simulator's control panel: places and removes virtual cards, decides
// the store terminal's payment and makes the next print fail, through
// /sim/api/ (kiosk/internal/localapi/sim.go). Only in simulator mode.

const $ = (id) => document.getElementById(id);

async function post(path, body) {
  const r = await fetch(`/sim/api/${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    cache: 'no-store',
  });
  if (!r.ok) console.warn(`sim ${path}: HTTP ${r.status}`);
  refresh();
}

let cardsShown = '';

function showCards(cards) {
  const key = cards.map((c) => c.id).join(',');
  if (key === cardsShown) return;
  cardsShown = key;
  $('cards').replaceChildren(...cards.map((c) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.card = c.id;
    // One line each: the PIN and name, then what the card shows (cut
    // short on screen, whole in the tooltip), so every control fits. The
    // PIN comes first: in two columns a long name is cut short.
    const [name, ...about] = c.label.split(' — ');
    const head = document.createElement('span');
    head.className = 'who';
    if (c.pin) {
      const p = document.createElement('span');
      p.className = 'pin';
      p.textContent = `PIN ${c.pin} `;
      head.append(p);
    }
    head.append(name);
    b.append(head);
    if (about.length) {
      const a = document.createElement('span');
      a.className = 'about';
      a.textContent = about.join(' — ');
      b.append(a);
      b.title = `Place: ${c.label}`;
    }
    b.addEventListener('click', () => post('card', { id: c.id }));
    const li = document.createElement('li');
    li.append(b);
    return li;
  }));
}

async function refresh() {
  let st;
  try {
    const r = await fetch('/sim/api/state', { cache: 'no-store' });
    st = await r.json();
  } catch {
    $('state').textContent = 'agent not reachable';
    return;
  }
  if (!live) $('state').textContent = st.state;
  $('inserted').textContent = st.inserted || 'none';
  $('remove').disabled = !st.inserted;
  showCards(st.cards || []);
  if (st.payment) {
    $('payment').hidden = false;
    $('auto').checked = st.payment.auto;
    $('pending').hidden = !st.payment.pending;
    $('amount').textContent = `¥${st.payment.amountYen || 0}`;
    $('approve').disabled = !st.payment.pending;
    $('decline').disabled = !st.payment.pending;
    $('captured').textContent = `¥${st.payment.capturedYen}`;
  }
  if (st.printer) {
    $('printer').hidden = false;
    if (document.activeElement !== $('fault')) $('fault').value = st.printer.failNext;
  }
}

$('remove').addEventListener('click', () => post('card', { id: '' }));
$('auto').addEventListener('change', (e) => post('payment', { auto: e.target.checked }));
$('approve').addEventListener('click', () => post('payment', { approve: true }));
$('decline').addEventListener('click', () => post('payment', { approve: false }));
$('fault').addEventListener('change', (e) => post('printer', { failNext: e.target.value }));

// fit scales the kiosk screen (laid out at 1280 × 800, as on a kiosk) to
// the room beside the panel.
function fit() {
  const scale = Math.min(1, (window.innerWidth - 400) / 1280, (window.innerHeight - 40) / 800);
  const frame = $('screen');
  frame.style.transform = `scale(${scale})`;
  frame.parentElement.style.width = `${Math.floor(1280 * scale)}px`;
  frame.parentElement.style.height = `${Math.floor(800 * scale)}px`;
}

// The kiosk's state as it changes: the screen's own event stream, read for
// the state name only (the panel keeps nothing else of a snapshot). The
// 400 ms poll covers the reader, payment and printer.
let live = false;
function follow() {
  const es = new EventSource('/api/v1/screen/events');
  es.addEventListener('snapshot', (e) => {
    let state = '';
    try { state = JSON.parse(e.data).state; } catch { return; }
    live = true;
    $('state').dataset.source = 'stream';
    if ($('state').textContent !== state) $('state').textContent = state;
    refresh();
  });
  es.addEventListener('error', () => { live = false; });
}

window.addEventListener('resize', fit);
fit();
follow();
refresh();
setInterval(refresh, 400);

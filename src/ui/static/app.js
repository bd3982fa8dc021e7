// Page glue, loaded on every page as <script type="module">. Heavier widgets
// are imported on demand so a page only downloads what it actually uses.
const WIDGETS = [
  ['[data-camera]', './camera.js'],
  ['[data-signature]', './signature.js'],
  ['[data-measure]', './measure.js'],
  ['[data-stream-src]', './stream.js'],
  ['[data-overlay]', './overlay.js'],
  ['[data-ba]', './slider.js'],
  ['[data-upload-progress]', './upload.js'],
];

function loadWidgets() {
  for (const [sel, url] of WIDGETS) {
    // import() is cached: a module runs once, then rescans on htmx:afterSettle itself.
    if (document.querySelector(sel)) import(url).catch((e) => console.error('load', url, e));
  }
}

function scrollChats() {
  document.querySelectorAll('[data-autofocus-last]').forEach((el) => {
    const chat = el.matches('.chat') ? el : el.querySelector('.chat') || el;
    chat.scrollTop = chat.scrollHeight;
  });
}

// (a) CSRF token on every htmx request; read each time in case it rotates.
document.addEventListener('htmx:configRequest', (e) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) e.detail.headers['X-CSRF-Token'] = meta.content;
});

// (b) Confirmations. Capture phase on document runs before htmx's handlers
// on the element, so stopPropagation really cancels htmx requests too.
document.addEventListener('submit', (e) => {
  const form = e.target;
  const text = (e.submitter && e.submitter.dataset.confirm) || form.dataset.confirm;
  if (text && !window.confirm(text)) {
    e.preventDefault();
    e.stopPropagation();
  }
}, true);

document.addEventListener('click', (e) => {
  const el = e.target.closest('[data-confirm]');
  if (!el || el.tagName === 'FORM') return;
  // Submit buttons of a form are asked once, on submit (above).
  if (el.form && (el.type === 'submit' || el.type === 'image')) return;
  if (!window.confirm(el.dataset.confirm)) {
    e.preventDefault();
    e.stopPropagation();
  }
}, true);

// (d) Print buttons (the printable quote).
document.addEventListener('click', (e) => {
  if (e.target.closest('[data-print]')) {
    e.preventDefault();
    window.print();
  }
});

// (f) SLA countdowns (回访告警): each badge carries the seconds left when the server made the page
// (data-due-in, at the server's clock: a tablet's own clock may be wrong) and the catalogue's
// words for it (data-left / data-over with {t}; data-hm / data-dh for the span). Counted from
// when this page first saw the badge, so a badge swapped in later counts from its own start.
function slaSpan(el, secs) {
  const mins = Math.floor(Math.abs(secs) / 60);
  const d = Math.floor(mins / 1440), h = Math.floor((mins % 1440) / 60), m = mins % 60;
  const f = d > 0 ? el.dataset.dh.replace('{d}', d) : el.dataset.hm.replace('{m}', m);
  return f.replace('{h}', h);
}

function tickSla() {
  const now = performance.now();
  document.querySelectorAll('[data-due-in]').forEach((el) => {
    const start = Number(el.dataset.dueIn);
    if (!Number.isFinite(start) || !el.dataset.left || !el.dataset.over || !el.dataset.hm || !el.dataset.dh) return;
    if (!el.dataset.seenAt) el.dataset.seenAt = String(now);
    const left = start - (now - Number(el.dataset.seenAt)) / 1000;
    const over = left < 0;
    el.textContent = (over ? el.dataset.over : el.dataset.left).replace('{t}', slaSpan(el, left));
    el.classList.toggle('sla-over', over);
  });
}

let slaTimer = null;
function startSla() {
  if (slaTimer === null && document.querySelector('[data-due-in]')) {
    tickSla();
    slaTimer = setInterval(tickSla, 1000);
  }
}

function onReady() {
  loadWidgets();
  scrollChats();
  startSla();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', onReady);
else onReady();

// (c)+(e) Swapped-in content may bring new chats or widgets.
document.addEventListener('htmx:afterSettle', onReady);

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

function onReady() {
  loadWidgets();
  scrollChats();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', onReady);
else onReady();

// (c)+(e) Swapped-in content may bring new chats or widgets.
document.addEventListener('htmx:afterSettle', onReady);

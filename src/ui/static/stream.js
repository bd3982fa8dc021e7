// Streams model text into [data-stream-src]. The element already shows the
// server's template text; model words arrive in a grey .draft span and only
// replace the template if the server's final check accepts them.
function setup(el) {
  el.dataset.streamReady = '1';
  const src = el.dataset.streamSrc;
  let draft = null;
  let finished = false;
  let es;
  let timer = 0;
  try {
    es = new EventSource(src);
  } catch (err) {
    end('failed');
    return;
  }
  el.setAttribute('aria-busy', 'true');

  function end(state) {
    if (finished) return;
    finished = true;
    if (es) es.close(); // stop EventSource's automatic reconnects
    clearTimeout(timer);
    if (state !== 'done' && draft) draft.remove();
    if (state !== 'done') el.dataset.source = 'template';
    el.removeAttribute('aria-busy');
    el.dataset.streamState = state;
    el.dispatchEvent(new CustomEvent('stream:end', { bubbles: true, detail: { state } }));
  }

  function parse(e) {
    try { return JSON.parse(e.data); } catch (err) { return null; }
  }

  // Guard against a stream that never finishes (default 90 s).
  const ms = parseInt(el.dataset.streamTimeout || '90000', 10);
  timer = setTimeout(() => end('failed'), ms > 0 ? ms : 90000);

  es.onmessage = (e) => {
    const m = parse(e);
    if (finished || !m || typeof m.delta !== 'string' || !m.delta) return;
    if (!draft) {
      draft = document.createElement('span');
      draft.className = 'draft';
      el.append(draft);
    }
    draft.textContent += m.delta;
  };

  es.addEventListener('done', (e) => {
    const m = parse(e);
    if (!m) return end('failed');
    if (m.accepted === true && typeof m.text === 'string' && m.text.trim()) {
      el.textContent = m.text; // textContent only: model output is untrusted
      el.dataset.source = 'model';
      end('done');
    } else {
      end('rejected');
    }
  });

  // Fires both for a server "event: error" and for connection failures.
  es.addEventListener('error', () => end('failed'));

  window.addEventListener('pagehide', () => end('failed'));
  el.addEventListener('htmx:beforeCleanupElement', (e) => { if (e.target === el) end('failed'); });
}

function scan() {
  document.querySelectorAll('[data-stream-src]:not([data-stream-ready])').forEach(setup);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', scan);
else scan();
document.addEventListener('htmx:afterSettle', scan);

export { scan };

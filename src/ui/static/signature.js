// Signature pad for [data-signature]. The server wants plain base64 PNG in
// the hidden input signature_png. Strokes are kept as data (not pixels) so a
// rotation/resize can redraw them crisply at the new size.
const WIDTH = 2.5;

function setup(el) {
  el.dataset.signatureReady = '1';
  const canvas = el.querySelector('canvas');
  const input = el.querySelector('input[name=signature_png]');
  if (!canvas || !input) return;
  const form = el.closest('form');
  // The clear button may sit in the form's button row rather than in the pad.
  const clearBtn = el.querySelector('[data-signature-clear]') ||
    (form && form.querySelector('[data-signature-clear]'));
  const ctx = canvas.getContext('2d');
  // Points are stored in units of the canvas CSS width, so a resize scales
  // the signature uniformly instead of distorting or clipping it.
  let strokes = [];
  let current = null;
  let cssW = 1;

  function style(c) {
    c.lineWidth = WIDTH;
    c.lineCap = 'round';
    c.lineJoin = 'round';
    c.strokeStyle = '#111';
  }

  // Quadratic curves through segment midpoints: cheap smoothing.
  function drawStroke(pts, from) {
    const s = cssW;
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0][0] * s, pts[0][1] * s, WIDTH / 2, 0, Math.PI * 2);
      ctx.fillStyle = '#111';
      ctx.fill();
      return;
    }
    const start = Math.max(1, from || 1);
    ctx.beginPath();
    const p0 = pts[start - 1];
    const m0 = start === 1 ? p0 : [(pts[start - 2][0] + p0[0]) / 2, (pts[start - 2][1] + p0[1]) / 2];
    ctx.moveTo(m0[0] * s, m0[1] * s);
    for (let i = start; i < pts.length; i++) {
      const a = pts[i - 1], b = pts[i];
      ctx.quadraticCurveTo(a[0] * s, a[1] * s, ((a[0] + b[0]) / 2) * s, ((a[1] + b[1]) / 2) * s);
    }
    ctx.stroke();
  }

  function redraw() {
    const dpr = window.devicePixelRatio || 1;
    const r = canvas.getBoundingClientRect();
    if (!r.width || !r.height) return;
    cssW = r.width;
    canvas.width = Math.round(r.width * dpr);
    canvas.height = Math.round(r.height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    style(ctx);
    strokes.forEach((p) => drawStroke(p));
  }

  function point(e) {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) / cssW, (e.clientY - r.top) / cssW];
  }

  function exportPng() {
    // White background so the PNG is readable when printed.
    const out = document.createElement('canvas');
    out.width = canvas.width;
    out.height = canvas.height;
    const o = out.getContext('2d');
    o.fillStyle = '#fff';
    o.fillRect(0, 0, out.width, out.height);
    o.drawImage(canvas, 0, 0);
    input.value = out.toDataURL('image/png').replace(/^data:image\/png;base64,/, '');
  }

  function errorEl(create) {
    let e = el.querySelector('[data-signature-error]');
    if (!e && create) {
      e = document.createElement('p');
      e.className = 'field-error';
      e.setAttribute('data-signature-error', '');
      e.setAttribute('role', 'alert');
      el.append(e);
    }
    return e;
  }

  canvas.addEventListener('pointerdown', (e) => {
    if (e.button > 0) return;
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    current = [point(e)];
    strokes.push(current);
    drawStroke(current);
    const err = errorEl(false);
    if (err) err.textContent = '';
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!current) return;
    const evs = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    const from = current.length;
    (evs.length ? evs : [e]).forEach((c) => current.push(point(c)));
    drawStroke(current, from);
  });
  const end = () => {
    if (!current) return;
    current = null;
    exportPng();
  };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  canvas.addEventListener('lostpointercapture', end);

  if (clearBtn) clearBtn.addEventListener('click', (e) => {
    e.preventDefault();
    strokes = [];
    current = null;
    input.value = '';
    redraw();
  });

  // Capture phase on document: runs before htmx's own submit handler, so an
  // empty pad stops both plain and htmx-driven submissions.
  if (form) document.addEventListener('submit', (e) => {
    if (e.target !== form || !el.isConnected) return;
    if (!strokes.length) {
      e.preventDefault();
      e.stopPropagation();
      errorEl(true).textContent = el.dataset.emptyMessage || 'Please sign first.';
      canvas.scrollIntoView({ block: 'center', behavior: 'smooth' });
      return;
    }
    exportPng();
  }, true);

  if (window.ResizeObserver) new ResizeObserver(redraw).observe(canvas);
  else window.addEventListener('resize', redraw);
  redraw();
}

function scan() {
  document.querySelectorAll('[data-signature]:not([data-signature-ready])').forEach(setup);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', scan);
else scan();
document.addEventListener('htmx:afterSettle', scan);

export { scan };

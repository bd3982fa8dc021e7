// Two-point length reference on a photo ([data-measure]). Points are sent in
// the image's natural pixels; markers are placed in % so they stay on the
// right spot when the displayed image is resized or rotated.
function setup(el) {
  el.dataset.measureReady = '1';
  const img = el.querySelector('img');
  if (!img) return;
  const f = (n) => el.querySelector('input[name=' + n + ']');
  const inputs = { fx: f('from_x'), fy: f('from_y'), tx: f('to_x'), ty: f('to_y') };
  const submit = el.querySelector('[type=submit]') || el.querySelector('button:not([type])');
  const hint = el.querySelector('[data-measure-hint]');

  // Markers need a positioned box that hugs the image; reuse .measure if it
  // holds only the image, otherwise wrap the image in one.
  let stage = img.parentElement;
  if (!(stage.classList.contains('measure') && stage.children.length === 1)) {
    stage = document.createElement('div');
    stage.className = 'measure';
    img.replaceWith(stage);
    stage.append(img);
  }
  // Parsed as HTML (constant markup) so the SVG namespace comes for free.
  const svg = new DOMParser().parseFromString('<svg class="line" viewBox="0 0 100 100" ' +
    'preserveAspectRatio="none" aria-hidden="true"><line></line></svg>', 'text/html').body.firstChild;
  const line = svg.firstChild;
  stage.append(svg);

  let pts = []; // fractions of the displayed image, 0..1
  let dots = [];

  function render() {
    dots.forEach((d) => d.remove());
    dots = pts.map((p) => {
      const d = document.createElement('span');
      d.className = 'dot';
      d.style.left = p[0] * 100 + '%';
      d.style.top = p[1] * 100 + '%';
      stage.append(d);
      return d;
    });
    svg.toggleAttribute('hidden', pts.length < 2);
    if (pts.length === 2) {
      line.setAttribute('x1', pts[0][0] * 100);
      line.setAttribute('y1', pts[0][1] * 100);
      line.setAttribute('x2', pts[1][0] * 100);
      line.setAttribute('y2', pts[1][1] * 100);
    }
    const W = img.naturalWidth, H = img.naturalHeight;
    const set = (i, v) => { if (i) i.value = v; };
    set(inputs.fx, pts[0] ? Math.round(pts[0][0] * W) : '');
    set(inputs.fy, pts[0] ? Math.round(pts[0][1] * H) : '');
    set(inputs.tx, pts[1] ? Math.round(pts[1][0] * W) : '');
    set(inputs.ty, pts[1] ? Math.round(pts[1][1] * H) : '');
    if (submit) submit.disabled = pts.length < 2;
    if (hint) {
      const key = ['labelFirst', 'labelSecond', 'labelDone'][pts.length];
      const def = ['Tap the first point', 'Tap the second point', 'Enter the real length'][pts.length];
      hint.textContent = el.dataset[key] || def;
    }
    el.dataset.measurePoints = String(pts.length);
  }

  img.addEventListener('click', (e) => {
    if (!img.naturalWidth) return; // not loaded: no natural size to map to
    const r = img.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    const p = [clamp((e.clientX - r.left) / r.width), clamp((e.clientY - r.top) / r.height)];
    pts = pts.length >= 2 ? [p] : pts.concat([p]);
    render();
  });
  img.draggable = false;

  // Re-show points the server echoed back (e.g. after a validation error).
  const v = Object.values(inputs).map((i) => (i && i.value !== '' ? Number(i.value) : NaN));
  function restore() {
    const W = img.naturalWidth, H = img.naturalHeight;
    if (W && H && v.every((n) => Number.isFinite(n))) {
      pts = [[v[0] / W, v[1] / H], [v[2] / W, v[3] / H]];
    }
    render();
  }
  if (img.complete && img.naturalWidth) restore();
  else {
    render();
    img.addEventListener('load', restore, { once: true });
  }
}

function scan() {
  document.querySelectorAll('[data-measure]:not([data-measure-ready])').forEach(setup);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', scan);
else scan();
document.addEventListener('htmx:afterSettle', scan);

export { scan };

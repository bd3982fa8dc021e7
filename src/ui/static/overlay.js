// See-through before photo for after-shots: [data-overlay] forms (an after
// checkpoint's upload) lay the before photo at ~40 % opacity over the live rear
// camera (getUserMedia) or, without a camera, over the chosen file's preview,
// so the technician shoots from the same viewpoint. The form works alone.
function h(tag, cls, ...kids) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  e.append(...kids);
  return e;
}

const button = (label, cls) => Object.assign(h('button', cls, label), { type: 'button' });

function setup(form) {
  form.dataset.overlayReady = '1';
  const file = form.querySelector('input[type=file]');
  if (!file) return;
  const L = (k, d) => form.dataset[k] || d;
  const ghost = Object.assign(h('img', 'ghost'), { src: form.dataset.overlay, alt: '' });
  const stage = h('div', 'ghost-stage');
  stage.hidden = true;
  const hint = h('p', 'small muted ghost-hint', L('labelHint', ''));
  hint.hidden = true;
  form.before(stage, hint);
  // The stage takes the before photo's shape, so the two line up as they will be compared.
  ghost.addEventListener('load', () => { stage.style.aspectRatio = `${ghost.naturalWidth} / ${ghost.naturalHeight}`; }, { once: true });
  let stream = null, url = null;

  function show(base) {
    stage.replaceChildren(base, ghost);
    stage.hidden = hint.hidden = false;
  }

  function stop() {
    stream?.getTracks().forEach((t) => t.stop());
    stream = null;
  }

  function preview() {
    if (!file.files.length) return;
    if (url) URL.revokeObjectURL(url);
    url = URL.createObjectURL(file.files[0]);
    show(Object.assign(h('img', 'ghost-base'), { src: url, alt: '' }));
    stage.dataset.mode = 'preview';
  }
  file.addEventListener('change', () => { stop(); preview(); });

  if (!(window.isSecureContext && navigator.mediaDevices?.getUserMedia)) return;
  const open = button(L('labelOpen', 'Shoot aligned'), 'btn');
  form.querySelector('button:not([type=button])')?.before(open);

  open.addEventListener('click', async () => {
    open.disabled = true;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: false, video: { facingMode: { ideal: 'environment' } } });
    } catch (err) {
      open.remove();
      hint.hidden = false;
      hint.textContent = L('labelDenied', 'Camera unavailable.');
      console.warn('camera:', err?.name || err);
      return;
    } finally {
      open.disabled = false;
    }
    const video = Object.assign(h('video', 'ghost-base'), { muted: true, autoplay: true, playsInline: true, srcObject: stream });
    video.setAttribute('playsinline', '');
    const shoot = button(L('labelShoot', 'Take photo'), 'btn btn-primary');
    const cancel = button(L('labelCancel', 'Cancel'), 'btn');
    const controls = h('div', 'controls', shoot, cancel);
    show(video);
    stage.append(controls);
    stage.dataset.mode = 'live';
    cancel.addEventListener('click', () => { stop(); stage.hidden = hint.hidden = true; });
    shoot.addEventListener('click', () => {
      const w = video.videoWidth, ht = video.videoHeight;
      if (!w || !ht) return;
      const c = Object.assign(h('canvas'), { width: w, height: ht });
      c.getContext('2d').drawImage(video, 0, 0, w, ht);
      c.toBlob((blob) => {
        if (!blob) return;
        const dt = new DataTransfer();
        dt.items.add(new File([blob], 'after.jpg', { type: 'image/jpeg' }));
        file.files = dt.files;
        stop();
        preview();
      }, 'image/jpeg', 0.9);
    });
    video.play().catch(() => {});
  });
  window.addEventListener('pagehide', stop);
  form.addEventListener('htmx:beforeCleanupElement', stop);
}

function scan() {
  document.querySelectorAll('form[data-overlay]:not([data-overlay-ready])').forEach(setup);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', scan);
else scan();
document.addEventListener('htmx:afterSettle', scan);

export { scan };

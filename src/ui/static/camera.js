// Live rear-camera capture for [data-camera]. The server's <form> with
// <input type=file capture> works alone; this adds a viewfinder with a guide.
// Hand-drawn guide outlines (one path each) in a 160x90 (16:9) box.
const GUIDES = {
  front: 'M52 28Q54 24 60 24H100Q106 24 108 28L116 44H44Z' +
    'M44 44H116Q126 44 128 50L130 66Q130 72 124 72H36Q30 72 30 66L32 50Q34 44 44 44Z' +
    'M36 52L54 54V59L37 58ZM124 52L106 54V59L123 58ZM64 58H96V66H64Z' +
    'M34 72V80H48V72M112 72V80H126V72M44 42L36 40V45M116 42L124 40V45',
  side: 'M14 62V52Q15 46 26 45L48 43L62 29Q66 26 75 26H104Q112 26 118 32L129 43L142 46' +
    'Q147 48 147 54V62H132A10 10 0 0 0 112 62H52A10 10 0 0 0 32 62Z' +
    'M66 43L72 31H94V43ZM99 43V31H110L120 43Z' +
    'M33 62a9 9 0 1 0 18 0a9 9 0 1 0-18 0M113 62a9 9 0 1 0 18 0a9 9 0 1 0-18 0',
  close_up: 'M55 31V20H66M94 20H105V31M105 59V70H94M66 70H55V59M80 40V50M75 45H85',
};

// Parsed as HTML so the SVG namespace comes for free; only constants go in
// (no user data, so this is not an injection path).
function guideSvg(shot) {
  const d = GUIDES[shot] || GUIDES.close_up;
  const path = (stroke, w) => `<path d="${d}" fill="none" stroke="${stroke}" stroke-width="${w}" ` +
    'stroke-linejoin="round" stroke-linecap="round" vector-effect="non-scaling-stroke"/>';
  // A dark halo under the white line keeps the guide visible on any scene.
  const html = '<svg viewBox="0 0 160 90" preserveAspectRatio="xMidYMid meet" aria-hidden="true">' +
    path('rgba(0,0,0,.55)', 5) + path('#fff', 2.5) + '</svg>';
  return new DOMParser().parseFromString(html, 'text/html').body.firstChild;
}

function h(tag, cls, ...kids) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  e.append(...kids);
  return e;
}

const button = (label, cls) => Object.assign(h('button', cls, label), { type: 'button' });

function setup(el) {
  el.dataset.cameraReady = '1';
  const form = el.querySelector('form');
  const file = form?.querySelector('input[type=file]');
  if (!form || !file) return;
  const shotInput = form.querySelector('input[name=shot]');
  const shot = el.dataset.shot || shotInput?.value || 'close_up';
  const auto = form.hasAttribute('data-autosubmit') || el.hasAttribute('data-autosubmit');
  const state = (s) => { el.dataset.cameraState = s; };

  // Fallback path: the native picker / camera app.
  file.addEventListener('change', () => { if (auto && file.files.length) form.requestSubmit(); });

  if (!(window.isSecureContext && navigator.mediaDevices?.getUserMedia)) return;

  const L = (k, d) => el.dataset[k] || d;
  const openBtn = button(L('labelOpen', 'Open camera'), 'btn btn-primary btn-big');
  const bar = h('div', 'controls camera-open', openBtn);
  el.prepend(bar);
  let stream = null, live = null;

  function stop() {
    stream?.getTracks().forEach((t) => t.stop());
    live?.remove();
    stream = live = null;
    bar.hidden = form.hidden = false;
  }

  function fail(err) {
    stop();
    bar.remove(); // camera unusable here: leave only the file input
    const msg = el.querySelector('.message') || h('p', 'message');
    msg.setAttribute('role', 'alert');
    el.prepend(msg);
    msg.textContent = L('labelDenied', 'Camera unavailable.');
    state('denied');
    console.warn('camera:', err?.name || err);
  }

  async function open() {
    openBtn.disabled = true;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: { facingMode: { ideal: 'environment' }, width: { ideal: 1920 }, height: { ideal: 1080 } },
      });
    } catch (err) {
      fail(err);
      return;
    } finally {
      openBtn.disabled = false;
    }
    const video = h('video');
    video.muted = video.autoplay = video.playsInline = true; // iOS needs all three
    video.setAttribute('playsinline', '');
    video.srcObject = stream;
    const shoot = button(L('labelShoot', 'Take photo'), 'btn btn-primary btn-big');
    const cancel = button(L('labelCancel', 'Cancel'), 'btn btn-big');
    const stage = h('div', 'camera-stage', video, h('div', 'guide', guideSvg(shot)), h('div', 'controls', shoot, cancel));
    live = h('div', 'camera-live', stage);
    bar.hidden = form.hidden = true;
    el.prepend(live);
    // Scroll once the video has a size, so the whole viewfinder fits.
    video.addEventListener('loadedmetadata', () => stage.scrollIntoView({ block: 'start' }), { once: true });
    state('live');
    cancel.addEventListener('click', () => { stop(); state('idle'); });
    shoot.addEventListener('click', () => capture(video, shoot));
    video.play().catch(() => {}); // autoplay covers a refused play()
  }

  function capture(video, shoot) {
    const w = video.videoWidth, ht = video.videoHeight;
    if (!w || !ht) return; // first frame not there yet
    shoot.disabled = true;
    const canvas = h('canvas');
    Object.assign(canvas, { width: w, height: ht });
    canvas.getContext('2d').drawImage(video, 0, 0, w, ht);
    canvas.toBlob((blob) => {
      if (!blob) { shoot.disabled = false; return; }
      const dt = new DataTransfer();
      dt.items.add(new File([blob], shot + '.jpg', { type: 'image/jpeg' }));
      file.files = dt.files; // fires no change event, so no double submit
      if (shotInput && !shotInput.value) shotInput.value = shot;
      stop();
      state('captured');
      form.requestSubmit();
    }, 'image/jpeg', 0.9);
  }

  openBtn.addEventListener('click', open);
  // Never leave the camera light on after navigation or an htmx swap.
  window.addEventListener('pagehide', stop);
  el.addEventListener('htmx:beforeCleanupElement', (e) => { if (e.target === el) stop(); });
}

function scan() {
  document.querySelectorAll('[data-camera]:not([data-camera-ready])').forEach(setup);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', scan);
else scan();
document.addEventListener('htmx:afterSettle', scan);

export { scan };

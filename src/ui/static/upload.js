// Upload progress for forms marked data-upload-progress (the import screen): the bar follows the
// bytes sent, then shows "working" (no value) until the server's answer arrives.
function bind(form) {
  if (form.dataset.uploadBound) return;
  form.dataset.uploadBound = '1';
  const bar = form.querySelector('progress');
  if (!bar) return;
  form.addEventListener('htmx:beforeRequest', () => {
    bar.hidden = false;
    bar.value = 0;
  });
  form.addEventListener('htmx:xhr:progress', (e) => {
    if (!e.detail.lengthComputable || !e.detail.total) return;
    if (e.detail.loaded >= e.detail.total) bar.removeAttribute('value');
    else bar.value = Math.round((e.detail.loaded / e.detail.total) * 100);
  });
  form.addEventListener('htmx:afterRequest', () => {
    bar.hidden = true;
    bar.value = 0;
  });
}

function scan() {
  document.querySelectorAll('[data-upload-progress]').forEach(bind);
}

scan();
document.addEventListener('htmx:afterSettle', scan);

// Before/after slider for [data-ba]: the after photo lies on the before photo
// and the range input moves the clip between them (left: before, right: after).
function setup(el) {
  el.dataset.baReady = '1';
  const after = el.querySelector('.ba-after');
  const line = el.querySelector('.ba-line');
  const range = el.querySelector('input[type=range]');
  if (!after || !range) return;
  const move = () => {
    const v = Number(range.value);
    after.style.clipPath = `inset(0 0 0 ${v}%)`;
    if (line) line.style.left = `${v}%`;
  };
  range.addEventListener('input', move);
  move();
}

function scan() {
  document.querySelectorAll('[data-ba]:not([data-ba-ready])').forEach(setup);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', scan);
else scan();
document.addEventListener('htmx:afterSettle', scan);

export { scan };

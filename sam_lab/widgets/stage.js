// stage.js: an image with layers on top, and pointer input measured in the image's own pixels.
//
// Shared by the widgets' ES modules (each imports it; sam_lab/widgets/images.py inlines it).
// The image is shown at any CSS size on any screen; a click is mapped back to the ORIGINAL image
// with its bounding box and natural size, so devicePixelRatio and zoom never matter:
//     x = (clientX - rect.left) * naturalWidth / rect.width
// Layers (mask overlay, point markers, boxes) are placed in percent of the image, so they stay
// on their pixels whatever the display size. The stage has a frame around the image: a click on
// the frame lies outside the image and is sent as it is (the kernel says why it is refused).

export const DRAG_PX = 5; // a press that moves further than this (CSS px) is a drag: a box

export function el(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

export function button(label, title, onClick) {
  const node = el("button", "sam-button", label);
  node.type = "button";
  node.title = title;
  node.addEventListener("click", onClick);
  return node;
}

// Client (CSS) coordinates -> original-image pixels [x, y], continuous (0..W, 0..H inside).
export function toImagePixels(clientX, clientY, img, size) {
  const rect = img.getBoundingClientRect();
  const width = img.naturalWidth || size[0];
  const height = img.naturalHeight || size[1];
  return [((clientX - rect.left) * width) / rect.width, ((clientY - rect.top) * height) / rect.height];
}

export const round2 = (v) => Math.round(v * 100) / 100;

function percent(v, total) {
  return `${(100 * v) / total}%`;
}

// options: onClick([x, y], shiftKey), onBox([x0, y0, x1, y1]) (null: no boxes), size() -> [W, H]
export function createStage({ onClick, onBox = null, size }) {
  const root = el("div", "sam-stage");
  const holder = el("div", "sam-holder");
  const img = el("img", "sam-image");
  img.alt = "image";
  img.draggable = false;
  const overlay = el("img", "sam-overlay");
  overlay.alt = "";
  overlay.hidden = true;
  const marks = el("div", "sam-marks");
  holder.append(img, overlay, marks);
  root.append(holder);

  const clamp = ([x, y]) => {
    const [W, H] = size();
    return [Math.min(Math.max(x, 0), W), Math.min(Math.max(y, 0), H)];
  };
  let press = null; // {clientX, clientY, shift, band}
  root.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    press = { clientX: event.clientX, clientY: event.clientY, shift: event.shiftKey, band: null };
    if (root.setPointerCapture) root.setPointerCapture(event.pointerId);
  });
  root.addEventListener("pointermove", (event) => {
    if (!press || !onBox) return;
    const moved = Math.hypot(event.clientX - press.clientX, event.clientY - press.clientY);
    if (moved < DRAG_PX && !press.band) return;
    press.band = press.band || marks.appendChild(el("div", "sam-box sam-band"));
    placeBox(press.band, boxFrom(press, event));
  });
  const boxFrom = (start, end) => {
    const a = clamp(toImagePixels(start.clientX, start.clientY, img, size()));
    const b = clamp(toImagePixels(end.clientX, end.clientY, img, size()));
    return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])].map(round2);
  };
  root.addEventListener("pointerup", (event) => {
    if (!press) return;
    const start = press;
    press = null;
    if (start.band) {
      start.band.remove();
      onBox(boxFrom(start, event));
    } else {
      onClick(toImagePixels(event.clientX, event.clientY, img, size()).map(round2), start.shift || event.shiftKey);
    }
  });
  root.addEventListener("pointercancel", () => {
    if (press && press.band) press.band.remove();
    press = null;
  });

  function placeBox(node, [x0, y0, x1, y1]) {
    const [W, H] = size();
    Object.assign(node.style, {
      left: percent(x0, W), top: percent(y0, H), width: percent(x1 - x0, W), height: percent(y1 - y0, H),
    });
  }

  return {
    root, img, overlay, marks,
    setImage(url, displayWidth) {
      if (img.getAttribute("src") !== url) img.src = url;
      img.style.width = `${displayWidth}px`;
    },
    setOverlay(url) {
      overlay.hidden = !url;
      if (url && overlay.getAttribute("src") !== url) overlay.src = url;
    },
    // points: [[x, y, label], ...] in image pixels; box: [x0, y0, x1, y1] or null
    drawPrompt(points, box) {
      const [W, H] = size();
      marks.querySelectorAll(".sam-point, .sam-box:not(.sam-band)").forEach((node) => node.remove());
      points.forEach(([x, y, label], i) => {
        const dot = el("div", `sam-point ${label === 1 ? "sam-positive" : "sam-negative"}`);
        dot.title = `point ${i + 1}: (${x}, ${y}) label ${label}`;
        Object.assign(dot.style, { left: percent(x, W), top: percent(y, H) });
        marks.append(dot);
      });
      if (box) placeBox(marks.appendChild(el("div", "sam-box")), box);
    },
  };
}

// The prompt controls every clickable widget shares: a "negative" toggle, undo and reset (sent
// to the kernel through the `command` traitlet), and the clicks -> `points` / `box` handlers.
export function promptControls(model, { onSend = () => {} } = {}) {
  let negative = false;
  const negativeButton = button("negative", "toggle: clicks add background points (or hold shift)", () => {
    negative = !negative;
    negativeButton.setAttribute("aria-pressed", String(negative));
  });
  negativeButton.setAttribute("aria-pressed", "false");
  const command = (name) => () => {
    const count = ((model.get("command") || {}).count || 0) + 1;
    model.set("command", { name, count });
    model.save_changes();
    onSend();
  };
  const undo = button("undo", "take back the last prompt", command("undo"));
  const toolbar = el("div", "sam-toolbar");
  toolbar.append(negativeButton, undo, button("reset", "clear every point, box and mask", command("reset")));
  const send = (name, value) => {
    model.set(name, value);
    model.save_changes();
    onSend();
  };
  return {
    toolbar,
    undo,
    command,
    help: el("div", "sam-help", "click: object · shift-click: background · drag: box"),
    stageOptions: {
      size: () => model.get("image_size"),
      onClick([x, y], shift) {
        send("points", [...model.get("points"), [x, y, shift || negative ? 0 : 1]]);
      },
      onBox(box) {
        send("box", box);
      },
    },
  };
}

// The kernel's answer in words: what it received, and why it refused an input (if it did).
export function kernelLines() {
  const received = el("div", "sam-received");
  const error = el("div", "sam-error");
  error.setAttribute("role", "alert");
  return {
    nodes: [received, error],
    update(model) {
      received.textContent = model.get("received");
      error.textContent = model.get("error");
      error.hidden = !model.get("error");
    },
  };
}

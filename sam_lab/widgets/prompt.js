// prompt.js: the page side of PromptWidget (sam_lab/widgets/prompt.py).
//
// Click = a point on the object (label 1); shift-click, or a click with "negative" on, = a
// background point (label 0); drag = a box. The page only writes the prompt into the `points`
// and `box` traitlets (original-image pixels) and draws what the kernel sends back: the prompt
// it accepted, the candidates' overlays and scores, the latency, or why it refused.
import { button, createStage, el } from "./stage.js";

function render({ model, el: container }) {
  container.classList.add("sam-lab", "sam-prompt");
  let negative = false;
  let sentAt = null; // performance.now() when the last input left the page

  const stage = createStage({
    size: () => model.get("image_size"),
    onClick([x, y], shift) {
      send("points", [...model.get("points"), [x, y, shift || negative ? 0 : 1]]);
    },
    onBox(box) {
      send("box", box);
    },
  });
  function send(name, value) {
    sentAt = performance.now();
    model.set(name, value);
    model.save_changes();
    draw(); // the new point shows at once; the kernel's answer redraws it (or takes it back)
  }
  function command(name) {
    sentAt = performance.now();
    const count = ((model.get("command") || {}).count || 0) + 1;
    model.set("command", { name, count });
    model.save_changes();
  }

  const title = el("div", "sam-title");
  const negativeButton = button("negative", "toggle: clicks add background points (or hold shift)", () => {
    negative = !negative;
    negativeButton.setAttribute("aria-pressed", String(negative));
  });
  negativeButton.setAttribute("aria-pressed", "false");
  const undoButton = button("undo", "take back the last prompt", () => command("undo"));
  const resetButton = button("reset", "clear every point, box and mask", () => command("reset"));
  const toolbar = el("div", "sam-toolbar");
  toolbar.append(negativeButton, undoButton, resetButton);
  const help = el("div", "sam-help", "click: object · shift-click: background · drag: box");
  const candidates = el("div", "sam-candidates");
  const latency = el("div", "sam-latency");
  const received = el("div", "sam-received");
  const error = el("div", "sam-error");
  error.setAttribute("role", "alert");
  const side = el("div", "sam-side");
  side.append(title, toolbar, help, candidates, latency, received, error);
  container.append(stage.root, side);

  function drawCandidates() {
    const scores = model.get("scores");
    const selected = model.get("selected");
    candidates.replaceChildren();
    if (!scores.length) {
      candidates.append(el("div", "sam-muted", "no mask yet: click on the image"));
      return;
    }
    scores.forEach((score, i) => {
      const item = button("", `show candidate ${i}`, () => {
        model.set("selected", i);
        model.save_changes();
        draw();
      });
      item.classList.add("sam-candidate", `sam-color-${i}`);
      item.setAttribute("aria-pressed", String(i === selected));
      item.append(el("span", "sam-swatch"), el("span", "", `mask ${i}: IoU ${score.toFixed(3)}`));
      candidates.append(item);
    });
  }

  function draw() {
    const [W, H] = model.get("image_size");
    title.textContent = `${model.get("model_label")}  ·  image ${W}×${H}`;
    stage.setImage(model.get("image_url"), model.get("display_width"));
    stage.drawPrompt(model.get("points"), model.get("box"));
    const urls = model.get("mask_urls");
    stage.setOverlay(urls[model.get("selected")] || "");
    drawCandidates();
    undoButton.disabled = !model.get("can_undo");
    received.textContent = model.get("received");
    error.textContent = model.get("error");
    error.hidden = !model.get("error");
  }

  function answered() {
    // the kernel handled an input: show how long the model took and the whole round trip
    const parts = [];
    if (model.get("encode_ms")) parts.push(`encoder ${model.get("encode_ms").toFixed(0)} ms (once per image)`);
    if (model.get("scores").length) {
      parts.push(`predict ${model.get("latency_ms").toFixed(1)} ms${model.get("refined") ? " (refined with previous mask)" : ""}`);
    }
    if (sentAt !== null) parts.push(`round trip ${(performance.now() - sentAt).toFixed(0)} ms`);
    latency.textContent = parts.join(" · ");
    sentAt = null;
    draw();
    container.dataset.revision = String(model.get("revision")); // tests wait on this
  }

  model.on("change:revision", answered);
  for (const name of ["image_url", "display_width", "model_label", "mask_urls", "selected", "error"]) {
    model.on(`change:${name}`, draw);
  }
  answered();
  return () => {
    model.off("change:revision", answered);
  };
}

export default { render };

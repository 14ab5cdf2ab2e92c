// prompt.js: the page side of PromptWidget (sam_lab/widgets/prompt.py).
//
// Click = a point on the object (label 1); shift-click, or a click with "negative" on, = a
// background point (label 0); drag = a box. The page only writes the prompt into the `points`
// and `box` traitlets (original-image pixels) and draws what the kernel sends back: the prompt
// it accepted, the candidates' overlays and scores, the latency, or why it refused.
import { button, createStage, el, kernelLines, promptControls } from "./stage.js";

function render({ model, el: container }) {
  container.classList.add("sam-lab", "sam-prompt");
  let sentAt = null; // performance.now() when the last input left the page
  const controls = promptControls(model, {
    onSend() {
      sentAt = performance.now();
      draw(); // a new point shows at once; the kernel's answer redraws it (or takes it back)
    },
  });
  const stage = createStage(controls.stageOptions);
  const title = el("div", "sam-title");
  const undoButton = controls.undo;
  const candidates = el("div", "sam-candidates");
  const latency = el("div", "sam-latency");
  const kernel = kernelLines();
  const side = el("div", "sam-side");
  side.append(title, controls.toolbar, controls.help, candidates, latency, ...kernel.nodes);
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
    kernel.update(model);
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

// compare.js: the page side of CompareWidget (sam_lab/widgets/compare.py).
//
// One stage per model, side by side. A click (or shift-click, or drag) on any of them writes the
// prompt into `points` / `box`, in original-image pixels; the kernel runs every model and sends
// each panel's status, encoder progress, timings, scores and best-mask overlay back.
import { createStage, el, kernelLines, promptControls } from "./stage.js";

function render({ model, el: container }) {
  container.classList.add("sam-lab", "sam-compare");
  const controls = promptControls(model, { onSend: () => draw() });
  const header = el("div", "sam-side");
  const kernel = kernelLines();
  header.append(el("div", "sam-title", "the same clicks, every model"), controls.toolbar, controls.help, ...kernel.nodes);
  const grid = el("div", "sam-lab");
  container.append(header, grid);

  const views = []; // one {stage, title, badge, status, progress, scores, timing, error} per panel
  function build() {
    grid.replaceChildren();
    views.length = 0;
    for (const panel of model.get("panels")) {
      const root = el("div", "sam-panel");
      root.dataset.model = panel.key;
      const title = el("div", "sam-title", panel.key);
      const badge = el("span", "sam-badge");
      title.append(" ", badge);
      const view = {
        root, badge, stage: createStage(controls.stageOptions), parameters: el("div", "sam-muted"),
        status: el("div", "sam-status"), progress: el("progress", "sam-progress"),
        scores: el("div", "sam-scores"), timing: el("div", "sam-latency"), error: el("div", "sam-error"),
      };
      view.progress.max = 1;
      root.append(title, view.parameters, view.stage.root, view.status, view.progress, view.scores, view.timing, view.error);
      grid.append(root);
      views.push(view);
    }
  }

  function draw() {
    const panels = model.get("panels");
    if (views.length !== panels.length) build();
    const urls = model.get("mask_urls");
    panels.forEach((panel, i) => {
      const view = views[i];
      view.badge.textContent = panel.trained === false ? "untrained" : panel.weights;
      view.badge.classList.toggle("sam-untrained", panel.trained === false);
      view.badge.title = panel.weights;
      view.parameters.textContent = panel.key === panel.name ? panel.parameters : `${panel.name} · ${panel.parameters}`;
      view.stage.setImage(model.get("image_url"), model.get("display_width"));
      view.stage.drawPrompt(model.get("points"), model.get("box"));
      view.stage.setOverlay(urls[i] || "");
      view.status.textContent = panel.status;
      view.progress.hidden = panel.progress === null;
      if (panel.progress !== null) view.progress.value = panel.progress;
      view.scores.replaceChildren();
      panel.scores.forEach((score, k) => {
        const item = el("span", k === panel.selected ? "sam-best" : "", `IoU ${score.toFixed(3)}`);
        view.scores.append(item, k < panel.scores.length - 1 ? " · " : "");
      });
      const timing = [];
      if (panel.encoder) timing.push(`encoder ${panel.encoder}`);
      if (panel.decoder) timing.push(`decoder ${panel.decoder}`);
      view.timing.textContent = timing.join(" · ");
      view.error.textContent = panel.error;
      view.error.hidden = !panel.error;
    });
    kernel.update(model);
    container.dataset.revision = String(model.get("revision")); // tests wait on this
  }

  for (const name of ["panels", "mask_urls", "revision", "image_url", "display_width", "error"]) {
    model.on(`change:${name}`, draw);
  }
  draw();
}

export default { render };

// everything.js: the page side of EverythingWidget (sam_lab/widgets/everything.py).
//
// "segment everything" asks the kernel to run the mask generator (through the `command`
// traitlet); a click on the image is sent as `points` and selects the smallest mask under it.
// The page draws what the kernel sends back: one overlay with every mask, the selected record,
// and how many candidates each of the generator's stages kept.
import { button, createStage, el, kernelLines } from "./stage.js";

const STAGES = [
  ["candidates", "candidates"],
  ["passed_iou", "predicted IoU"],
  ["passed_stability", "stability"],
  ["passed_crop_edge", "crop edge"],
  ["after_nms", "NMS"],
  ["final", "final"],
];

function render({ model, el: container }) {
  container.classList.add("sam-lab", "sam-everything");
  let sentAt = null;
  const send = (name, value) => {
    model.set(name, value);
    model.save_changes();
    sentAt = performance.now();
  };
  const command = (name) => () => send("command", { name, count: ((model.get("command") || {}).count || 0) + 1 });
  const stage = createStage({
    size: () => model.get("image_size"),
    onClick([x, y]) {
      send("points", [[x, y, 1]]);
    },
  });
  const title = el("div", "sam-title");
  const toolbar = el("div", "sam-toolbar");
  const run = button("segment everything", "run the automatic mask generator on this image", command("generate"));
  toolbar.append(run, button("reset", "clear the selection", command("reset")));
  const help = el("div", "sam-help", "segment everything, then click a mask to read its record");
  const count = el("div", "sam-count");
  const stages = el("div", "sam-stages");
  const record = el("pre", "sam-record");
  const latency = el("div", "sam-latency");
  const kernel = kernelLines();
  const side = el("div", "sam-side");
  side.append(title, toolbar, help, count, stages, record, latency, ...kernel.nodes);
  container.append(stage.root, side);

  function draw() {
    const [W, H] = model.get("image_size");
    title.textContent = `${model.get("model_label")}  ·  image ${W}×${H}`;
    stage.setImage(model.get("image_url"), model.get("display_width"));
    stage.setOverlay(model.get("overlay_url"));
    const stats = model.get("stats");
    if (!model.get("generated")) {
      count.textContent = "no masks yet: press \u201csegment everything\u201d";
    } else {
      const best = stats.best_predicted_iou === undefined ? "" : ` (best predicted IoU ${stats.best_predicted_iou.toFixed(3)})`;
      count.textContent = `${model.get("count")} masks${model.get("count") ? "" : best}`;
    }
    stages.textContent = model.get("generated") ? STAGES.map(([key, label]) => `${label} ${stats[key]}`).join(" \u2192 ") : "";
    const chosen = model.get("record");
    record.hidden = !Object.keys(chosen).length;
    record.textContent = record.hidden ? "" : `mask ${model.get("selected")}\n` + Object.entries(chosen)
      .map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join("\n");
    kernel.update(model);
  }

  function answered() {
    const parts = [];
    if (model.get("generated")) parts.push(`generate ${model.get("generate_ms").toFixed(0)} ms`);
    if (sentAt !== null) parts.push(`round trip ${(performance.now() - sentAt).toFixed(0)} ms`);
    latency.textContent = parts.join(" \u00b7 ");
    sentAt = null;
    draw();
    container.dataset.revision = String(model.get("revision")); // tests wait on this
  }

  model.on("change:revision", answered);
  for (const name of ["image_url", "display_width", "model_label", "overlay_url", "record", "error"]) {
    model.on(`change:${name}`, draw);
  }
  answered();
  return () => {
    model.off("change:revision", answered);
  };
}

export default { render };

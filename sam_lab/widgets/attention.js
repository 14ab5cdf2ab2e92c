// attention.js: the page side of AttentionExplorer (sam_lab/widgets/attention.py).
//
// Click (shift-click, drag) to prompt, as in the prompt widget. Pick one of the two-way
// transformer's attentions, a head (or their mean) and a token: the kernel sends the weights as a
// heat map over the image (token -> image, image -> token) or as bars over the tokens
// (token -> token).
import { createStage, el, kernelLines, promptControls } from "./stage.js";

function select(title, onChange) {
  const label = el("label", "sam-muted", `${title} `);
  const node = el("select");
  node.setAttribute("aria-label", title);
  node.addEventListener("change", () => onChange(node.value));
  label.append(node);
  return { label, node };
}

function fill(node, options, value) {
  const wanted = options.map(([v, text]) => `${v}\u0000${text}`).join("\u0001");
  if (node.dataset.options !== wanted) {
    node.replaceChildren(...options.map(([v, text]) => Object.assign(el("option", "", text), { value: String(v) })));
    node.dataset.options = wanted;
  }
  node.value = String(value);
}

function render({ model, el: container }) {
  container.classList.add("sam-lab", "sam-attention");
  const controls = promptControls(model, { onSend: () => draw() });
  const stage = createStage(controls.stageOptions);
  const heat = el("img", "sam-heat");
  heat.alt = "";
  stage.overlay.after(heat);
  const choose = (name, parse) => (value) => {
    model.set(name, parse(value));
    model.save_changes();
  };
  const layer = select("layer", choose("layer", String));
  const head = select("head", choose("head", Number));
  const token = select("token", choose("token", Number));
  const pickers = el("div", "sam-controls");
  pickers.append(layer.label, head.label, token.label);
  const stats = el("div", "sam-stats");
  const bars = el("div", "sam-tokens");
  const kernel = kernelLines();
  const side = el("div", "sam-side");
  side.append(el("div", "sam-title", "two-way attention"), controls.toolbar, controls.help, pickers, stats, bars,
    ...kernel.nodes);
  container.append(stage.root, side);

  function draw() {
    stage.setImage(model.get("image_url"), model.get("display_width"));
    stage.drawPrompt(model.get("points"), model.get("box"));
    const url = model.get("map_url");
    heat.hidden = !url;
    if (url) heat.src = url;
    const layers = model.get("layers");
    fill(layer.node, layers.map(({ name, kind }) => [name, `${name.replace("two_way.", "")} (${kind})`]), model.get("layer"));
    const heads = [[-1, "mean of heads"]];
    for (let h = 0; h < model.get("heads"); h++) heads.push([h, `head ${h}`]);
    fill(head.node, heads, model.get("head"));
    fill(token.node, model.get("tokens").map((name, i) => [i, `${i}: ${name}`]), model.get("token"));
    for (const { node } of [layer, head, token]) node.disabled = !layers.length;
    stats.textContent = model.get("stats");
    bars.replaceChildren();
    const tokens = model.get("tokens");
    model.get("token_weights").forEach((weight, i) => {
      const row = el("div", "sam-muted", `${tokens[i] || i}: ${weight.toFixed(3)} `);
      const bar = el("span", "sam-token-bar");
      bar.style.width = `${Math.round(120 * weight)}px`;
      row.prepend(bar, " ");
      bars.append(row);
    });
    kernel.update(model);
    container.dataset.revision = String(model.get("revision")); // tests wait on this
  }

  model.on("change:revision", draw);
  draw();
}

export default { render };

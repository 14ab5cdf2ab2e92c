// prompt.js: the page side of PromptWidget (sam_lab/widgets/prompt.py).
//
// Click = a point on the object (label 1); shift-click, or a click with "negative" on, = a
// background point (label 0); drag = a box; for a model with a text path, a caption typed in the
// text box (Enter or "segment"). The page only writes the prompt into the `points`, `box` and
// `text` traitlets (original-image pixels) and draws what the kernel sends back: the prompt it
// accepted, the candidates' overlays and scores, the latency, or why it refused.
import { button, createStage, el, kernelLines, promptControls } from "./stage.js";

// The caption box: Enter or "segment" writes the `text` traitlet ("" removes the text prompt).
// After the kernel's answer the box shows the caption it kept: a refused one snaps back, and a
// caption being typed is left alone while clicks are answered.
function textBox(model, onSend) {
  const row = el("div", "sam-text");
  const input = el("input", "sam-text-input");
  input.type = "text";
  input.placeholder = "a caption, e.g. red pentagon";
  input.setAttribute("aria-label", "text prompt");
  let shown = null; // the kernel's caption the box last showed (null: none yet)
  let sent = false;
  const submit = () => {
    if (input.value === model.get("text")) return; // the prompt already has this caption
    model.set("text", input.value);
    model.save_changes();
    sent = true;
    onSend();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      submit();
    }
  });
  row.append(input, button("segment", "prompt with this caption (or press Enter)", submit));
  return {
    row,
    answered() {
      const text = model.get("text");
      if (sent || text !== shown) input.value = text;
      shown = text;
      sent = false;
    },
  };
}

// Save `href` as a file called `name`, from the browser (no kernel file system involved).
function saveFile(href, name) {
  const link = el("a");
  link.href = href;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
}

// "download PNG" / "download RLE": ask the kernel for the chosen mask (command "download"), then
// save the format asked for when `download` arrives.
function downloadButtons(model, command) {
  let wanted = null; // "png" | "rle" while a download is on its way
  const ask = (format) => () => {
    wanted = format;
    command("download")();
  };
  const png = button("download PNG", "save the chosen mask as a black-and-white PNG", ask("png"));
  const rle = button("download RLE", "save the chosen mask as COCO RLE (JSON)", ask("rle"));
  png.classList.add("sam-download");
  rle.classList.add("sam-download");
  const row = el("div", "sam-toolbar");
  row.append(png, rle);
  model.on("change:download", () => {
    const data = model.get("download") || {};
    if (!wanted || !data.png) return;
    if (wanted === "png") saveFile(data.png, `${data.name}.png`);
    else saveFile(URL.createObjectURL(new Blob([data.rle], { type: "application/json" })), `${data.name}.rle.json`);
    wanted = null;
  });
  return {
    row,
    update(hasMask) {
      png.disabled = rle.disabled = !hasMask;
    },
  };
}

// The toggle between SAM's default (3 candidates for one point, one mask for several prompts)
// and 3 candidates for every prompt: writes `always_three`.
function candidatesToggle(model, onSend) {
  const label = el("label", "sam-toggle");
  const box = el("input");
  box.type = "checkbox";
  box.addEventListener("change", () => {
    model.set("always_three", box.checked);
    model.save_changes();
    onSend();
  });
  label.append(box, " 3 candidates for every prompt");
  label.title = "off: 3 candidates for one point, one mask once there are several prompts (as SAM)";
  return { label, update: () => (box.checked = model.get("always_three")) };
}

// The prompt in words, e.g. "prompt: 2 points + box + text “red pentagon”".
function describePrompt(points, box, text) {
  const parts = [];
  if (points.length) parts.push(`${points.length} point${points.length === 1 ? "" : "s"}`);
  if (box) parts.push("box");
  if (text) parts.push(`text “${text}”`);
  return `prompt: ${parts.join(" + ") || "none"}`;
}

function render({ model, el: container }) {
  container.classList.add("sam-lab", "sam-prompt");
  let sentAt = null; // performance.now() when the last input left the page
  const onSend = () => {
    sentAt = performance.now();
    draw(); // a new point shows at once; the kernel's answer redraws it (or takes it back)
  };
  const controls = promptControls(model, { onSend });
  const stage = createStage(controls.stageOptions);
  const text = textBox(model, onSend);
  const title = el("div", "sam-title");
  const summary = el("div", "sam-summary");
  const undoButton = controls.undo;
  const candidates = el("div", "sam-candidates");
  const latency = el("div", "sam-latency");
  const kernel = kernelLines();
  const toggle = candidatesToggle(model, onSend);
  const downloads = downloadButtons(model, controls.command);
  const side = el("div", "sam-side");
  side.append(title, controls.toolbar, controls.help, text.row, summary, toggle.label, candidates, downloads.row,
    latency, ...kernel.nodes);
  container.append(stage.root, side);

  function drawCandidates() {
    const scores = model.get("scores");
    const selected = model.get("selected");
    candidates.replaceChildren();
    if (!scores.length) {
      const hint = model.get("has_text") ? "click on the image or type a caption" : "click on the image";
      candidates.append(el("div", "sam-muted", `no mask yet: ${hint}`));
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
    text.row.hidden = !model.get("has_text");
    summary.textContent = describePrompt(model.get("points"), model.get("box"), model.get("text"));
    const urls = model.get("mask_urls");
    stage.setOverlay(urls[model.get("selected")] || "");
    drawCandidates();
    undoButton.disabled = !model.get("can_undo");
    toggle.update();
    downloads.update(model.get("scores").length > 0);
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
    text.answered();
    draw();
    container.dataset.revision = String(model.get("revision")); // tests wait on this
  }

  model.on("change:revision", answered);
  for (const name of ["image_url", "display_width", "model_label", "mask_urls", "selected", "error", "has_text", "always_three"]) {
    model.on(`change:${name}`, draw);
  }
  answered();
  return () => {
    model.off("change:revision", answered);
  };
}

export default { render };

// positional.js: the page side of PositionalEncodingExplorer (sam_lab/widgets/positional.py).
//
// Each map is a PNG with one pixel per grid cell, shown large with crisp pixels. A click maps
// to the PNG's own pixels, which are the grid's cells: (row, col) = floor of (y, x).
import { el, kernelLines, toImagePixels } from "./stage.js";

function render({ model, el: container }) {
  container.classList.add("sam-lab", "sam-positional");
  const views = {};
  const kernel = kernelLines();

  for (const kind of Object.keys(model.get("grids"))) {
    const panel = el("div", "sam-panel");
    panel.dataset.kind = kind;
    const holder = el("div", "sam-holder");
    const img = el("img", "sam-image sam-grid-image");
    img.alt = `${kind} similarity map`;
    img.draggable = false;
    const marker = el("div", "sam-point sam-positive");
    const marks = el("div", "sam-marks");
    marks.append(marker);
    holder.append(img, marks);
    const stage = el("div", "sam-stage");
    stage.append(holder);
    const note = el("div", "sam-muted");
    panel.append(el("div", "sam-title", kind === "fourier" ? "random Fourier features" : "learned absolute (pos_embed)"), stage, note);
    container.append(panel);
    stage.addEventListener("click", (event) => {
      const [h, w] = model.get("grids")[kind];
      const [x, y] = toImagePixels(event.clientX, event.clientY, img, [w, h]);
      const [fh, fw] = model.get("grids").fourier;
      // in the Fourier grid's cells (the same grid in SAM); outside the map is sent as it is
      model.set("position", [Math.floor((y * fh) / h), Math.floor((x * fw) / w)]);
      model.save_changes();
    });
    views[kind] = { img, marker, note };
  }
  const side = el("div", "sam-side");
  side.append(el("div", "sam-title", "click a position: cosine similarity of its code with every other"),
    el("div", "sam-muted", "red: alike (1) · white: unrelated (0) · blue: opposite (-1)"), ...kernel.nodes);
  container.append(side);

  function draw() {
    const [row, col] = model.get("position");
    const [fh, fw] = model.get("grids").fourier;
    for (const [kind, view] of Object.entries(views)) {
      view.img.src = model.get("maps")[kind] || "";
      view.img.style.width = `${model.get("display_width")}px`;
      view.marker.style.left = `${(100 * (col + 0.5)) / fw}%`;
      view.marker.style.top = `${(100 * (row + 0.5)) / fh}%`;
      view.note.textContent = model.get("notes")[kind] || "";
    }
    kernel.update(model);
    container.dataset.revision = String(model.get("revision"));
  }
  model.on("change:revision", draw);
  draw();
}

export default { render };

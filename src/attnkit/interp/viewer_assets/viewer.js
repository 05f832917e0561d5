// attnkit attention viewer. Reads the JSON data block #attnkit-data, unpacks the 8-bit
// log-scale weight codes (deflated) and draws the head view, the pattern
// grid and, when there is cross-attention, the alignment. Every token string reaches the
// page through textContent (or canvas text), never as markup.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const HEAD_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
  const MEAN = -1;
  const ROW_PX = 16;          // token row height of the head view
  const MAX_CANVAS_PX = 32000; // browsers refuse taller canvases
  const GRID_PX = 240;        // longest side of a grid thumbnail
  const FOCUS_PX = 720;       // a focus heatmap grows its cells up to this size
  const LABEL_MIN_CELL = 10;  // token labels beside a heatmap from this cell size on

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function shown(token) {
    // control characters would break the one-line layout; show them as symbols
    if (token === "") return "\u2205";
    return token.replace(/\n/g, "\u23ce").replace(/\r/g, "\u240d").replace(/\t/g, "\u21e5");
  }

  function headColor(h) {
    return h === MEAN ? "#08306b" : HEAD_COLORS[h % HEAD_COLORS.length];
  }

  // ------------------------------------------------------------------ data
  async function unpack(data) {
    if (typeof DecompressionStream === "undefined") {
      throw new Error("this browser has no DecompressionStream, which the viewer needs " +
                      "to unpack the weights; open the file in a current browser");
    }
    const text = atob(data.blob);
    const packed = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) packed[i] = text.charCodeAt(i);
    const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("deflate"));
    const codes = new Uint8Array(await new Response(stream).arrayBuffer());
    let expected = 0;
    for (const layer of data.layers) expected += layer.heads * layer.rows * layer.cols;
    if (codes.length !== expected) {
      throw new Error("weight data has " + codes.length + " codes, expected " + expected);
    }
    for (const layer of data.layers) {
      layer.codes = codes.subarray(layer.offset, layer.offset + layer.heads * layer.rows * layer.cols);
    }
    const table = new Float32Array(256);
    const logFloor = Math.log10(data.floor);
    for (let c = 1; c < 256; c++) table[c] = Math.pow(10, logFloor * (1 - (c - 1) / 254));
    return table;
  }

  const cache = new Map();

  function weights(data, table, li, head) {
    // (rows * cols) Float32Array of one head, or of the mean over heads
    const key = li + ":" + head;
    if (cache.has(key)) return cache.get(key);
    const layer = data.layers[li];
    const size = layer.rows * layer.cols;
    const out = new Float32Array(size);
    if (head === MEAN) {
      for (let h = 0; h < layer.heads; h++) {
        const codes = layer.codes.subarray(h * size, (h + 1) * size);
        for (let i = 0; i < size; i++) out[i] += table[codes[i]];
      }
      for (let i = 0; i < size; i++) out[i] /= layer.heads;
    } else {
      const codes = layer.codes.subarray(head * size, (head + 1) * size);
      for (let i = 0; i < size; i++) out[i] = table[codes[i]];
    }
    if (cache.size > 24) cache.delete(cache.keys().next().value);
    cache.set(key, out);
    return out;
  }

  function formatWeight(w, floor) {
    if (w <= 0) return "< " + floor;
    if (w < floor) return "< " + floor;
    return w >= 0.1 ? w.toFixed(2) : w.toPrecision(2);
  }

  // ------------------------------------------------------------------ tooltip
  function showTooltip(event, parts) {
    const tip = $("tooltip");
    tip.replaceChildren();
    for (const [text, isToken] of parts) tip.append(el("span", isToken ? "t" : "", text));
    tip.style.display = "block";
    const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 4);
    tip.style.left = Math.max(0, x) + "px";
    tip.style.top = (event.clientY + 14) + "px";
  }

  function hideTooltip() { $("tooltip").style.display = "none"; }

  function pairParts(data, layer, i, j, w, prefix) {
    const q = data.sequences[layer.queries], k = data.sequences[layer.keys];
    return [[prefix + q.name + " [" + i + "] ", false], [shown(q.tokens[i]), true],
            [" \u2192 " + k.name + " [" + j + "] ", false], [shown(k.tokens[j]), true],
            [" : " + formatWeight(w, data.floor), false]];
  }

  // ------------------------------------------------------------------ heatmaps
  function intensity(w, scale, logFloor) {
    if (scale === "log") return w <= 0 ? 0 : Math.max(0, 1 - Math.log10(w) / logFloor);
    return Math.min(1, w);
  }

  function paint(canvas, w, rows, cols, scale, logFloor) {
    canvas.width = cols;
    canvas.height = rows;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(cols, rows);
    const px = image.data;
    for (let i = 0; i < rows * cols; i++) {
      const t = intensity(w[i], scale, logFloor);
      px[4 * i] = Math.round(255 - t * 247);
      px[4 * i + 1] = Math.round(255 - t * 207);
      px[4 * i + 2] = Math.round(255 - t * 148);
      px[4 * i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
  }

  function hoverCell(canvas, layer, onCell) {
    canvas.addEventListener("mousemove", (event) => {
      const rect = canvas.getBoundingClientRect();
      const i = Math.floor((event.clientY - rect.top) / rect.height * layer.rows);
      const j = Math.floor((event.clientX - rect.left) / rect.width * layer.cols);
      if (i < 0 || j < 0 || i >= layer.rows || j >= layer.cols) { hideTooltip(); return; }
      onCell(event, i, j);
    });
    canvas.addEventListener("mouseleave", hideTooltip);
  }

  // A heatmap at full resolution, cells grown up to FOCUS_PX, token labels when they fit.
  function focusHeatmap(container, data, table, li, head, scale, prefix) {
    const layer = data.layers[li];
    const w = weights(data, table, li, head);
    const logFloor = Math.log10(data.floor);
    const cell = Math.max(1, Math.floor(FOCUS_PX / Math.max(layer.rows, layer.cols)));
    const canvas = el("canvas", "heat");
    paint(canvas, w, layer.rows, layer.cols, scale, logFloor);
    canvas.style.width = layer.cols * cell + "px";
    canvas.style.height = layer.rows * cell + "px";
    hoverCell(canvas, layer, (event, i, j) =>
      showTooltip(event, pairParts(data, layer, i, j, w[i * layer.cols + j], prefix)));
    const wrap = el("div", "heatwrap");
    const labels = cell >= LABEL_MIN_CELL;
    wrap.append(el("div"));
    const top = el("div", "collabels");
    const left = el("div", "rowlabels");
    if (labels) {
      for (const token of data.sequences[layer.keys].tokens) {
        const span = el("span", "", shown(token));
        span.style.width = cell + "px";
        span.style.lineHeight = cell + "px";
        top.append(span);
      }
      for (const token of data.sequences[layer.queries].tokens) {
        const span = el("span", "", shown(token));
        span.style.height = cell + "px";
        span.style.lineHeight = cell + "px";
        left.append(span);
      }
    }
    wrap.append(top, left, canvas);
    const scroll = el("div", "heatscroll");
    scroll.append(wrap);
    container.replaceChildren(scroll);
    return canvas;
  }

  // ------------------------------------------------------------------ the page
  function fillHeadSelect(select, heads, current) {
    select.replaceChildren();
    if (heads > 1) {
      const mean = el("option", "", "mean of " + heads + " heads");
      mean.value = String(MEAN);
      select.append(mean);
    }
    for (let h = 0; h < heads; h++) {
      const option = el("option", "", "head " + h);
      option.value = String(h);
      select.append(option);
    }
    const keep = current < heads && (current !== MEAN || heads > 1) ? current : (heads > 1 ? MEAN : 0);
    select.value = String(keep);
    return keep;
  }

  function describe(data, layer) {
    const q = data.sequences[layer.queries].name, k = data.sequences[layer.keys].name;
    const what = layer.queries === layer.keys ? "self-attention over " + q :
      "cross-attention: " + q + " (queries) \u2192 " + k + " (keys)";
    return layer.name + ": " + what + ", " + layer.heads + " head" +
      (layer.heads > 1 ? "s" : "") + ", " + layer.rows + " \u00d7 " + layer.cols;
  }

  function start(data, table) {
    const state = { layer: 0, head: MEAN, minWeight: 0.01, scale: "linear", hover: null };
    const layerSelect = $("layer"), headSelect = $("head");
    data.layers.forEach((layer, li) => {
      const option = el("option", "", layer.name + (layer.queries === layer.keys ? "" : " (cross)"));
      option.value = String(li);
      layerSelect.append(option);
    });
    for (const note of data.notes) $("notes").append(el("p", "note", note));

    // -------------------------------------------------------------- head view
    const canvas = $("hv-canvas"), leftCol = $("hv-left"), rightCol = $("hv-right");
    let leftTokens = [], rightTokens = [], rowPx = ROW_PX;

    function buildTokens() {
      const layer = data.layers[state.layer];
      const q = data.sequences[layer.queries].tokens, k = data.sequences[layer.keys].tokens;
      rowPx = Math.max(2, Math.min(ROW_PX, Math.floor(MAX_CANVAS_PX / Math.max(q.length, k.length))));
      const column = (node, tokens, side) => {
        const spans = tokens.map((token, index) => {
          const span = el("div", "tok", shown(token));
          span.style.height = rowPx + "px";
          span.style.lineHeight = rowPx + "px";
          span.style.fontSize = Math.min(12, rowPx - 2) + "px";
          span.addEventListener("mouseenter", () => { state.hover = [side, index]; drawHeadView(); });
          span.addEventListener("mouseleave", () => { state.hover = null; drawHeadView(); });
          return span;
        });
        node.replaceChildren(...spans);
        return spans;
      };
      leftTokens = column(leftCol, q, "q");
      rightTokens = column(rightCol, k, "k");
      $("headview-describe").textContent = describe(data, layer);
    }

    function drawHeadView() {
      const layer = data.layers[state.layer];
      const w = weights(data, table, state.layer, state.head);
      const width = 260, dpr = window.devicePixelRatio || 1;
      const height = Math.max(layer.rows, layer.cols) * rowPx;
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.min(MAX_CANVAS_PX, Math.round(height * dpr));
      canvas.style.width = width + "px";
      canvas.style.height = height + "px";
      const ctx = canvas.getContext("2d");
      ctx.setTransform(canvas.height / height, 0, 0, canvas.height / height, 0, 0);
      ctx.clearRect(0, 0, width, height);
      ctx.strokeStyle = headColor(state.head);
      ctx.lineWidth = 1.5;
      const hover = state.hover;
      // a hovered token keeps its own lines only, scaled so that its strongest is opaque
      let gain = 1;
      if (hover) {
        let peak = 0;
        const [side, index] = hover;
        const count = side === "q" ? layer.cols : layer.rows;
        for (let o = 0; o < count; o++) {
          peak = Math.max(peak, side === "q" ? w[index * layer.cols + o] : w[o * layer.cols + index]);
        }
        gain = peak > 0 ? 1 / peak : 1;
      }
      const threshold = hover ? data.floor : state.minWeight;
      // one path per opacity bucket: thousands of lines stay one stroke call each
      const buckets = Array.from({ length: 20 }, () => new Path2D());
      const y = (index) => (index + 0.5) * rowPx;
      for (let i = 0; i < layer.rows; i++) {
        if (hover && hover[0] === "q" && i !== hover[1]) continue;
        for (let j = 0; j < layer.cols; j++) {
          if (hover && hover[0] === "k" && j !== hover[1]) continue;
          const v = w[i * layer.cols + j];
          if (v < threshold || v <= 0) continue;
          const bucket = Math.min(19, Math.floor(v * gain * 20));
          buckets[bucket].moveTo(0, y(i));
          buckets[bucket].lineTo(width, y(j));
        }
      }
      buckets.forEach((path, b) => {
        ctx.globalAlpha = Math.min(1, (b + 1) / 20);
        ctx.stroke(path);
      });
      ctx.globalAlpha = 1;
      for (const span of leftTokens) { span.style.background = ""; span.classList.remove("active"); }
      for (const span of rightTokens) { span.style.background = ""; span.classList.remove("active"); }
      if (hover) {
        const [side, index] = hover;
        (side === "q" ? leftTokens : rightTokens)[index].classList.add("active");
        const others = side === "q" ? rightTokens : leftTokens;
        others.forEach((span, other) => {
          const v = side === "q" ? w[index * layer.cols + other] : w[other * layer.cols + index];
          const t = Math.min(1, v * gain);
          if (v > 0) span.style.background = "rgba(8, 48, 107, " + (0.85 * t).toFixed(3) + ")";
          span.style.color = t > 0.55 ? "#fff" : "";
        });
      } else {
        for (const span of [...leftTokens, ...rightTokens]) span.style.color = "";
      }
    }

    // -------------------------------------------------------------- pattern grid
    function drawGrid() {
      const layer = data.layers[state.layer];
      const logFloor = Math.log10(data.floor);
      const scale = Math.max(1, Math.floor(GRID_PX / Math.max(layer.rows, layer.cols)));
      const shrink = Math.min(1, GRID_PX / Math.max(layer.rows, layer.cols));
      const figures = [];
      const heads = layer.heads > 1 ? [...Array(layer.heads).keys(), MEAN] : [0];
      for (const h of heads) {
        const figure = el("figure");
        figure.dataset.head = String(h);
        if (h === state.head) figure.classList.add("selected");
        const heat = el("canvas", "heat");
        const w = weights(data, table, state.layer, h);
        paint(heat, w, layer.rows, layer.cols, state.scale, logFloor);
        heat.style.width = Math.max(1, Math.round(layer.cols * scale * shrink)) + "px";
        heat.style.height = Math.max(1, Math.round(layer.rows * scale * shrink)) + "px";
        const label = h === MEAN ? "mean" : "head " + h;
        hoverCell(heat, layer, (event, i, j) =>
          showTooltip(event, pairParts(data, layer, i, j, w[i * layer.cols + j], label + ": ")));
        figure.addEventListener("click", () => selectHead(h));
        figure.append(heat, el("figcaption", "", label));
        figures.push(figure);
      }
      $("grid").replaceChildren(...figures);
      const label = state.head === MEAN ? "mean of heads" : "head " + state.head;
      $("focus-title").textContent = "Selected: " + layer.name + ", " + label;
      focusHeatmap($("focus"), data, table, state.layer, state.head, state.scale, label + ": ");
    }

    function drawAll() {
      drawHeadView();
      drawGrid();
    }

    function selectLayer(li) {
      state.layer = li;
      layerSelect.value = String(li);
      state.head = fillHeadSelect(headSelect, data.layers[li].heads, state.head);
      state.hover = null;
      buildTokens();
      drawAll();
    }

    function selectHead(h) {
      state.head = h;
      headSelect.value = String(h);
      drawAll();
    }

    layerSelect.addEventListener("change", () => selectLayer(Number(layerSelect.value)));
    headSelect.addEventListener("change", () => selectHead(Number(headSelect.value)));
    $("minweight").addEventListener("change", () => {
      const value = Number($("minweight").value);
      state.minWeight = Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0.01;
      drawHeadView();
    });
    $("scale").addEventListener("change", () => {
      state.scale = $("scale").value === "log" ? "log" : "linear";
      drawGrid();
      drawAlignment();
    });

    // -------------------------------------------------------------- alignment
    const cross = data.layers.map((layer, li) => [layer, li])
      .filter(([layer]) => layer.queries !== layer.keys).map(([, li]) => li);
    const alignLayer = $("align-layer"), alignHead = $("align-head");
    let alignState = { layer: cross.length ? cross[cross.length - 1] : -1, head: MEAN };

    function drawAlignment() {
      if (alignState.layer < 0) return;
      const layer = data.layers[alignState.layer];
      $("align-describe").textContent = describe(data, layer);
      const label = alignState.head === MEAN ? "mean" : "head " + alignState.head;
      focusHeatmap($("align"), data, table, alignState.layer, alignState.head, state.scale,
                   label + ": ");
    }

    if (cross.length) {
      $("align-section").hidden = false;
      for (const li of cross) {
        const option = el("option", "", data.layers[li].name);
        option.value = String(li);
        alignLayer.append(option);
      }
      alignLayer.value = String(alignState.layer);
      alignState.head = fillHeadSelect(alignHead, data.layers[alignState.layer].heads, MEAN);
      alignLayer.addEventListener("change", () => {
        alignState.layer = Number(alignLayer.value);
        alignState.head = fillHeadSelect(alignHead, data.layers[alignState.layer].heads,
                                         alignState.head);
        drawAlignment();
      });
      alignHead.addEventListener("change", () => {
        alignState.head = Number(alignHead.value);
        drawAlignment();
      });
    }

    selectLayer(0);
    drawAlignment();
    window.attnkitViewer = { state, selectLayer, selectHead };
  }

  async function main() {
    try {
      const data = JSON.parse($("attnkit-data").textContent);
      const table = await unpack(data);
      start(data, table);
      document.body.dataset.ready = "1";
    } catch (error) {
      $("error").textContent = "The viewer could not start: " + error.message;
      document.body.dataset.ready = "error";
      console.error(error);
    }
  }

  main();
})();

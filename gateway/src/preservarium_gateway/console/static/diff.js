// A line diff (longest common subsequence) between two parser versions, shown as a
// unified diff with three lines of context around each change.

const MAX_CELLS = 4000000; // beyond this the table would be too large for a browser tab

/** [{op: " "|"+"|"-", text}] turning `before` into `after`. */
export function diffLines(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  if (a.length * b.length > MAX_CELLS) {
    return [...a.map((text) => ({ op: "-", text })), ...b.map((text) => ({ op: "+", text }))];
  }
  const width = b.length + 1;
  const lcs = new Uint32Array((a.length + 1) * width);
  for (let i = a.length - 1; i >= 0; i -= 1) {
    for (let j = b.length - 1; j >= 0; j -= 1) {
      lcs[i * width + j] = a[i] === b[j] ? lcs[(i + 1) * width + j + 1] + 1
        : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  const ops = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      ops.push({ op: " ", text: a[i] });
      i += 1;
      j += 1;
    } else if (i < a.length && (j === b.length || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])) {
      ops.push({ op: "-", text: a[i] });
      i += 1;
    } else {
      ops.push({ op: "+", text: b[j] });
      j += 1;
    }
  }
  return ops;
}

/** Renders ops into `box`: changed lines and their context, gaps elided. */
export function renderDiff(box, ops, context = 3) {
  const keep = ops.map(() => false);
  ops.forEach((o, index) => {
    if (o.op === " ") return;
    for (let k = Math.max(0, index - context); k <= Math.min(ops.length - 1, index + context); k += 1) {
      keep[k] = true;
    }
  });
  const lines = [];
  let skipped = 0;
  ops.forEach((o, index) => {
    if (!keep[index]) {
      skipped += 1;
      return;
    }
    if (skipped) lines.push(line("gap", `… ${skipped} unchanged line${skipped > 1 ? "s" : ""}`));
    skipped = 0;
    lines.push(line(o.op === "+" ? "add" : o.op === "-" ? "del" : "ctx", `${o.op} ${o.text}`));
  });
  if (skipped && lines.length) lines.push(line("gap", `… ${skipped} unchanged lines`));
  if (!lines.length) lines.push(line("gap", "The two versions are identical."));
  box.replaceChildren(...lines);
}

function line(cls, text) {
  const div = document.createElement("div");
  div.className = cls;
  div.textContent = text;
  return div;
}

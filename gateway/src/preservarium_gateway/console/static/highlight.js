// A small Python highlighter for the parser editor: one regular expression tokenizes the
// source into strings, comments, numbers, names and the rest; names are classed by sets.

const KEYWORDS = new Set(("False None True and as assert async await break class continue def del " +
  "elif else except finally for from global if import in is lambda nonlocal not or pass raise " +
  "return try while with yield match case").split(" "));
const BUILTINS = new Set(("abs all any bin bool bytearray bytes chr dict divmod enumerate filter " +
  "float format frozenset getattr hasattr hash hex int isinstance issubclass iter len list map " +
  "max min next object oct ord pow print range repr reversed round set slice sorted str sum " +
  "tuple type zip ValueError TypeError KeyError IndexError Exception warn struct").split(" "));

const TOKEN = new RegExp([
  String.raw`(?<str>[rRbBuUfF]{0,2}(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?))`,
  String.raw`(?<com>#[^\n]*)`,
  String.raw`(?<dec>^[ \t]*@[\w.]+)`,
  String.raw`(?<num>\b(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|\d[\d_]*\.?\d*(?:[eE][+-]?\d+)?j?)\b)`,
  String.raw`(?<name>[A-Za-z_]\w*)`,
].join("|"), "gm");

function escape(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** HTML for `source` with <span class="tok-..."> around each token worth a colour. */
export function highlight(source) {
  let out = "";
  let last = 0;
  let previous = "";
  for (const match of source.matchAll(TOKEN)) {
    out += escape(source.slice(last, match.index));
    last = match.index + match[0].length;
    const groups = match.groups;
    let cls = null;
    if (groups.str !== undefined) cls = "str";
    else if (groups.com !== undefined) cls = "com";
    else if (groups.dec !== undefined) cls = "dec";
    else if (groups.num !== undefined) cls = "num";
    else if (KEYWORDS.has(match[0])) cls = "kw";
    else if (previous === "def" || previous === "class") cls = "fn";
    else if (BUILTINS.has(match[0])) cls = "bi";
    if (groups.name !== undefined) previous = match[0];
    out += cls ? `<span class="tok-${cls}">${escape(match[0])}</span>` : escape(match[0]);
  }
  // A trailing newline needs a character after it, or the <pre> is one line short.
  return `${out + escape(source.slice(last))}\n`;
}

/** Wires a textarea over a <code> so that typing re-highlights and scrolling stays aligned. */
export function attachEditor(textarea, code) {
  const pre = code.parentElement;
  const render = () => {
    code.innerHTML = highlight(textarea.value);
    pre.scrollTop = textarea.scrollTop;
    pre.scrollLeft = textarea.scrollLeft;
  };
  textarea.addEventListener("input", render);
  textarea.addEventListener("scroll", () => {
    pre.scrollTop = textarea.scrollTop;
    pre.scrollLeft = textarea.scrollLeft;
  });
  textarea.addEventListener("keydown", (event) => {
    if (event.key !== "Tab" || event.shiftKey) return;
    event.preventDefault();
    textarea.setRangeText("    ", textarea.selectionStart, textarea.selectionEnd, "end");
    render();
  });
  return {
    get value() {
      return textarea.value;
    },
    set value(text) {
      textarea.value = text;
      render();
    },
  };
}

// The page's shared surfaces: #status (what is happening), #error (what went wrong), the text.

export const $ = (id) => document.getElementById(id);

export function status(text) {
  $("status").textContent = text;
}

// role="alert": a screen reader says it at once; the message is the API's own words.
export function showError(err) {
  const box = $("error");
  box.textContent = typeof err === "string" ? err : err.message || String(err);
  box.hidden = false;
}

export function clearError() {
  const box = $("error");
  box.textContent = "";
  box.hidden = true;
}

// #transcript holds final text only; #partial what the live decoder may still revise.
export const text = {
  clear() {
    $("transcript").textContent = "";
    $("partial").textContent = "";
  },
  appendFinal(piece) {
    const el = $("transcript");
    const joined = el.textContent ? el.textContent + (/^\s/.test(piece) ? "" : " ") + piece : piece.trimStart();
    el.textContent = joined;
  },
  setPartial(piece) {
    const before = $("transcript").textContent;
    $("partial").textContent = piece && before && !/^\s/.test(piece) ? " " + piece : piece;
  },
  final() {
    return $("transcript").textContent;
  },
};

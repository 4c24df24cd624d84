// Progressive enhancement only: every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // A print button where scripts run (the browser's own Print works everywhere).
  for (const button of document.querySelectorAll("[data-print]")) {
    button.hidden = false;
    button.addEventListener("click", () => window.print());
  }
  // Folded groups print unfolded: a printed report cannot be clicked open.
  window.addEventListener("beforeprint", () => {
    for (const folded of document.querySelectorAll(".evaluation details")) folded.open = true;
  });
  // A link to a field folded away (a value only one protocol asks) unfolds its group first.
  const unfold = () => {
    const target = location.hash && document.getElementById(location.hash.slice(1));
    for (let node = target; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") node.open = true;
    }
    if (target) target.scrollIntoView();
  };
  window.addEventListener("hashchange", unfold);
  unfold();
  // Move focus to the error summary so screen-reader and keyboard users land on it.
  const summary = document.getElementById("error-summary");
  if (summary) summary.focus();
});

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
  // Move focus to the error summary so screen-reader and keyboard users land on it.
  const summary = document.getElementById("error-summary");
  if (summary) summary.focus();
});

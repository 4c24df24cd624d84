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
  // A screening's page follows its job: progress from the job's JSON every two seconds, and
  // the page again once the job has finished (counts, report, downloads). Without this
  // script a <noscript> refresh reloads the page instead.
  const job = document.querySelector("[data-job]");
  const finished = ["succeeded", "failed", "cancelled"];
  if (job && !finished.includes(job.dataset.state)) {
    const bar = job.querySelector("progress");
    const text = job.querySelector("[data-job-progress]");
    const follow = async () => {
      let shown;
      try {
        const answer = await fetch(job.dataset.job, { headers: { Accept: "application/json" } });
        if (!answer.ok) return; // signed out, or deleted: stop following
        shown = await answer.json();
      } catch {
        setTimeout(follow, 5000); // the server is unreachable for a moment: try again later
        return;
      }
      if (shown.state !== job.dataset.state && finished.includes(shown.state)) {
        location.reload();
        return;
      }
      const { rows_done: done, rows_total: total, percent } = shown.progress;
      if (shown.state === "running") {
        text.textContent = total === null
          ? (done ? `${done.toLocaleString("en")} rows` : "Reading the source")
          : `${done.toLocaleString("en")} of ${total.toLocaleString("en")} rows` +
            (percent === null ? "" : ` (${percent} %)`);
        job.querySelector("[data-job-state]").textContent = "Running";
      }
      if (bar && percent !== null) bar.value = percent;
      setTimeout(follow, 2000);
    };
    setTimeout(follow, 1000);
  }
  // Move focus to the error summary so screen-reader and keyboard users land on it.
  const summary = document.getElementById("error-summary");
  if (summary) summary.focus();
});

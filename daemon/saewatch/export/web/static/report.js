// saewatch report page: verdict filter, relative times, optional auto-refresh. No dependencies.
"use strict";

(function () {
  const REFRESH_MS = 30000; // the diff runs every 10 s by default; 30 s keeps the page calm
  const KEY = "saewatch.autorefresh";

  function relative(date) {
    const s = Math.round((Date.now() - date.getTime()) / 1000);
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function showRelativeTimes() {
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      const date = new Date(el.getAttribute("datetime"));
      if (!isNaN(date)) el.title = el.textContent.trim() + " (" + relative(date) + ")";
    });
  }

  function applyFilter(verdict) {
    document.querySelectorAll("[data-filter]").forEach(function (b) {
      b.classList.toggle("active", b.dataset.filter === verdict);
    });
    document.querySelectorAll("section.comparison, nav.toc li").forEach(function (el) {
      el.classList.toggle("hidden", verdict !== "all" && el.dataset.verdict !== verdict);
    });
  }

  function setupRefresh() {
    const box = document.getElementById("autorefresh");
    if (!box) return;
    const forced = document.body.dataset.autorefresh === "on";
    box.checked = forced || window.localStorage.getItem(KEY) === "on";
    box.addEventListener("change", function () {
      window.localStorage.setItem(KEY, box.checked ? "on" : "off");
    });
    window.setInterval(function () {
      if (box.checked) window.location.reload();
    }, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-filter]").forEach(function (b) {
      b.addEventListener("click", function () { applyFilter(b.dataset.filter); });
    });
    applyFilter("all");
    showRelativeTimes();
    setupRefresh();
  });
})();

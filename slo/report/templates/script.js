// Span details on hover (follows the pointer) and click (pinned). Everything shown comes from
// the JSON block above and is inserted with textContent only: span data is untrusted.
(function () {
  "use strict";
  var data = {};
  try { data = JSON.parse(document.getElementById("slo-data").textContent || "{}"); } catch (e) { data = {}; }
  var tip = document.getElementById("tip");

  // Long traces scroll inside their box: start with the culprit span in view.
  Array.prototype.forEach.call(document.querySelectorAll(".wf-scroll"), function (box) {
    var c = box.querySelector(".row.culprit");
    if (!c) return;
    var top = c.getBoundingClientRect().top - box.getBoundingClientRect().top;
    if (top > box.clientHeight - 40) box.scrollTop = top - box.clientHeight / 2;
  });
  var pinned = null;

  function el(tag, text, cls) {
    var n = document.createElement(tag);
    if (text !== undefined && text !== null) n.textContent = String(text);
    if (cls) n.className = cls;
    return n;
  }
  function rowOf(target) {
    return target && target.closest ? target.closest(".wf .row") : null;
  }
  function detailOf(row) {
    var fig = row.closest(".wf");
    var spans = fig && data[fig.getAttribute("data-wf")];
    return spans ? spans[Number(row.getAttribute("data-i"))] : null;
  }
  function fill(d) {
    tip.textContent = "";
    if (pinned) {
      var close = el("button", "\u00d7", "close");
      close.setAttribute("aria-label", "close");
      close.addEventListener("click", function (ev) { ev.stopPropagation(); unpin(); });
      tip.appendChild(close);
    }
    tip.appendChild(el("h4", d.service + ": " + d.name));
    var t = el("table");
    function add(k, v) {
      var tr = el("tr"); tr.appendChild(el("th", k)); tr.appendChild(el("td", v)); t.appendChild(tr);
    }
    add("duration", d.duration);
    add("start", "+" + d.start);
    add("kind", d.kind);
    add("status", d.status + (d.status_message ? " (" + d.status_message + ")" : ""));
    if (d.culprit) add("culprit", "yes: this span explains the change");
    if (d.critical) add("critical path", "yes");
    add("span id", d.span_id);
    var attrs = d.attributes || {};
    Object.keys(attrs).sort().forEach(function (k) {
      var v = attrs[k];
      add(k, (v !== null && typeof v === "object") ? JSON.stringify(v) : v);
    });
    tip.appendChild(t);
  }
  function place(x, y) {
    tip.hidden = false;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    var left = x + 14, top = y + 14;
    if (left + w > window.innerWidth - 8) left = Math.max(8, x - w - 14);
    if (top + h > window.innerHeight - 8) top = Math.max(8, window.innerHeight - h - 8);
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  }
  function show(row, x, y) {
    var d = detailOf(row);
    if (!d) return;
    fill(d);
    place(x, y);
  }
  function unpin() {
    if (pinned) pinned.classList.remove("sel");
    pinned = null;
    tip.classList.remove("pinned");
    tip.hidden = true;
  }
  document.addEventListener("mouseover", function (ev) {
    if (pinned) return;
    var row = rowOf(ev.target);
    if (row) show(row, ev.clientX, ev.clientY); else tip.hidden = true;
  });
  document.addEventListener("mousemove", function (ev) {
    if (!pinned && !tip.hidden && rowOf(ev.target)) place(ev.clientX, ev.clientY);
  });
  document.addEventListener("click", function (ev) {
    if (tip.contains(ev.target)) return;
    var row = rowOf(ev.target);
    if (!row) { unpin(); return; }
    if (pinned === row) { unpin(); return; }
    if (pinned) pinned.classList.remove("sel");
    pinned = row;
    row.classList.add("sel");
    tip.classList.add("pinned");
    show(row, ev.clientX, ev.clientY);
  });
  document.addEventListener("focusin", function (ev) {
    var row = rowOf(ev.target);
    if (!row || pinned) return;
    var r = row.getBoundingClientRect();
    show(row, r.left + 40, r.bottom);
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") unpin();
    var row = rowOf(ev.target);
    if (row && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); row.dispatchEvent(new MouseEvent("click", {bubbles: true, clientX: row.getBoundingClientRect().left + 40, clientY: row.getBoundingClientRect().bottom})); }
  });
})();

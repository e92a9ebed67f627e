/* wssbench leaderboard: sort any column (buttons in the headers, aria-sort) and filter rows.
   The page is complete without this script; it only reorders and hides rows already there. */
(function () {
  "use strict";
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function cellKey(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) return null;
    if (numeric) {
      var v = cell.getAttribute("data-v");
      return v === null || v === "" ? null : parseFloat(v);
    }
    var text = cell.textContent.trim();
    return text === "" || text === "-" ? null : text;
  }

  function sortRows(rows, index, numeric, descending) {
    var keyed = rows.map(function (r, i) { return { row: r, key: cellKey(r, index, numeric), i: i }; });
    keyed.sort(function (a, b) {
      if (a.key === null || b.key === null) {  // missing values last, whatever the direction
        return a.key === b.key ? a.i - b.i : (a.key === null ? 1 : -1);
      }
      var c = numeric ? a.key - b.key : collator.compare(a.key, b.key);
      if (descending) c = -c;
      return c !== 0 ? c : a.i - b.i;  // stable
    });
    return keyed.map(function (k) { return k.row; });
  }

  function dataRows(body) {
    return Array.prototype.filter.call(body.rows, function (r) { return r.hasAttribute("data-row"); });
  }

  // A group is one table, or several consecutive tables of the same columns (a long group):
  // the ranked rows of all of them are sorted together and dealt back, as many to each as it held;
  // the rows shown apart (tuned on their scored images) and the published rows are sorted among themselves.
  function onSort(event) {
    var th = event.currentTarget.parentNode;
    var section = th.closest("section.group");
    var index = th.cellIndex;
    var numeric = th.getAttribute("data-type") === "num";
    var current = th.getAttribute("aria-sort");
    var descending = current ? current === "ascending" : numeric;  // first click: numbers high first, text A-Z
    Array.prototype.forEach.call(section.querySelectorAll("table.board thead tr"), function (tr) {
      Array.prototype.forEach.call(tr.cells, function (h) {
        if (h.cellIndex === index) h.setAttribute("aria-sort", descending ? "descending" : "ascending");
        else h.removeAttribute("aria-sort");
      });
    });
    var bodies = Array.prototype.slice.call(section.querySelectorAll("tbody.runs"));
    var counts = bodies.map(function (b) { return dataRows(b).length; });
    var rows = sortRows([].concat.apply([], bodies.map(dataRows)), index, numeric, descending);
    var at = 0;
    bodies.forEach(function (body, k) {
      var fragment = document.createDocumentFragment();
      rows.slice(at, at + counts[k]).forEach(function (r) { fragment.appendChild(r); });
      body.appendChild(fragment);
      at += counts[k];
    });
    Array.prototype.forEach.call(section.querySelectorAll("tbody:not(.runs)"), function (body) {
      var fragment = document.createDocumentFragment();
      sortRows(dataRows(body), index, numeric, descending).forEach(function (r) { fragment.appendChild(r); });
      body.appendChild(fragment);
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.board thead th"), function (th) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "sort";
    while (th.firstChild) button.appendChild(th.firstChild);
    button.setAttribute("title", "sort by " + button.textContent.trim());
    th.appendChild(button);
    button.addEventListener("click", onSort);
  });

  var form = document.getElementById("filters");
  if (!form) return;
  var selects = Array.prototype.slice.call(form.querySelectorAll("select"));
  var status = document.getElementById("shown");

  function applyFilters() {
    var want = {};
    selects.forEach(function (s) { want[s.name] = s.value; });
    var shown = 0;
    Array.prototype.forEach.call(document.querySelectorAll("section.group"), function (section) {
      var groupOk = (!want.dataset || section.getAttribute("data-dataset") === want.dataset) &&
                    (!want.stage || section.getAttribute("data-stage") === want.stage);
      var visible = 0;
      Array.prototype.forEach.call(section.querySelectorAll("tr[data-row]"), function (row) {
        var ok = groupOk &&
          (!want.backbone || row.getAttribute("data-backbone") === want.backbone) &&
          (!want.kind || row.getAttribute("data-kind") === want.kind) &&
          (!want.badge || (" " + row.getAttribute("data-badges") + " ").indexOf(" " + want.badge + " ") >= 0);
        row.hidden = !ok;
        if (ok) visible += 1;
      });
      section.hidden = !groupOk;
      var empty = section.querySelector(".empty");
      if (empty) empty.hidden = visible > 0 || !groupOk;
      Array.prototype.forEach.call(section.querySelectorAll("tr.sep"), function (sep) {
        sep.hidden = !sep.parentNode.querySelector("tr[data-row]:not([hidden])");
      });
      Array.prototype.forEach.call(section.querySelectorAll("div.scroll"), function (chunk) {
        chunk.hidden = !chunk.querySelector("tr[data-row]:not([hidden])");
      });
      shown += visible;
    });
    if (status) status.textContent = shown + " rows shown";
  }

  selects.forEach(function (s) { s.addEventListener("change", applyFilters); });
  form.addEventListener("reset", function (e) {
    e.preventDefault();
    selects.forEach(function (s) { s.value = ""; });
    applyFilters();
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); });
  form.hidden = false;
})();

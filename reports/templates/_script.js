// Sort any table with class "sortable" by clicking a header; filter the per-prompt view.
document.querySelectorAll("table.sortable th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows), asc = th.dataset.asc !== "1";
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.sort || a.cells[col].textContent, y = b.cells[col].dataset.sort || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? cmp : -cmp;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    th.dataset.asc = asc ? "1" : "0";
  });
});
(function () {
  var form = document.getElementById("filters");
  if (!form) return;
  form.hidden = false;
  function apply() {
    var cat = form.category.value, flags = form.flags.checked, spread = parseFloat(form.spread.value || "0");
    document.querySelectorAll(".prompt").forEach(function (p) {
      var show = (!cat || p.dataset.category === cat) && (!flags || p.dataset.flagged === "1") &&
                 parseFloat(p.dataset.spread || "0") >= spread;
      p.hidden = !show;
    });
  }
  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  var list = document.getElementById("prompt-list");
  form.sort.addEventListener("change", function () {
    var items = Array.prototype.slice.call(list.children);
    items.sort(function (a, b) {
      return form.sort.value === "spread" ? parseFloat(b.dataset.spread) - parseFloat(a.dataset.spread)
                                          : a.dataset.order - b.dataset.order;
    });
    items.forEach(function (i) { list.appendChild(i); });
  });
})();

/* The admin dashboard (reports/dashboard.py): fetches the report API with the admin's session (plain GETs) and
 * draws the KPIs and charts with the vendored Chart.js. Every chart container ends with
 * data-state="ready" | "empty" | "error" and data-rendered="<n> points" (the non-zero values it shows), which the
 * browser test waits for; the page's #content-main gets data-state="ready" when every part has settled. */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const root = document.getElementById("content-main");
  const language = document.documentElement.lang || config.language || "en";
  const integer = new Intl.NumberFormat(language, { maximumFractionDigits: 0 });
  const percent = new Intl.NumberFormat(language, { style: "percent", maximumFractionDigits: 1 });
  const money = new Intl.NumberFormat(language, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const charts = {};
  let generation = 0; // a newer period choice wins over answers still arriving for an older one

  // --- words, numbers and dates ---------------------------------------------------------------------------------

  function t(key, values) {
    let text = config.labels[key] || key;
    for (const [name, value] of Object.entries(values || {})) {
      text = text.split("%(" + name + ")s").join(String(value));
    }
    return text;
  }

  function segmentLabel(key) {
    if (key === null || key === undefined || key === "") return t("no_segment");
    const segment = config.segments.find((item) => item.key === key);
    return segment ? segment.label : key;
  }

  function tierLabel(key) {
    const tier = config.tiers.find((item) => item.key === key);
    return tier ? tier.label : key || t("no_tier");
  }

  // Business dates are plain YYYY-MM-DD strings; arithmetic in UTC so no time zone shifts a day.
  function addDays(iso, days) {
    const day = new Date(iso + "T00:00:00Z");
    day.setUTCDate(day.getUTCDate() + days);
    return day.toISOString().slice(0, 10);
  }

  function periodFor(days) {
    const to = config.yesterday;
    const from = addDays(to, -(days - 1));
    const previousTo = addDays(from, -1);
    return { days, from, to, previousFrom: addDays(previousTo, -(days - 1)), previousTo };
  }

  function asNumber(value) {
    const number = typeof value === "string" ? parseFloat(value) : value;
    return Number.isFinite(number) ? number : 0;
  }

  // --- the API ----------------------------------------------------------------------------------------------------

  function reportUrl(name, params, format) {
    const url = new URL(config.endpoints[name], window.location.origin);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, value);
    }
    if (format) url.searchParams.set("format", format);
    return url;
  }

  async function report(name, params) {
    const response = await fetch(reportUrl(name, params), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      const error = new Error(name + ": HTTP " + response.status);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  // --- chart containers -------------------------------------------------------------------------------------------

  function container(key) {
    return document.getElementById("chart-" + key);
  }

  function settle(key, state, points, message) {
    const element = container(key);
    if (charts[key] && state !== "ready") {
      charts[key].destroy();
      delete charts[key];
    }
    if (message !== undefined) {
      const note = document.createElement("p");
      note.className = "dashboard-message";
      note.textContent = message;
      element.replaceChildren(note);
    }
    element.dataset.state = state;
    element.dataset.rendered = points + " points";
  }

  function failed(key, error) {
    console.error(error);
    settle(key, "error", 0, error.status ? t("unavailable", { status: error.status }) : t("failed"));
  }

  function countPoints(datasets) {
    return datasets.reduce((sum, dataset) => sum + dataset.data.filter((value) => asNumber(value) !== 0).length, 0);
  }

  const palette = ["#417690", "#e08a2f", "#b5443c", "#6b9a3a", "#8a6bb5", "#2f9e9e", "#c9a227", "#7a7a7a", "#d46a9f"];

  function themeColour(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  function draw(key, chartConfig) {
    const points = countPoints(chartConfig.data.datasets);
    if (points === 0) {
      settle(key, "empty", 0, t("no_data"));
      return;
    }
    if (charts[key]) charts[key].destroy();
    const canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    const title = container(key).closest(".dashboard-card").querySelector("h2");
    canvas.setAttribute("aria-label", title ? title.textContent : key);
    container(key).replaceChildren(canvas);
    const text = themeColour("--body-quiet-color", "#666");
    chartConfig.options = Object.assign(
      {
        animation: false, // drawn at once: the data-rendered mark is true when it is set
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { labels: { color: text } } },
      },
      chartConfig.options || {}
    );
    charts[key] = new window.Chart(canvas, chartConfig);
    settle(key, "ready", points);
  }

  // A table with a colour scale (the heat maps): rows of cells {value, text, title, className}; value in [0, max].
  function heatTable(key, { caption, columns, rows, max }) {
    const points = rows.reduce((sum, row) => sum + row.cells.filter((cell) => cell && cell.value > 0).length, 0);
    if (points === 0) {
      settle(key, "empty", 0, t("no_data"));
      return;
    }
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    for (const column of [caption, ...columns]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = column;
      head.append(th);
    }
    const body = table.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = row.label;
      tr.append(th);
      for (const cell of row.cells) {
        const td = tr.insertCell();
        if (!cell) continue;
        td.textContent = cell.text;
        if (cell.title) td.title = cell.title;
        if (cell.className) td.className = cell.className;
        const share = max > 0 ? Math.min(cell.value / max, 1) : 0;
        if (cell.value > 0) {
          td.style.backgroundColor = "rgba(65, 118, 144, " + (0.12 + 0.78 * share).toFixed(3) + ")";
          if (share > 0.55) td.classList.add("dark");
        }
      }
    }
    container(key).replaceChildren(table);
    settle(key, "ready", points);
  }

  // --- KPIs -----------------------------------------------------------------------------------------------------

  function kpi(name, value, previous, options) {
    const card = root.querySelector('[data-kpi="' + name + '"]');
    const { rate, detail } = options || {};
    card.querySelector(".kpi-value").textContent = rate ? percent.format(value) : integer.format(value);
    const change = card.querySelector(".kpi-change");
    let text;
    let direction = "flat";
    if (previous === null || previous === undefined) {
      text = "";
    } else if (rate) {
      const points = (value - previous) * 100;
      direction = points > 0 ? "up" : points < 0 ? "down" : "flat";
      text = points === 0 ? t("no_change") : (points > 0 ? "+" : "") + points.toFixed(1) + " " + t("percentage_points");
    } else if (previous === 0) {
      text = value === 0 ? t("no_change") : t("new_from_zero");
      direction = value > 0 ? "up" : "flat";
    } else {
      const relative = (value - previous) / Math.abs(previous);
      direction = relative > 0 ? "up" : relative < 0 ? "down" : "flat";
      text = relative === 0 ? t("no_change") : (relative > 0 ? "+" : "") + percent.format(relative);
    }
    change.textContent = text ? text + " " + t("vs_previous", { days: currentPeriod.days }) : "";
    change.dataset.direction = direction;
    const detailLine = card.querySelector(".kpi-detail");
    if (detailLine) detailLine.textContent = detail || "";
    card.dataset.state = "ready";
  }

  function kpiFailed(names, error) {
    console.error(error);
    for (const name of names) {
      const card = root.querySelector('[data-kpi="' + name + '"]');
      card.querySelector(".kpi-value").textContent = "—";
      card.querySelector(".kpi-change").textContent = error.status
        ? t("unavailable", { status: error.status })
        : t("failed");
      card.dataset.state = "error";
    }
  }

  // --- the parts of the page --------------------------------------------------------------------------------------

  async function pointsPart(period) {
    const interval = period.days > 31 ? "week" : "day";
    const [current, previous] = await Promise.all([
      report("points", { from: period.from, to: period.to, interval }),
      report("points", { from: period.previousFrom, to: period.previousTo, interval }),
    ]);
    return () => {
      kpi("points_issued", asNumber(current.totals.issued), asNumber(previous.totals.issued));
      kpi("points_redeemed", asNumber(current.totals.redeemed), asNumber(previous.totals.redeemed));
      const rows = current.rows || [];
      const series = ["issued", "redeemed", "expired"];
      draw("points-flow", {
        type: "bar",
        data: {
          labels: rows.map((row) => row.period),
          datasets: series.map((field, index) => ({
            label: t(field),
            data: rows.map((row) => asNumber(row[field])),
            backgroundColor: palette[index],
          })),
        },
        options: { scales: { y: { beginAtZero: true, title: { display: true, text: t("points") } } } },
      });
    };
  }

  async function liabilityPart(period) {
    const [current, previous] = await Promise.all([
      report("liability", { as_of: period.to }),
      report("liability", { as_of: period.previousTo }),
    ]);
    return () => {
      const outstanding = asNumber(current.points_outstanding);
      kpi("liability", outstanding, asNumber(previous.points_outstanding), {
        detail: t("money_value", { money: money.format(asNumber(current.money_value)) }),
      });
      const expiring = current.expiring || [];
      let left = outstanding;
      const remaining = expiring.map((month) => (left = Math.max(0, left - asNumber(month.points))));
      draw("liability", {
        type: "bar",
        data: {
          labels: expiring.map((month) => month.month),
          datasets: [
            {
              type: "line",
              label: t("outstanding_after"),
              data: remaining,
              borderColor: palette[0],
              backgroundColor: palette[0],
              yAxisID: "y",
            },
            {
              label: t("expiring"),
              data: expiring.map((month) => asNumber(month.points)),
              backgroundColor: palette[2],
              yAxisID: "y",
            },
          ],
        },
        options: { scales: { y: { beginAtZero: true, title: { display: true, text: t("points") } } } },
      });
    };
  }

  // Segments in the order of the RFM model (members not scored by the run, key null, last).
  function drawSegments(bySegment) {
    const order = config.segments.map((segment) => segment.key);
    const rank = (key) => (order.indexOf(key) === -1 ? order.length : order.indexOf(key));
    const segments = bySegment.slice().sort((a, b) => rank(a.key) - rank(b.key));
    draw("segments", {
      type: "bar",
      data: {
        labels: segments.map((row) => segmentLabel(row.key)),
        datasets: [
          { label: t("members"), data: segments.map((row) => asNumber(row.members)), backgroundColor: palette[0] },
        ],
      },
      options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } },
    });
  }

  async function membersPart(period) {
    const [current, previous] = await Promise.all([
      report("members", { from: period.from, to: period.to }),
      report("members", { from: period.previousFrom, to: period.previousTo }),
    ]);
    return () => {
      kpi("members", asNumber(current.total), asNumber(previous.total));
      kpi("new_members", asNumber(current.new), asNumber(previous.new));
      kpi("active_members", asNumber(current.active), asNumber(previous.active));
      if (!config.rfm_as_of) {
        settle("segments", "empty", 0, t("no_rfm"));
      } else {
        drawSegments(current.by_segment || []);
      }
      const tiers = current.by_tier || [];
      draw("tiers", {
        type: "doughnut",
        data: {
          labels: tiers.map((row) => tierLabel(row.key)),
          datasets: [
            {
              label: t("members"),
              data: tiers.map((row) => asNumber(row.members)),
              backgroundColor: tiers.map((_, index) => palette[index % palette.length]),
            },
          ],
        },
        options: { plugins: { legend: { position: "right" } } },
      });
    };
  }

  // The nightly report_results job stores the repurchase rate of the 7, 30 and 90 days ending yesterday and of the
  // period of the same length before each: both answers come from stored results.
  async function repurchasePart(period) {
    const [current, previous] = await Promise.all([
      report("repurchase", { from: period.from, to: period.to }),
      report("repurchase", { from: period.previousFrom, to: period.previousTo }),
    ]);
    return () => kpi("repurchase_rate", asNumber(current.repurchase_rate), asNumber(previous.repurchase_rate), { rate: true });
  }

  async function segmentMovesPart(period) {
    if (!config.rfm_as_of) return () => settle("segment-moves", "empty", 0, t("no_rfm"));
    const answer = await report("segment_moves", { from: period.from, to: period.to });
    return () => {
      const moves = answer.moves || [];
      const order = config.segments.map((segment) => segment.key);
      const rank = (key) => (order.indexOf(key) === -1 ? order.length : order.indexOf(key));
      const keys = (field) =>
        [...new Set(moves.map((move) => move[field] ?? null))].sort((a, b) => rank(a) - rank(b));
      const fromKeys = keys("from_segment");
      const toKeys = keys("to_segment");
      const counts = new Map(moves.map((move) => [(move.from_segment ?? null) + "→" + (move.to_segment ?? null), asNumber(move.members)]));
      const max = Math.max(0, ...moves.filter((m) => m.from_segment !== m.to_segment).map((m) => asNumber(m.members)));
      heatTable("segment-moves", {
        caption: t("from_segment") + " ↓ · " + t("to_segment") + " →",
        columns: toKeys.map(segmentLabel),
        rows: fromKeys.map((from) => ({
          label: segmentLabel(from),
          cells: toKeys.map((to) => {
            const value = counts.get(from + "→" + to) || 0;
            const stayed = from === to;
            return {
              value: stayed ? 0 : value, // the colour scale is for moves; members who stayed are shown, not scaled
              text: value ? integer.format(value) : "",
              title: segmentLabel(from) + " → " + segmentLabel(to) + ": " + integer.format(value) + (stayed ? " (" + t("stayed") + ")" : ""),
              className: stayed ? "stayed" : "",
            };
          }),
        })),
        max,
      });
    };
  }

  async function retentionPart(period) {
    // The report's default range (the last 12 join months up to yesterday) is the one the nightly report_results
    // job stores, so it answers at once whatever the period.
    const answer = await report("retention", {});
    return () => {
      const cohorts = answer.cohorts || [];
      const width = Math.max(0, ...cohorts.map((cohort) => (cohort.retained || []).length));
      const columns = [t("cohort_members")];
      for (let month = 0; month < width; month += 1) columns.push(t("month_n", { n: month }));
      heatTable("retention", {
        caption: t("cohort"),
        columns,
        rows: cohorts.map((cohort) => ({
          label: cohort.cohort,
          cells: [
            { value: 0, text: integer.format(asNumber(cohort.members)), className: "count" },
            ...Array.from({ length: width }, (_, month) => {
              const share = (cohort.retained || [])[month];
              if (share === undefined || share === null) return null;
              return { value: asNumber(share), text: percent.format(asNumber(share)) };
            }),
          ],
        })),
        max: 1,
      });
    };
  }

  // Stored value: a table of what is owed now by store and of what moved in the period (cents in the API). Its own
  // container (data-table, not data-chart) settles here, whatever the answer: the part never throws.
  function storedValueTable(answer) {
    const cents = (value) => money.format(asNumber(value) / 100);
    const element = document.getElementById("table-stored-value");
    const liability = answer.liability || { by_store: [] };
    const totals = answer.totals || {};
    const table = document.createElement("table");
    const addRow = (section, cells, header) => {
      const tr = section.insertRow();
      cells.forEach((text, index) => {
        const cell = document.createElement(header || index === 0 ? "th" : "td");
        if (header) cell.scope = "col";
        else if (index === 0) cell.scope = "row";
        cell.textContent = text;
        tr.append(cell);
      });
    };
    addRow(table.createTHead(), [t("sv_owed"), t("sv_principal"), t("sv_bonus"), t("sv_total")], true);
    const body = table.createTBody();
    for (const store of liability.by_store || []) {
      addRow(body, [store.store || t("sv_no_store"), cents(store.principal_cents), cents(store.bonus_cents), cents(store.total_cents)]);
    }
    addRow(body, [t("sv_all_stores"), cents(liability.principal_cents), cents(liability.bonus_cents), cents(liability.total_cents)]);
    const flows = document.createElement("table");
    flows.style.marginTop = "8px";
    const names = ["topped_up_cents", "bonus_given_cents", "paid", "refunded", "withdrawn_cents", "bonus_expired_cents"];
    const labels = ["sv_topped_up", "sv_bonus_given", "sv_paid", "sv_refunded", "sv_withdrawn", "sv_bonus_expired"];
    const value = (name) =>
      name === "paid"
        ? asNumber(totals.paid_principal_cents) + asNumber(totals.paid_bonus_cents)
        : name === "refunded"
          ? asNumber(totals.refunded_principal_cents) + asNumber(totals.refunded_bonus_cents)
          : asNumber(totals[name]);
    addRow(flows.createTHead(), [t("sv_period"), ...labels.map((label) => t(label))], true);
    addRow(flows.createTBody(), [t("sv_all_stores"), ...names.map((name) => cents(value(name)))]);
    const shown = [liability.total_cents, ...names.map(value)].filter((figure) => asNumber(figure) !== 0).length;
    element.replaceChildren(table, flows);
    element.dataset.state = shown ? "ready" : "empty";
    element.dataset.rendered = shown + " points";
  }

  async function storedValuePart(period) {
    const element = document.getElementById("table-stored-value");
    if (!element || !config.endpoints.stored_value) return () => {};
    element.dataset.state = "loading";
    try {
      const answer = await report("stored_value", { from: period.from, to: period.to });
      return () => storedValueTable(answer);
    } catch (error) {
      return () => {
        console.error(error);
        const note = document.createElement("p");
        note.className = "dashboard-message";
        note.textContent = error.status ? t("unavailable", { status: error.status }) : t("failed");
        element.replaceChildren(note);
        element.dataset.state = "error";
        element.dataset.rendered = "0 points";
      };
    }
  }

  // --- loading a period -------------------------------------------------------------------------------------------

  let currentPeriod = periodFor(config.period || config.default_period);

  const parts = [
    { load: pointsPart, charts: ["points-flow"], kpis: ["points_issued", "points_redeemed"] },
    { load: liabilityPart, charts: ["liability"], kpis: ["liability"] },
    { load: membersPart, charts: ["segments", "tiers"], kpis: ["members", "new_members", "active_members"] },
    { load: repurchasePart, charts: [], kpis: ["repurchase_rate"] },
    { load: segmentMovesPart, charts: ["segment-moves"], kpis: [] },
    { load: retentionPart, charts: ["retention"], kpis: [] },
    { load: storedValuePart, charts: [], kpis: [] },
  ];

  function showRange(period) {
    document.getElementById("dashboard-range").textContent = t("range", {
      from: period.from,
      to: period.to,
      previous_from: period.previousFrom,
      previous_to: period.previousTo,
    });
    const params = {
      points: { from: period.from, to: period.to, interval: period.days > 31 ? "week" : "day" },
      liability: { as_of: period.to },
      members: { from: period.from, to: period.to },
      segment_moves: { from: period.from, to: period.to },
      retention: {},
      stored_value: { from: period.from, to: period.to },
    };
    for (const link of root.querySelectorAll("[data-csv-for]")) {
      link.href = reportUrl(link.dataset.csvFor, params[link.dataset.csvFor], "csv").toString();
    }
  }

  async function load(days) {
    const mine = ++generation;
    currentPeriod = periodFor(days);
    root.dataset.state = "loading";
    root.dataset.period = String(days);
    showRange(currentPeriod);
    for (const button of root.querySelectorAll(".dashboard-period")) {
      const selected = Number(button.dataset.days) === days;
      button.classList.toggle("selected", selected);
      button.setAttribute("aria-pressed", selected ? "true" : "false");
    }
    for (const part of parts) {
      for (const key of part.charts) {
        container(key).dataset.state = "loading";
        delete container(key).dataset.rendered;
      }
    }
    await Promise.all(
      parts.map(async (part) => {
        try {
          const render = await part.load(currentPeriod);
          if (mine === generation) render();
        } catch (error) {
          if (mine !== generation) return;
          kpiFailed(part.kpis, error);
          for (const key of part.charts) failed(key, error);
        }
      })
    );
    if (mine === generation) root.dataset.state = "ready";
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest(".dashboard-period");
    if (!button) return;
    const days = Number(button.dataset.days);
    const url = new URL(window.location.href);
    url.searchParams.set("days", String(days));
    window.history.replaceState(null, "", url);
    load(days);
  });

  load(currentPeriod.days);
})();

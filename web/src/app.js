// Draws every chart of a server-rendered page. The server writes each chart's data as JSON in a
// data-chart attribute; the same figures are in the page's tables, so nothing depends on this.
import * as echarts from 'echarts/core';
import { BarChart, LineChart, PieChart } from 'echarts/charts';
import { GridComponent, TooltipComponent, LegendComponent, TitleComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

echarts.use([BarChart, LineChart, PieChart, GridComponent, TooltipComponent, LegendComponent, TitleComponent, CanvasRenderer]);

// Figures in the reader's own language: the server writes each one in English with its exact
// value and kind beside it (data-value, data-format), and this writes it again with the
// browser's separators. Without this script the English text stays.
const lang = navigator.language || 'en-US';
function figure(value, format, currency, compact) {
  const options = {
    money: { style: 'currency', currency: currency || 'USD', minimumFractionDigits: compact ? 0 : 2, maximumFractionDigits: compact ? 1 : 2 },
    ratio: { style: 'percent', minimumFractionDigits: 1, maximumFractionDigits: 1 },
    percent: { style: 'percent', minimumFractionDigits: 1, maximumFractionDigits: 1 },
    integer: { maximumFractionDigits: 0 },
    number: { maximumFractionDigits: 2 },
  }[format];
  if (!options) return null;
  if (compact && Math.abs(value) >= (format === 'money' ? 1000 : 1e6)) options.notation = 'compact';
  return new Intl.NumberFormat(lang, options).format(format === 'percent' ? value / 100 : value);
}

function localise() {
  for (const el of document.querySelectorAll('[data-format]')) {
    if (el.dataset.value === '') continue;
    const value = Number(el.dataset.value);
    if (Number.isNaN(value)) continue;
    const unit = el.textContent.trim().match(/ (h|days)$/);
    const text = figure(value, el.dataset.format, el.dataset.currency, el.dataset.compact === '1');
    if (text !== null) el.textContent = unit ? `${text}${unit[0]}` : text;
  }
}

const axisNumber = new Intl.NumberFormat(lang, { notation: 'compact', maximumFractionDigits: 1 });
const tooltipNumber = new Intl.NumberFormat(lang, { maximumFractionDigits: 2 });

// A tooltip written as HTML holds names from the data (a partner's name): never as markup.
function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function option(spec) {
  // A metric's series writes its figures as the tiles do (money with its currency, rates as
  // percentages, hours with their unit); the axis too when every series is of one kind.
  const written = (s, compact) => (v) => {
    if (v == null) return '—';
    const text = figure(v, s.format, s.currency, compact) ?? (compact ? axisNumber : tooltipNumber).format(v);
    return s.unit ? `${text} ${s.unit}` : text;
  };
  if (spec.kind === 'pie') {
    return {
      tooltip: { trigger: 'item', valueFormatter: written(spec.series[0], false) },
      legend: { bottom: 0 },
      series: [{ type: 'pie', radius: ['35%', '65%'], data: spec.categories.map((c, i) => ({ name: c, value: spec.series[0].values[i] })) }],
    };
  }
  if (spec.kind === 'scatter') {
    // A point per row: the first metric across, the second up; the row's name on hover.
    const [x, y] = spec.series;
    const points = spec.categories
      .map((c, i) => ({ name: c, value: [x.values[i], y.values[i]] }))
      .filter((p) => p.value[0] != null && p.value[1] != null);
    return {
      tooltip: {
        trigger: 'item',
        formatter: (p) => `${escapeHtml(p.name)}<br>${escapeHtml(x.name)}: ${escapeHtml(written(x, false)(p.value[0]))}<br>${escapeHtml(y.name)}: ${escapeHtml(written(y, false)(p.value[1]))}`,
      },
      grid: { left: 10, right: 30, top: 30, bottom: 30, containLabel: true },
      xAxis: { type: 'value', name: x.name, nameLocation: 'middle', nameGap: 25, scale: true, axisLabel: { formatter: written(x, true) } },
      // The name starts at the axis and runs right, never off the chart's left edge.
      yAxis: { type: 'value', name: y.name, nameTextStyle: { align: 'left' }, scale: true, axisLabel: { formatter: written(y, true) } },
      series: [{ type: 'scatter', symbolSize: 10, data: points }],
    };
  }
  const one = spec.series.every((s) => s.format && s.format === spec.series[0].format && s.unit === spec.series[0].unit);
  return {
    tooltip: { trigger: 'axis', valueFormatter: (v) => (v == null ? '—' : tooltipNumber.format(v)) },
    legend: spec.series.length > 1 ? { bottom: 0 } : undefined,
    grid: { left: 10, right: 20, top: 20, bottom: spec.series.length > 1 ? 40 : 10, containLabel: true },
    xAxis: { type: 'category', data: spec.categories },
    yAxis: { type: 'value', axisLabel: { formatter: one ? written(spec.series[0], true) : (v) => axisNumber.format(v) } },
    // Explore's stacked bars and areas stack the series; an area fills under its line.
    series: spec.series.map((s) => ({
      name: s.name,
      type: spec.kind,
      tooltip: { valueFormatter: written(s, false) },
      data: s.values,
      smooth: false,
      stack: spec.stack ? 'total' : undefined,
      areaStyle: spec.area ? {} : undefined,
    })),
  };
}

// Tables: a click on a header sorts by that column (again: the other way), numbers by their
// exact value; a table of more than ten rows gets a search box that keeps the matching rows,
// and one of more than PAGE_ROWS rows is shown a page at a time (sorting and searching apply to
// every row, then the first page shows).
const PAGE_ROWS = 25;

function cellValue(td) {
  const raw = td.dataset.value ?? td.textContent.trim().replace(/[,\s%$€£¥]/g, '');
  const n = Number(raw);
  return raw !== '' && !Number.isNaN(n) ? n : td.textContent.trim().toLowerCase();
}

function table(t) {
  const body = t.tBodies[0];
  if (!body) return;
  const rows = () => [...body.rows].filter((r) => !r.classList.contains('total'));
  const state = { query: '', page: 0 };
  let pager = null;
  const show = () => {
    const q = state.query;
    // Cell by cell: a match never straddles two cells.
    const matching = rows().filter((r) => q === '' || [...r.cells].some((c) => c.textContent.toLowerCase().includes(q)));
    const pages = Math.max(1, Math.ceil(matching.length / PAGE_ROWS));
    state.page = Math.min(state.page, pages - 1);
    const first = state.page * PAGE_ROWS;
    const shown = new Set(pager ? matching.slice(first, first + PAGE_ROWS) : matching);
    for (const r of rows()) r.hidden = !shown.has(r);
    if (pager) {
      pager.querySelector('.rows').textContent = matching.length === 0 ? 'no rows' : `rows ${first + 1}–${Math.min(first + PAGE_ROWS, matching.length)} of ${matching.length}`;
      pager.querySelector('.previous').disabled = state.page === 0;
      pager.querySelector('.next').disabled = state.page >= pages - 1;
    }
  };
  t.querySelectorAll('thead th').forEach((th, i) => {
    th.classList.add('sortable');
    th.title = 'Sort by this column';
    th.addEventListener('click', () => {
      const down = th.dataset.sorted !== 'down';
      t.querySelectorAll('thead th').forEach((h) => delete h.dataset.sorted);
      th.dataset.sorted = down ? 'down' : 'up';
      const sorted = rows();
      sorted.sort((a, b) => {
        const x = cellValue(a.cells[i]);
        const y = cellValue(b.cells[i]);
        const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === 'number' ? -1 : 1;
        return down ? -order : order;
      });
      for (const r of sorted) body.insertBefore(r, body.querySelector('tr.total'));
      state.page = 0;
      show();
    });
  });
  if (rows().length > 10) {
    const search = document.createElement('input');
    search.type = 'search';
    search.className = 'table-search';
    search.placeholder = 'Search this table';
    search.addEventListener('input', () => {
      state.query = search.value.trim().toLowerCase();
      state.page = 0;
      show();
    });
    t.before(search);
  }
  if (rows().length > PAGE_ROWS) {
    pager = document.createElement('div');
    pager.className = 'pager';
    pager.innerHTML = '<button type="button" class="previous" aria-label="Previous page">‹</button><span class="rows"></span><button type="button" class="next" aria-label="Next page">›</button>';
    pager.querySelector('.previous').addEventListener('click', () => { state.page -= 1; show(); });
    pager.querySelector('.next').addEventListener('click', () => { state.page += 1; show(); });
    t.after(pager);
  }
  show();
}

// The scorecard's weights: their total, as it is typed.
function weights() {
  for (const set of document.querySelectorAll('fieldset.weights')) {
    const total = set.querySelector('output.weights-total');
    set.addEventListener('input', () => {
      const sum = [...set.querySelectorAll('input')].reduce((a, i) => a + (Number(i.value) || 0), 0);
      total.textContent = sum.toFixed(2);
    });
  }
}

// Explore's metrics: a search box over their names and definitions keeps the matching ones
// (and the subject areas that hold any); a checked metric always stays in sight.
function metricSearch() {
  const groups = document.querySelector('.metric-groups');
  if (!groups) return;
  const search = document.createElement('input');
  search.type = 'search';
  search.className = 'metric-search';
  search.placeholder = 'Find a metric (name or definition)';
  search.setAttribute('aria-label', 'Find a metric');
  search.addEventListener('input', () => {
    const q = search.value.trim().toLowerCase();
    for (const set of groups.querySelectorAll('fieldset')) {
      let any = false;
      for (const label of set.querySelectorAll('label')) {
        const text = `${label.textContent} ${label.title}`.toLowerCase();
        const shown = q === '' || text.includes(q) || label.querySelector('input').checked;
        label.hidden = !shown;
        any ||= shown;
      }
      set.hidden = !any;
    }
  });
  groups.before(search);
}

function draw() {
  localise();
  for (const t of document.querySelectorAll('section.panel table')) table(t);
  weights();
  metricSearch();
  for (const el of document.querySelectorAll('[data-chart]')) {
    const chart = echarts.init(el);
    chart.setOption(option(JSON.parse(el.dataset.chart)));
    window.addEventListener('resize', () => chart.resize());
  }
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', draw);
} else {
  draw();
}

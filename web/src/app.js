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

function option(spec) {
  if (spec.kind === 'pie') {
    return {
      tooltip: { trigger: 'item' },
      legend: { bottom: 0 },
      series: [{ type: 'pie', radius: ['35%', '65%'], data: spec.categories.map((c, i) => ({ name: c, value: spec.series[0].values[i] })) }],
    };
  }
  return {
    tooltip: { trigger: 'axis', valueFormatter: (v) => (v == null ? '—' : tooltipNumber.format(v)) },
    legend: spec.series.length > 1 ? { bottom: 0 } : undefined,
    grid: { left: 10, right: 20, top: 20, bottom: spec.series.length > 1 ? 40 : 10, containLabel: true },
    xAxis: { type: 'category', data: spec.categories },
    yAxis: { type: 'value', axisLabel: { formatter: (v) => axisNumber.format(v) } },
    // Explore's stacked bars and areas stack the series; an area fills under its line.
    series: spec.series.map((s) => ({
      name: s.name,
      type: spec.kind,
      data: s.values,
      smooth: false,
      stack: spec.stack ? 'total' : undefined,
      areaStyle: spec.area ? {} : undefined,
    })),
  };
}

// Tables: a click on a header sorts by that column (again: the other way), numbers by their
// exact value; a table of more than ten rows gets a search box that keeps the matching rows.
function cellValue(td) {
  const raw = td.dataset.value ?? td.textContent.trim().replace(/[,\s%$€£¥]/g, '');
  const n = Number(raw);
  return raw !== '' && !Number.isNaN(n) ? n : td.textContent.trim().toLowerCase();
}

function tables() {
  for (const table of document.querySelectorAll('section.panel table')) {
    const body = table.tBodies[0];
    if (!body) continue;
    table.querySelectorAll('thead th').forEach((th, i) => {
      th.classList.add('sortable');
      th.title = 'Sort by this column';
      th.addEventListener('click', () => {
        const down = th.dataset.sorted !== 'down';
        table.querySelectorAll('thead th').forEach((h) => delete h.dataset.sorted);
        th.dataset.sorted = down ? 'down' : 'up';
        const rows = [...body.rows].filter((r) => !r.classList.contains('total'));
        rows.sort((a, b) => {
          const x = cellValue(a.cells[i]);
          const y = cellValue(b.cells[i]);
          const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === 'number' ? -1 : 1;
          return down ? -order : order;
        });
        for (const r of rows) body.insertBefore(r, body.querySelector('tr.total'));
      });
    });
    if (body.rows.length > 10) {
      const search = document.createElement('input');
      search.type = 'search';
      search.className = 'table-search';
      search.placeholder = 'Search this table';
      search.addEventListener('input', () => {
        const q = search.value.trim().toLowerCase();
        // Cell by cell: a match never straddles two cells.
        for (const r of body.rows) r.hidden = q !== '' && ![...r.cells].some((c) => c.textContent.toLowerCase().includes(q));
      });
      table.before(search);
    }
  }
}

function draw() {
  localise();
  tables();
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

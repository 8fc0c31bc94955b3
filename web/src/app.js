// Draws every chart of a server-rendered page. The server writes each chart's data as JSON in a
// data-chart attribute; the same figures are in the page's tables, so nothing depends on this.
import * as echarts from 'echarts/core';
import { BarChart, LineChart, PieChart } from 'echarts/charts';
import { GridComponent, TooltipComponent, LegendComponent, TitleComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

echarts.use([BarChart, LineChart, PieChart, GridComponent, TooltipComponent, LegendComponent, TitleComponent, CanvasRenderer]);

function option(spec) {
  if (spec.kind === 'pie') {
    return {
      tooltip: { trigger: 'item' },
      legend: { bottom: 0 },
      series: [{ type: 'pie', radius: ['35%', '65%'], data: spec.categories.map((c, i) => ({ name: c, value: spec.series[0].values[i] })) }],
    };
  }
  return {
    tooltip: { trigger: 'axis' },
    legend: spec.series.length > 1 ? { bottom: 0 } : undefined,
    grid: { left: 10, right: 20, top: 20, bottom: spec.series.length > 1 ? 40 : 10, containLabel: true },
    xAxis: { type: 'category', data: spec.categories },
    yAxis: { type: 'value' },
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

function draw() {
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

// Rebound's panel script: no inline script anywhere (the Content-Security-Policy forbids it), so
// what a page needs beyond htmx is wired here, from data attributes and JSON blocks.
'use strict';

function drawBouncesChart() {
  const source = document.getElementById('bounces-per-hour');
  const canvas = document.getElementById('bounces-chart');
  if (!source || !canvas || typeof Chart === 'undefined') return;
  const data = JSON.parse(source.textContent);
  // data.categories is one fixed order: a category keeps its place in the stack and its colour.
  const categories = data.categories.filter((category) => category in data.byCategory);
  if (categories.length === 0) {
    canvas.parentElement.hidden = true;
    document.querySelector('.empty-note').hidden = false;
    return;
  }
  const palette = ['#1f5fbf', '#b3261e', '#e08a00', '#2e7d32', '#6a1b9a', '#00838f', '#795548', '#c2185b', '#455a64', '#9e9d24', '#5d4037', '#283593', '#ad1457', '#00695c', '#ef6c00', '#37474f', '#8d6e63', '#9e9e9e'];
  new Chart(canvas, {
    type: 'bar',
    data: {
      labels: data.hours.map((hour) => hour.slice(11) + ':00'),
      datasets: categories.map((category) => ({ label: category, data: data.byCategory[category], backgroundColor: palette[data.categories.indexOf(category) % palette.length] })),
    },
    options: {
      maintainAspectRatio: false,
      animation: false,
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
    },
  });
}

document.addEventListener('DOMContentLoaded', () => {
  drawBouncesChart();
});

// A line chart of the last hour (uPlot, drawn on a canvas).

import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export function Chart(props: { title: string; unit: string; times: number[]; values: number[]; testid: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!box.current) return;
    const width = Math.max(240, box.current.clientWidth || 320);
    plot.current = new uPlot(
      {
        width,
        height: 160,
        legend: { show: false },
        scales: {
          // Always the last hour, even with one point.
          x: { time: true, range: () => { const now = Date.now() / 1000; return [now - 3600, now]; } },
          y: { range: (_u, min, max) => [0, Math.max(max * 1.2, min + 1)] } },
        axes: [{ stroke: '#667' }, { stroke: '#667', size: 50 }],
        series: [{}, { label: props.title, stroke: '#2a5d9f', width: 2, fill: 'rgba(42,93,159,0.12)' }],
      },
      [[], []],
      box.current,
    );
    return () => plot.current?.destroy();
  }, []);
  useEffect(() => {
    plot.current?.setData([props.times, props.values]);
  }, [props.times, props.values]);
  const last = props.values.length ? props.values[props.values.length - 1] : null;
  return (
    <div class="card chart" data-testid={props.testid}>
      <h3>
        {props.title} <span class="now">{last === null ? '' : `${last.toFixed(1)} ${props.unit}`}</span>
      </h3>
      <div ref={box} />
    </div>
  );
}

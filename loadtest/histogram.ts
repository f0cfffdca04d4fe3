/**
 * Latency histograms as the threads exchange them: each thread records into its own
 * hdr-histogram-js histogram, ships it encoded (compressed base64, a few KB however many samples),
 * and the main thread decodes and adds them, so merged percentiles are exact rather than averages
 * of per-thread percentiles.
 */
import * as hdr from 'hdr-histogram-js';

/** Microseconds from 1 µs to an hour at 3 significant digits: 0.1 % resolution anywhere in range. */
export function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
}

export function encodeHistogram(h: hdr.Histogram): string {
  return h.totalCount === 0 ? '' : hdr.encodeIntoCompressedBase64(h);
}

/** Adds an encoded histogram (from encodeHistogram) into `into`. */
export function addEncoded(into: hdr.Histogram, encoded: string): void {
  if (encoded === '') return;
  const h = hdr.decodeFromCompressedBase64(encoded);
  into.add(h);
  h.destroy();
}

/** Records a duration in microseconds, clamped into the tracked range so one outlier never throws. */
export function recordMicros(h: hdr.Histogram, micros: number): void {
  h.recordValue(micros < 1 ? 1 : micros > 3_600_000_000 ? 3_600_000_000 : Math.round(micros));
}

export interface Percentiles {
  readonly count: number;
  readonly min: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

export function percentiles(h: hdr.Histogram): Percentiles {
  if (h.totalCount === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  return {
    count: h.totalCount,
    min: h.minNonZeroValue,
    mean: Math.round(h.mean),
    p50: h.getValueAtPercentile(50),
    p90: h.getValueAtPercentile(90),
    p99: h.getValueAtPercentile(99),
    p999: h.getValueAtPercentile(99.9),
    max: h.maxValue,
  };
}

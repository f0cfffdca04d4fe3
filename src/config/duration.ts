/**
 * Quantities as users write them in a config file: Traefik durations (Go syntax such as "1m30s", or a plain
 * number of seconds) and byte sizes ("16MiB", or a plain number of bytes). Each parser returns the value in
 * the unit Sluice uses internally, or throws a QuantityError whose message says what was expected.
 */
import { describeValue } from './errors.js';

export class QuantityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QuantityError';
  }
}

const DURATION_EXPECTED = '(expected a duration like "10s", "1m30s" or "250ms", or a number of seconds)';

/** Nanoseconds per unit, as Go's time.ParseDuration knows them. */
const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  'µs': 1e3, // U+00B5 micro sign
  'μs': 1e3, // U+03BC Greek mu
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

const DURATION_PART = /^(\d+(?:\.\d*)?|\.\d+)([a-zµμ]*)/;
const PLAIN_NUMBER = /^[+-]?(\d+(?:\.\d*)?|\.\d+)$/;

/**
 * Parses a Traefik duration and returns milliseconds (fractional below 1 ms, as "250us" is 0.25).
 * Like Traefik: a bare number, or a string holding only a number, is seconds; anything else is a Go duration.
 * Negative durations are refused: no Sluice timeout has a meaning below zero.
 */
export function parseDuration(value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new QuantityError(`invalid duration ${value} ${DURATION_EXPECTED}`);
    if (value < 0) throw new QuantityError(`invalid duration ${value}: negative ${DURATION_EXPECTED}`);
    return roundMs(value * 1e9);
  }
  if (typeof value !== 'string') {
    throw new QuantityError(`invalid duration: got ${describeValue(value)} ${DURATION_EXPECTED}`);
  }
  const text = value.trim();
  if (text === '') throw new QuantityError(`invalid duration '': empty ${DURATION_EXPECTED}`);
  if (PLAIN_NUMBER.test(text)) return parseDuration(Number(text));

  let rest = text;
  if (rest.startsWith('-')) throw new QuantityError(`invalid duration '${value}': negative ${DURATION_EXPECTED}`);
  if (rest.startsWith('+')) rest = rest.slice(1);
  let nanoseconds = 0;
  while (rest !== '') {
    const match = DURATION_PART.exec(rest);
    if (!match) {
      throw new QuantityError(`invalid duration '${value}': unexpected '${rest}' ${DURATION_EXPECTED}`);
    }
    const [part, amount, unit] = match as unknown as [string, string, string];
    if (unit === '') {
      throw new QuantityError(`invalid duration '${value}': missing unit after '${amount}' ${DURATION_EXPECTED}`);
    }
    const scale = DURATION_UNITS[unit];
    if (scale === undefined) {
      throw new QuantityError(
        `invalid duration '${value}': unknown unit '${unit}' (expected one of: ns, us, ms, s, m, h)`,
      );
    }
    nanoseconds += Number(amount) * scale;
    rest = rest.slice(part.length);
  }
  return roundMs(nanoseconds);
}

/** Formats milliseconds back the way a user would write them (for docs and messages). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

const SIZE_EXPECTED = '(expected a number of bytes, or a size like "64KiB", "16MiB" or "1MB")';

/** Sizes in bytes, for defaults and bounds written in code (the schema's). */
export const KiB = 1024;
export const MiB = 1024 * KiB;

/** Bytes per unit; the IEC units are powers of two, the SI ones powers of ten, as everywhere else. */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: KiB,
  mib: MiB,
  gib: 1024 * MiB,
};

/** Parses a byte size: a non-negative integer number of bytes, or a number with a unit. Returns whole bytes. */
export function parseSize(value: unknown): number {
  if (typeof value === 'number') {
    if (value < 0) throw new QuantityError(`invalid size ${value}: negative ${SIZE_EXPECTED}`);
    if (!Number.isInteger(value)) {
      throw new QuantityError(`invalid size ${value}: not a whole number of bytes ${SIZE_EXPECTED}`);
    }
    return value;
  }
  if (typeof value !== 'string') throw new QuantityError(`invalid size: got ${describeValue(value)} ${SIZE_EXPECTED}`);
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(value);
  if (!match) throw new QuantityError(`invalid size '${value}' ${SIZE_EXPECTED}`);
  const [, amount, unit] = match as unknown as [string, string, string];
  const scale = unit === '' ? 1 : SIZE_UNITS[unit.toLowerCase()];
  if (scale === undefined) {
    throw new QuantityError(`invalid size '${value}': unknown unit '${unit}' (expected one of: B, KB, MB, GB, KiB, MiB, GiB)`);
  }
  const bytes = Number(amount) * scale;
  if (!Number.isInteger(bytes)) {
    throw new QuantityError(`invalid size '${value}': not a whole number of bytes ${SIZE_EXPECTED}`);
  }
  return bytes;
}

/** Formats bytes with the largest IEC unit that divides them (for docs and messages). */
export function formatSize(bytes: number): string {
  for (const [unit, scale] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= scale && bytes % scale === 0) return `${bytes / scale}${unit}`;
  }
  return `${bytes}B`;
}

/** Go durations are exact in nanoseconds; round there so "1.1s" is 1100 ms, not 1100.0000000000002. */
function roundMs(nanoseconds: number): number {
  return Math.round(nanoseconds) / 1e6;
}

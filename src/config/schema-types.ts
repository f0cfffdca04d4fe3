/**
 * The shapes a config key can have (scalar, object, map, list), with the documentation and default that
 * every declaration carries; schema.ts and its section files declare Sluice's keys with them.
 */

export type ScalarType =
  | 'string'
  | 'boolean'
  | 'integer'
  | 'duration' // Traefik duration: "10s", "1m30s", or a number of seconds; validated into milliseconds
  | 'size' // bytes: a number, or "64KiB", "16MiB", "1MB"; validated into bytes
  | 'strategy' // balancing strategy name; validated into a Strategy
  | 'number' // a finite number (fractions allowed), within min/max
  | 'choice' // one of `choices`, as written
  | 'address' // listener address "[host]:port"; validated into { host, port }
  | 'url'; // backend URL; validated into { url, host, port, tls, pathPrefix }

export interface Documented {
  /** One line: what the key does. */
  readonly doc: string;
  /** The default as a user would write it ('' when the key is required or has no default). */
  readonly defaultText?: string;
  readonly required?: boolean;
  /** What to say after "expected" in messages, when the type alone ("a string") says too little. */
  readonly expects?: string;
}

export interface ScalarSchema extends Documented {
  readonly kind: 'scalar';
  readonly type: ScalarType;
  /** Filled in by validate when the key is absent. Defaults that depend on other keys are left to compile. */
  readonly defaultValue?: unknown;
  /** Inclusive bounds: integers and sizes in their unit, durations in milliseconds. */
  readonly min?: number;
  readonly max?: number;
  /** The accepted values of a 'choice' key. */
  readonly choices?: readonly string[];
}

export interface ObjectSchema extends Documented {
  readonly kind: 'object';
  readonly fields: Readonly<Record<string, Schema>>;
  /** Traefik keys refused by name; the value is an optional hint appended to the message. */
  readonly refused?: Readonly<Record<string, string>>;
  /** Traefik's `tls: {}` may also be written `tls: true` (and `false` turns it off). */
  readonly acceptsBoolean?: boolean;
  /** The refused keys are other kinds of this object (a `weighted` service instead of `loadBalancer`). */
  readonly refusedAreKinds?: boolean;
  /** Absent means the feature is off: the section is not filled with its defaults when left out. */
  readonly optIn?: boolean;
}

/** A mapping from user-chosen names (routers, services…) to objects of one shape. */
export interface MapSchema extends Documented {
  readonly kind: 'map';
  /** What one entry is called in messages: 'router', 'entry point'. */
  readonly entry: string;
  readonly value: Schema;
}

export interface ListSchema extends Documented {
  readonly kind: 'list';
  readonly item: Schema;
  /** Set when an empty list is an error; names one item for the message ('server'). */
  readonly nonEmpty?: string;
}

export type Schema = ScalarSchema | ObjectSchema | MapSchema | ListSchema;

/** The hint of a refused Traefik key that is simply not implemented yet (no hint). */
export const NOT_YET = '';

/** Traefik keys refused without a hint (most are simply not implemented yet). */
export function notYet(...keys: string[]): Record<string, string> {
  return Object.fromEntries(keys.map((key) => [key, NOT_YET]));
}

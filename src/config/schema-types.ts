/**
 * The shapes a config key can have (scalar, object, map, list), with the documentation and default that
 * every declaration carries; schema.ts and its section files declare Sluice's keys with them, `as const`,
 * so that `Checked<typeof schema>` computes the shape validate.ts hands to compile.ts: one declaration
 * gives the key its type, its default, its checks and its line in docs/configuration.md.
 */
import type { Strategy } from './snapshot.js';

/** entryPoints.<name>.address and admin.address, validated. */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** servers[].url, validated. */
export interface BackendUrl {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly pathPrefix: string;
}

/** What each scalar type is validated into (and so the type of its default). */
export interface ScalarValues {
  string: string;
  boolean: boolean;
  integer: number;
  /** Traefik duration: "10s", "1m30s", or a number of seconds; validated into milliseconds. */
  duration: number;
  /** Bytes: a number, or "64KiB", "16MiB", "1MB"; validated into bytes. */
  size: number;
  /** Balancing strategy name; Traefik's aliases are validated into Sluice's names. */
  strategy: Strategy;
  /** A finite number (fractions allowed), within min/max. */
  number: number;
  /** One of `choices`, as written. */
  choice: string;
  /** Listener address "[host]:port". */
  address: ListenAddress;
  /** Backend URL, parsed. */
  url: BackendUrl;
}

export type ScalarType = keyof ScalarValues;

export interface Documented {
  /** What the key does, in Markdown: its cell in the docs table. The first sentence must stand alone. */
  readonly doc: string;
  /** The default in words, for keys whose default is computed or inherited ('length of the rule'). A key
   *  with a `defaultValue` shows that value instead (and may add `defaultNote`). */
  readonly defaultText?: string;
  readonly required?: boolean;
  /** What to say after "expected" in messages, when the type alone ("a string") says too little. */
  readonly expects?: string;
  /** The Type column of the docs, when the one derived from the schema says too little ('file path'). */
  readonly typeText?: string;
}

interface ScalarOf<T extends ScalarType> extends Documented {
  readonly kind: 'scalar';
  readonly type: T;
  /** Filled in by validate when the key is absent (or its value is invalid). Defaults that depend on other
   *  keys are left to compile and described by defaultText. */
  readonly defaultValue?: ScalarValues[T];
  /** Words after the default in the docs: '(off)'. */
  readonly defaultNote?: string;
  /** Inclusive bounds: integers and sizes in their unit, durations in milliseconds. */
  readonly min?: number;
  readonly max?: number;
  /** The accepted values of a 'choice' key. */
  readonly choices?: readonly string[];
}

export type ScalarSchema = { [T in ScalarType]: ScalarOf<T> }[ScalarType];

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

// ---- The checked shape, computed from a declaration ------------------------------------------------

/**
 * What validate.ts makes of a value declared by S. A key is present whenever its object is when validate
 * always fills it (`AlwaysFilled`); every other key is optional: absent when left out, or when its value
 * was invalid (the problem is recorded and the config is refused, but compile still runs to report more).
 */
export type Checked<S> = S extends { readonly kind: 'scalar' }
  ? CheckedScalar<S>
  : S extends { readonly kind: 'object'; readonly fields: infer F }
    ? CheckedFields<F>
    : S extends { readonly kind: 'map'; readonly value: infer V }
      ? Readonly<Record<string, Checked<V>>>
      : S extends { readonly kind: 'list'; readonly item: infer I }
        ? readonly Checked<I>[]
        : never;

type CheckedScalar<S> = S extends { readonly type: 'choice'; readonly choices: readonly (infer C)[] }
  ? C
  : S extends { readonly type: infer T extends ScalarType }
    ? ScalarValues[T]
    : never;

/** A widened declaration (plain `ObjectSchema`) says nothing of its keys: a record of unknown values. */
type CheckedFields<F> = string extends keyof F
  ? { readonly [key: string]: unknown }
  : Flatten<
      { readonly [K in keyof F as AlwaysFilled<F[K]> extends true ? K : never]: Checked<F[K]> } & {
        readonly [K in keyof F as AlwaysFilled<F[K]> extends true ? never : K]?: Checked<F[K]>;
      }
    >;

type Flatten<T> = { [K in keyof T]: T[K] };

/**
 * Keys validate never leaves out of an object it returns: scalars with a defaultValue, and sections it
 * fills with their defaults when absent: not opt-in, not written as a boolean, no required key of their own.
 * validate.ts's `fillsWhenAbsent` is the same rule at run time.
 */
export type AlwaysFilled<S> = S extends { readonly kind: 'scalar'; readonly defaultValue: unknown }
  ? true
  : S extends { readonly kind: 'object'; readonly fields: infer F }
    ? S extends { readonly optIn: true } | { readonly acceptsBoolean: true }
      ? false
      : string extends keyof F
        ? false
        : [RequiredKeys<F>] extends [never]
          ? true
          : false
    : false;

type RequiredKeys<F> = { [K in keyof F]: F[K] extends { readonly required: true } ? K : never }[keyof F];

/** Every `[path, type]` of a scalar key that declares a defaultValue, with defaultOf's path notation. */
export type DefaultEntries<S, P extends string = ''> = S extends { readonly kind: 'scalar'; readonly defaultValue: unknown }
  ? [P, Checked<S>]
  : S extends { readonly kind: 'object'; readonly fields: infer F }
    ? { [K in keyof F & string]: DefaultEntries<F[K], P extends '' ? K : `${P}.${K}`> }[keyof F & string]
    : S extends { readonly kind: 'map'; readonly value: infer V }
      ? DefaultEntries<V, `${P}.<name>`>
      : S extends { readonly kind: 'list'; readonly item: infer I }
        ? DefaultEntries<I, `${P}[]`>
        : never;

/**
 * The keys of fan-out (part of CONFIG_SCHEMA in schema.ts): GRIP subscriptions on proxied WebSockets, the
 * publish listener (Pushpin's HTTP control API), the slow-subscriber policy and the optional Redis link
 * between replicas. Absent means off: no publish listener, no grip extension offered to backends.
 */
import type { ObjectSchema } from './schema-types.js';
import { MiB } from './duration.js';


export const fanoutSchema = {
  kind: 'object',
  optIn: true,
  acceptsBoolean: true,
  doc: 'Present (`{}` or `true`): backends may subscribe their WebSockets to channels (GRIP) and publishers publish to them. Absent: off.',
  defaultText: 'absent (off)',
  fields: {
    publish: {
      kind: 'object',
      doc: "The publish listener: Pushpin's HTTP control API (POST /publish/), served by the primary, apart from the entry points.",
      fields: {
        address: {
          kind: 'scalar',
          type: 'address',
          defaultValue: { host: '127.0.0.1', port: 5561 },
          doc: "Where the publish listener listens (Pushpin's default port); keep it private.",
        },
        key: {
          kind: 'scalar',
          type: 'string',
          defaultText: 'env SLUICE_FANOUT_KEY; none',
          doc: "Key that publishers' JWTs (HS256, as @fanoutio/grip signs them) must be signed with; 'base64:…' is decoded. Required unless address is loopback.",
        },
        maxBodySize: {
          kind: 'scalar',
          type: 'size',
          min: 1,
          max: 64 * MiB,
          defaultValue: MiB,
          doc: 'Largest publish request body; a larger one is refused with 413 and nothing published.',
        },
      },
    },
    slowConsumer: {
      kind: 'scalar',
      type: 'choice',
      choices: ['drop', 'close'],
      defaultValue: 'drop',
      expects: "'drop' or 'close'",
      doc: "What happens to a subscriber whose unsent data passes slowConsumerBuffer: 'drop' (it misses publications until it catches up, counted) or 'close' (closed with 1013, counted).",
    },
    slowConsumerBuffer: {
      kind: 'scalar',
      type: 'size',
      min: 1,
      max: 1024 * MiB,
      defaultValue: MiB,
      doc: 'Unsent data of a subscriber past which the slowConsumer policy applies (checked every 100 ms).',
    },
    maxSubscriptions: {
      kind: 'scalar',
      type: 'integer',
      min: 1,
      max: 100_000,
      defaultValue: 20,
      doc: "Channels one connection may be subscribed to at once (Pushpin's connection_subscription_max); further subscribes are ignored.",
    },
    redis: {
      kind: 'object',
      doc: 'Optional: share publications between Sluice replicas through Redis pub/sub.',
      fields: {
        url: {
          kind: 'scalar',
          type: 'string',
          required: true,
          expects: 'a URL like "redis://10.0.0.5:6379" or "rediss://user:pass@redis:6380/0"',
          doc: 'Redis server (redis:// or rediss://).',
        },
        channel: {
          kind: 'scalar',
          type: 'string',
          defaultValue: 'sluice:fanout',
          doc: 'Redis pub/sub channel the replicas share.',
        },
      },
    },
  },
} as const satisfies ObjectSchema;

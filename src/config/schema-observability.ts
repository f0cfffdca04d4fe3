/**
 * The keys of Sluice's observability (part of CONFIG_SCHEMA in schema.ts): the admin listener, the log and
 * the access log, with Traefik's log and accessLog keys that Sluice does not support refused by name.
 */
import type { ObjectSchema } from './schema-types.js';
import { notYet } from './schema-types.js';

export const adminSchema: ObjectSchema = {
  kind: 'object',
  doc: 'Sluice: the admin listener (/metrics, /health, /ready, /api/*, /dashboard), apart from the entry points.',
  fields: {
    address: {
      kind: 'scalar',
      type: 'address',
      defaultValue: { host: '', port: 9090 },
      defaultText: '":9090"',
      doc: 'Where the admin listener listens; keep it off the public network (its read-only endpoints have no authentication).',
    },
    token: {
      kind: 'scalar',
      type: 'string',
      defaultText: 'env SLUICE_ADMIN_TOKEN; none',
      doc: 'Bearer token that mutating endpoints (POST /api/reload) require; without one they answer 401 unless the admin listener is bound to loopback only.',
    },
  },
};

export const logSchema: ObjectSchema = {
  kind: 'object',
  doc: "Sluice's own log (JSON lines on stderr, pino).",
  fields: {
    level: {
      kind: 'scalar',
      type: 'choice',
      choices: ['DEBUG', 'INFO', 'WARN', 'ERROR', 'debug', 'info', 'warn', 'error'],
      defaultValue: 'INFO',
      defaultText: 'INFO',
      expects: "'DEBUG', 'INFO', 'WARN' or 'ERROR', in upper or lower case",
      doc: "Least severe level written: DEBUG, INFO, WARN or ERROR (as Traefik's log.level; lowercase works too).",
    },
  },
  refused: {
    ...notYet('filePath', 'noColor', 'maxSize', 'maxAge', 'maxBackups', 'compress'),
    format: 'the log is always JSON lines on stderr',
  },
};

export const accessLogSchema: ObjectSchema = {
  kind: 'object',
  acceptsBoolean: true,
  doc: 'Present (`{}` or `true`): one JSON line per closed WebSocket connection. Absent: no access log.',
  defaultText: 'absent (off)',
  fields: {
    filePath: {
      kind: 'scalar',
      type: 'string',
      defaultText: 'standard output',
      doc: "File the access log is appended to, relative to the config file's directory.",
    },
    format: {
      kind: 'scalar',
      type: 'choice',
      choices: ['json'],
      defaultValue: 'json',
      defaultText: 'json',
      expects: "'json': Traefik's 'common' format is not supported",
      doc: "Only 'json': one JSON object per line.",
    },
  },
  refused: notYet('bufferingSize', 'filters', 'fields', 'addInternals'),
};

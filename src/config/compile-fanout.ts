/**
 * Compiles the `fanout` section (schema-fanout.ts) into FanoutSettings: defaults applied (the section may
 * be written `fanout: true`, which validation leaves empty), the publish key read from the config or the
 * environment and decoded as @fanoutio/grip decodes it, the Redis URL checked.
 */
import { formatSize } from './duration.js';
import { keyPath, type Problems } from './errors.js';
import { defaultOf } from './schema.js';
import type { FanoutSettings } from './snapshot.js';

interface FanoutConfig {
  publish?: { address?: { host: string; port: number }; key?: string; maxBodySize?: number };
  slowConsumer?: 'drop' | 'close';
  slowConsumerBuffer?: number;
  maxSubscriptions?: number;
  redis?: { url?: string; channel?: string };
}

/** A host only this machine can reach: a publish listener there may go without a key. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** A key as @fanoutio/grip's loadKey reads a string: 'base64:…' is decoded, anything else is its UTF-8. */
export function keyBytes(key: string): Buffer | null {
  if (!key.startsWith('base64:')) return Buffer.from(key, 'utf8');
  const text = key.slice(7).replaceAll('-', '+').replaceAll('_', '/');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  const bytes = Buffer.from(text, 'base64');
  return bytes.length > 0 ? bytes : null;
}

/** `config` is validate.ts's CheckedConfig; its `fanout` section was checked against fanoutSchema. */
export function compileFanout(config: { fanout?: object; websocket?: { clientMaxBuffer?: number } }, problems: Problems): FanoutSettings | null {
  const fanout = config.fanout as FanoutConfig | undefined;
  if (fanout === undefined) return null;
  const slowConsumerBuffer = fanout.slowConsumerBuffer ?? (defaultOf('fanout.slowConsumerBuffer') as number);
  const clientMaxBuffer = config.websocket?.clientMaxBuffer ?? (defaultOf('websocket.clientMaxBuffer') as number);
  if (slowConsumerBuffer >= clientMaxBuffer) {
    // Past clientMaxBuffer uWebSockets.js skips a client without telling: the policy must act before.
    problems.add(
      'fanout.slowConsumerBuffer',
      `${formatSize(slowConsumerBuffer)} is not below websocket.clientMaxBuffer (${formatSize(clientMaxBuffer)}) (expected a smaller size, or a larger websocket.clientMaxBuffer)`,
    );
  }
  const address = fanout.publish?.address ?? (defaultOf('fanout.publish.address') as { host: string; port: number });
  const keyText = fanout.publish?.key ?? process.env.SLUICE_FANOUT_KEY ?? '';
  let keyBase64 = '';
  if (keyText !== '') {
    const bytes = keyBytes(keyText);
    if (bytes === null) problems.add(keyPath('fanout.publish', 'key'), "invalid base64 after 'base64:' (expected 'base64:' followed by the key's bytes in base64, or the key as text)");
    else keyBase64 = bytes.toString('base64');
  } else if (!isLoopback(address.host)) {
    problems.add(
      'fanout.publish',
      `the publish listener on '${address.host === '' ? '*' : address.host}:${address.port}' is not loopback-only and has no key (expected fanout.publish.key or SLUICE_FANOUT_KEY)`,
    );
  }
  const redisUrl = fanout.redis?.url ?? '';
  if (redisUrl !== '' && !/^rediss?:\/\/[^/]/.test(redisUrl)) {
    problems.add(keyPath('fanout.redis', 'url'), `invalid Redis URL '${redisUrl}' (expected a URL like "redis://10.0.0.5:6379")`);
  }
  return {
    publishHost: address.host,
    publishPort: address.port,
    keyBase64,
    maxBodySize: fanout.publish?.maxBodySize ?? (defaultOf('fanout.publish.maxBodySize') as number),
    slowConsumer: fanout.slowConsumer ?? (defaultOf('fanout.slowConsumer') as 'drop' | 'close'),
    slowConsumerBuffer,
    maxSubscriptions: fanout.maxSubscriptions ?? (defaultOf('fanout.maxSubscriptions') as number),
    redisUrl,
    redisChannel: fanout.redis?.channel ?? (defaultOf('fanout.redis.channel') as string),
  };
}

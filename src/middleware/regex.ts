/**
 * Regular expressions as Traefik's middlewares use them: compiled from the spec's JavaScript translation, and
 * replacement templates expanded with Go's Regexp.Expand rules ($1, ${1}, $name, ${name}, $$), which differ
 * from String.replace's ($12 is group 12 in Go, and an unknown name expands to nothing).
 */
import type { RegexSpec } from '../config/middleware-spec.js';

export function compileRegex(spec: RegexSpec, global = false): RegExp {
  return new RegExp(spec.source, global ? `${spec.flags}g` : spec.flags);
}

/** Go's Regexp.Expand of `template` for one match. */
export function expand(template: string, match: RegExpExecArray): string {
  let out = '';
  let at = 0;
  while (at < template.length) {
    const dollar = template.indexOf('$', at);
    if (dollar < 0 || dollar === template.length - 1) {
      out += template.slice(at);
      break;
    }
    out += template.slice(at, dollar);
    let name: string;
    let end: number;
    if (template[dollar + 1] === '$') {
      out += '$';
      at = dollar + 2;
      continue;
    }
    if (template[dollar + 1] === '{') {
      const close = template.indexOf('}', dollar + 2);
      name = close < 0 ? '' : template.slice(dollar + 2, close);
      end = close + 1;
      if (close < 0 || !/^\w+$/.test(name)) {
        // Go leaves a malformed reference as written.
        out += '$';
        at = dollar + 1;
        continue;
      }
    } else {
      const word = /^\w+/.exec(template.slice(dollar + 1));
      if (word === null) {
        out += '$';
        at = dollar + 1;
        continue;
      }
      name = word[0];
      end = dollar + 1 + name.length;
    }
    out += groupValue(match, name);
    at = end;
  }
  return out;
}

function groupValue(match: RegExpExecArray, name: string): string {
  if (/^\d+$/.test(name)) return match[Number(name)] ?? '';
  return match.groups?.[name] ?? '';
}

/** Go's ReplaceAllString: every non-overlapping match of `re` (global) replaced by the expanded template. */
export function replaceAll(re: RegExp, input: string, template: string): string {
  re.lastIndex = 0;
  let out = '';
  let last = 0;
  for (let match = re.exec(input); match !== null; match = re.exec(input)) {
    out += input.slice(last, match.index) + expand(template, match);
    last = match.index + match[0].length;
    if (match[0].length === 0) re.lastIndex++;
    if (re.lastIndex > input.length) break;
  }
  return out + input.slice(last);
}

import { UsageError } from '../model/errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * "30s", "500ms", "2m", "1h", "1m30s", or a bare number of seconds → milliseconds.
 * Throws UsageError (exit 2) naming the option for anything else, or a value under 1 ms.
 */
export function parseDuration(text: string, option: string): number {
  const s = text.trim();
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(s)) ms = Number(s) * 1000;
  else {
    const parts = [...s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
    if (!parts.length || parts.map((p) => p[0]).join('') !== s)
      throw new UsageError(`invalid ${option} '${text}': use a duration such as 30s, 500ms, 2m or 1h`);
    ms = parts.reduce((sum, p) => sum + Number(p[1]) * UNITS[p[2]!]!, 0);
  }
  if (!(ms >= 1)) throw new UsageError(`invalid ${option} '${text}': must be at least 1ms`);
  return Math.round(ms);
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

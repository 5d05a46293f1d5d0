import { accessSync, constants, readFileSync } from 'node:fs';
import { hostname as machineHostname } from 'node:os';
import { OperatorError } from '../errors.js';
import { configSchema, type ValidatedConfig } from './schema.js';

/** The relay's settings after defaults, override file and environment are merged and checked. */
export type Config = Omit<ValidatedConfig, 'hostname'> & { hostname: string };

export const DEFAULT_CONFIG_PATH = new URL('../../config/default.json', import.meta.url);

/** A config problem an operator fixes by editing a file or a variable; printed without a stack. */
export class ConfigError extends OperatorError {
  override name = 'ConfigError';
}

type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
type JsonObject = { [key: string]: JsonValue };

export interface LoadConfigOptions {
  /** Override file (`--config`); falls back to REBOUND_CONFIG. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const defaults = readJsonObject(DEFAULT_CONFIG_PATH, 'the default config');
  const overridePath = options.file ?? (env.REBOUND_CONFIG || undefined);
  const sources = new Map<string, string>();

  let merged = defaults;
  if (overridePath !== undefined) {
    const override = readJsonObject(overridePath, `config file ${overridePath}`);
    for (const key of leafKeys(override)) sources.set(key, `in ${overridePath}`);
    merged = mergeConfig(merged, override);
  }
  for (const variable of environmentVariables(defaults)) {
    const raw = env[variable.name];
    if (raw === undefined) continue;
    merged = setPath(merged, variable.path, parseEnvironmentValue(raw, variable.defaultValue));
    sources.set(variable.path.join('.'), `from ${variable.name}`);
  }

  const result = configSchema.safeParse(merged);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const parent = issue.path.map(String);
      if (issue.code === 'unrecognized_keys') {
        return issue.keys
          .map((key) => {
            const path = [...parent, key].join('.');
            return `${path}: unknown key${describeSource(sources, path)}`;
          })
          .join('\n');
      }
      const path = parent.join('.') || '(top level)';
      return `${path}: ${issue.message}${describeSource(sources, path)}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const config = { ...result.data, hostname: result.data.hostname ?? machineHostname() };
  checkReadableFiles(config);
  return config;
}

function describeSource(sources: Map<string, string>, path: string): string {
  for (const [key, source] of sources) {
    if (key === path || key.startsWith(`${path}.`) || path.startsWith(`${key}.`)) return ` (${source})`;
  }
  return ' (default)';
}

function checkReadableFiles(config: Config): void {
  const files: Array<[string, string | null]> = [
    ['submission.tls.key', config.submission.tls.key],
    ['submission.tls.cert', config.submission.tls.cert],
    ['delivery.tls.caFile', config.delivery.tls.caFile],
  ];
  for (const [key, path] of files) {
    if (path === null) continue;
    try {
      accessSync(path, constants.R_OK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new ConfigError(`invalid configuration:\n  ${key}: cannot read ${path} (${code})`);
    }
  }
}

function readJsonObject(path: string | URL, what: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`cannot read ${what} (${code}); check the path`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${what} is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(value)) throw new ConfigError(`${what} must hold a JSON object ({ ... })`);
  return value;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Objects merge key by key; arrays and scalars in the override replace the default whole. */
export function mergeConfig(base: JsonObject, override: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [key, value] of Object.entries(override)) {
    const current = out[key];
    out[key] = isObject(current) && isObject(value) ? mergeConfig(current, value) : value;
  }
  return out;
}

function leafKeys(object: JsonObject, prefix: string[] = []): string[] {
  return Object.entries(object).flatMap(([key, value]) =>
    isObject(value) && Object.keys(value).length > 0 ? leafKeys(value, [...prefix, key]) : [[...prefix, key].join('.')],
  );
}

function setPath(object: JsonObject, path: string[], value: JsonValue): JsonObject {
  const [head, ...rest] = path;
  if (head === undefined) return object;
  const child = object[head];
  return {
    ...object,
    [head]: rest.length === 0 ? value : setPath(isObject(child) ? child : {}, rest, value),
  };
}

export interface EnvironmentVariable {
  name: string;
  path: string[];
  defaultValue: JsonValue;
}

/**
 * Every leaf key of the defaults can be set from the environment: `submission.maxMessageSize`
 * is REBOUND_SUBMISSION_MAX_MESSAGE_SIZE. Deriving the names keeps the list and the defaults
 * from drifting apart.
 */
export function environmentVariables(defaults: JsonObject = readJsonObject(DEFAULT_CONFIG_PATH, 'the default config')): EnvironmentVariable[] {
  const walk = (object: JsonObject, prefix: string[]): EnvironmentVariable[] =>
    Object.entries(object).flatMap(([key, value]) => {
      const path = [...prefix, key];
      // An empty object (delivery.routes) is one value, set whole as JSON.
      if (isObject(value) && Object.keys(value).length > 0) return walk(value, path);
      const name = `REBOUND_${path.map((part) => part.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`;
      return [{ name, path, defaultValue: value }];
    });
  return walk(defaults, []);
}

function parseEnvironmentValue(raw: string, defaultValue: JsonValue): JsonValue {
  const text = raw.trim();
  if (typeof defaultValue === 'number') return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : raw;
  if (typeof defaultValue === 'boolean') return text === 'true' ? true : text === 'false' ? false : raw;
  const json = isObject(defaultValue) || (Array.isArray(defaultValue) && text.startsWith('['));
  if (json) {
    try {
      return JSON.parse(text) as JsonValue;
    } catch {
      return raw; // the schema then names the key and the variable
    }
  }
  if (Array.isArray(defaultValue)) return text === '' ? [] : text.split(',').map((item) => item.trim());
  if (defaultValue === null && text === '') return null;
  return raw;
}

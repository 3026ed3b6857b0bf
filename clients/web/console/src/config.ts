/**
 * The console's runtime settings: `config.json` beside the page (on
 * Kubernetes the ConfigMap console-config), read once at start:
 *
 *     {"oidc": {"issuer": "https://id.example.com/realms/platform",
 *               "clientId": "casemesh-console", "scope": "openid profile",
 *               "token": "access_token"}}
 *
 * Without the file, or without `oidc`, agents sign in with the development
 * sign-in (local stacks only). `token` is the token the console sends to the
 * gateway (`access_token`, or `id_token` when the provider's access tokens are
 * not JWTs for the gateway); `rolesClaim` and `roleMap` say where its roles
 * are, as the gateway's CASEMESH_JWT_ROLES_CLAIM and CASEMESH_JWT_ROLE_MAP do
 * (the console only uses them to show what a role may do; the gateway decides).
 */

export interface OidcConfig {
  issuer: URL;
  clientId: string;
  scope: string;
  token: "access_token" | "id_token";
  rolesClaim: string;
  roleMap: Record<string, string> | undefined;
}

export interface ConsoleConfig {
  oidc: OidcConfig | undefined;
}

/** config.json is there but says something the console cannot use. */
export class ConfigError extends Error {}
/** config.json could not be had for now (the server or a proxy before it away). */
export class ConfigUnreachable extends Error {}

const ROLES = ["user", "agent", "admin"];
const ROLES_CLAIM = /^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*$/;
const LOOPBACK = ["localhost", "127.0.0.1", "[::1]"];

/** Plain http only for a provider on this machine (tests, local runs). */
export function insecureAllowed(url: URL): boolean {
  return url.protocol === "http:" && LOOPBACK.includes(url.hostname);
}

function text(value: unknown, name: string, fallback?: string): string {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== "string" || !value.trim()) {
    throw new ConfigError(`oidc.${name} must be a non-empty string`);
  }
  return value.trim();
}

function oidcOf(raw: unknown): OidcConfig {
  if (typeof raw !== "object" || raw === null) {
    throw new ConfigError("oidc must be an object");
  }
  const o = raw as Record<string, unknown>;
  let issuer: URL;
  try {
    issuer = new URL(text(o.issuer, "issuer"));
  } catch (err) {
    throw err instanceof ConfigError ? err : new ConfigError("oidc.issuer must be a URL");
  }
  if (issuer.protocol !== "https:" && !insecureAllowed(issuer)) {
    throw new ConfigError("oidc.issuer must be an https:// URL (http:// only on loopback)");
  }
  const scope = text(o.scope, "scope", "openid");
  if (!scope.split(/\s+/).includes("openid")) {
    throw new ConfigError("oidc.scope must include openid");
  }
  const token = o.token ?? "access_token";
  if (token !== "access_token" && token !== "id_token") {
    throw new ConfigError("oidc.token must be access_token or id_token");
  }
  const rolesClaim = text(o.rolesClaim, "rolesClaim", "roles");
  if (!ROLES_CLAIM.test(rolesClaim)) {
    throw new ConfigError("oidc.rolesClaim must be a dotted path such as realm_access.roles");
  }
  let roleMap: Record<string, string> | undefined;
  if (o.roleMap !== undefined) {
    const map = o.roleMap;
    if (
      typeof map !== "object" ||
      map === null ||
      !Object.values(map).every((r) => typeof r === "string" && ROLES.includes(r))
    ) {
      throw new ConfigError(`oidc.roleMap must map role names onto ${ROLES.join(", ")}`);
    }
    roleMap = map as Record<string, string>;
  }
  return { issuer, clientId: text(o.clientId, "clientId"), scope, token, rolesClaim, roleMap };
}

/**
 * Reads `config.json`; none (404) is no configuration; a proxy whose server
 * is away (502, 503, 504) or a timeout or throttle (408, 429) a
 * ConfigUnreachable, to be tried again; anything unusable a ConfigError.
 */
export async function loadConfig(): Promise<ConsoleConfig> {
  const res = await fetch(new URL("./config.json", location.href), { cache: "no-cache" });
  if (res.status === 404) {
    return { oidc: undefined };
  }
  if ([408, 429, 502, 503, 504].includes(res.status)) {
    throw new ConfigUnreachable(`HTTP ${res.status}`);
  }
  if (!res.ok) {
    throw new ConfigError(`HTTP ${res.status}`);
  }
  let data: unknown;
  try {
    data = await res.json();
  } catch {
    throw new ConfigError("not JSON");
  }
  if (typeof data !== "object" || data === null) {
    throw new ConfigError("not a JSON object");
  }
  const oidc = (data as Record<string, unknown>).oidc;
  return { oidc: oidc === undefined ? undefined : oidcOf(oidc) };
}

let rolesClaim = "roles";
let roleMap: Record<string, string> | undefined;

/** Where the roles are in the tokens the console sends (from config.json). */
export function readRolesWith(config: OidcConfig): void {
  rolesClaim = config.rolesClaim;
  roleMap = config.roleMap;
}

/** The token's roles in our names, as the gateway reads them (identity.py). */
export function rolesIn(claims: object): string[] {
  let found: unknown = claims;
  for (const step of rolesClaim.split(".")) {
    found =
      typeof found === "object" && found !== null
        ? (found as Record<string, unknown>)[step]
        : undefined;
  }
  const raw = Array.isArray(found) ? found.map(String) : [];
  if (!roleMap) return raw;
  const map = roleMap;
  const mapped = [...new Set(raw.flatMap((r) => (Object.hasOwn(map, r) ? [map[r] ?? ""] : [])))];
  return mapped.length ? mapped : ["user"];
}

/**
 * Signing in with the platform's OpenID Connect provider: the authorization
 * code flow with PKCE, the console being a public client (no secret; RFC
 * 9700 and "OAuth 2.0 for Browser-Based Applications"), through oauth4webapi.
 *
 * 1. "Sign in": the provider's discovery document, then a PKCE code verifier
 *    (S256), a state and a nonce kept in sessionStorage, and off to the
 *    authorization endpoint; the redirect URI is this page (`…/console/`).
 * 2. Back with `?code&state&iss` (or `?error`): the query leaves the address
 *    bar at once and the request kept is used up; the answer must carry our
 *    state (and the provider's issuer, RFC 9207); the code is exchanged at the
 *    token endpoint with the verifier; the ID token's issuer, audience, times
 *    and nonce are checked. Its signature is not: it came straight from the
 *    token endpoint over TLS (OpenID Connect Core 3.1.3.7).
 * 3. The token config.json names is the bearer token the gateway checks.
 *    Before it expires, a refresh token (if one was issued) gets the next one;
 *    without one the agent goes through sign-in again and comes back to the
 *    case they were on (the `#tickets/<id>` link).
 * 4. Signing out forgets the tokens and, when the provider has an
 *    end_session_endpoint, ends its session too.
 */

import { Code, ConnectError } from "@casemesh/client";
import * as oauth from "oauth4webapi";

import { currentToken, setToken } from "./api";
import { ConfigError, type OidcConfig, insecureAllowed, loadConfig, readRolesWith } from "./config";
import { $, busy, fromSession as read, locale, say, t } from "./ui";

// The sign-in under way (single use) and the tokens beside the bearer token.
const PENDING_KEY = "casemesh.console.oidc.pending";
const SESSION_KEY = "casemesh.console.oidc.session";
// Renew this long before the token expires (a quarter of its life if shorter).
const RENEW_LEAD_MS = 60_000;
// A refresh the network failed is tried again this often while the token lasts.
const RETRY_MS = 10_000;

interface Pending {
  verifier: string;
  state: string;
  nonce: string;
  /** The address's fragment when the agent left: the case they were on. */
  returnTo: string;
}

interface Session {
  /** When the bearer token expires (ms since the epoch), if known. */
  expiresAt?: number;
  refreshToken?: string;
  /** The ID token, as the hint for the provider's sign-out. */
  idToken?: string;
  endSession?: string;
}

let config: OidcConfig | undefined;
let discovered: oauth.AuthorizationServer | undefined;
let renewTimer: number | undefined;
/** Told just before the agent leaves for the provider from the session notice. */
let leavingToSignInAgain: (() => void) | undefined;

/**
 * `leaving` runs just before the browser goes to the provider when the agent
 * chooses to sign in again from the session notice (what they typed and the
 * case they hold are to be kept for their return), not when it cannot go.
 */
export function onSigningInAgain(leaving: () => void): void {
  leavingToSignInAgain = leaving;
}

/** What the provider needs to know of this page: http only on loopback, a timeout. */
function http(c: OidcConfig) {
  return {
    [oauth.allowInsecureRequests]: insecureAllowed(c.issuer),
    signal: () => AbortSignal.timeout(15_000),
  };
}

const clientOf = (c: OidcConfig): oauth.Client => ({ client_id: c.clientId });

/** This page, as registered with the provider: `…/console/`. */
const redirectUri = () => new URL(".", `${location.origin}${location.pathname}`).href;

async function discover(c: OidcConfig): Promise<oauth.AuthorizationServer> {
  discovered ??= await oauth.processDiscoveryResponse(
    c.issuer,
    await oauth.discoveryRequest(c.issuer, http(c)),
  );
  return discovered;
}

const failure = (message: string) => new ConnectError(message, Code.Unknown);

/**
 * config.json could not be read (the network, the server away): which
 * sign-in to offer is not known until it is read again.
 */
export class SettingsUnreachable extends ConnectError {}

/** A failed sign-in step, in the page's language. */
function explained(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof oauth.AuthorizationResponseError || err instanceof oauth.ResponseBodyError) {
    if (err.error === "access_denied") return failure(t("signInDenied"));
    const said = err.error_description ? ` ${err.error_description}` : "";
    return failure(`${t("signInRefused", { error: err.error })}${said}`);
  }
  if (err instanceof TypeError || (err instanceof DOMException && err.name === "TimeoutError")) {
    return failure(t("providerUnreachable")); // the network, or the provider's CORS
  }
  return failure(t("signInFailed", { reason: err instanceof Error ? err.message : String(err) }));
}

/**
 * Off to the provider to sign in, to come back to `returnTo` (a case's `#…`
 * link); `leaving` runs just before the browser goes.
 */
async function signInAtProvider(
  c: OidcConfig,
  returnTo: string,
  leaving?: () => void,
): Promise<void> {
  const as = await discover(c);
  if (!as.authorization_endpoint) {
    throw failure(t("signInFailed", { reason: "no authorization_endpoint" }));
  }
  const pending: Pending = {
    verifier: oauth.generateRandomCodeVerifier(),
    state: oauth.generateRandomState(),
    nonce: oauth.generateRandomNonce(),
    returnTo,
  };
  const url = new URL(as.authorization_endpoint);
  for (const [name, value] of Object.entries({
    client_id: c.clientId,
    redirect_uri: redirectUri(),
    response_type: "code",
    scope: c.scope,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await oauth.calculatePKCECodeChallenge(pending.verifier),
    code_challenge_method: "S256",
    ui_locales: locale,
  })) {
    url.searchParams.set(name, value);
  }
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  say(t("signInRedirecting"));
  leaving?.();
  location.assign(url.href);
}

/** Back from the provider with `answer` (the page's query): the token, or an error. */
async function completeSignIn(c: OidcConfig, answer: URLSearchParams): Promise<void> {
  const pending = read<Pending>(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  // Whatever happens, the code and state leave the address bar (and history).
  history.replaceState(null, "", `${location.pathname}${pending?.returnTo ?? ""}`);
  setToken(undefined);
  forgetSignIn();
  if (!pending) {
    throw failure(t("signInNotStarted"));
  }
  const as = await discover(c);
  let params: URLSearchParams;
  try {
    params = oauth.validateAuthResponse(as, clientOf(c), answer, pending.state);
  } catch (err) {
    if (err instanceof oauth.AuthorizationResponseError) throw err;
    throw failure(t("signInMismatch")); // not our state, or another issuer's answer
  }
  const response = await oauth.authorizationCodeGrantRequest(
    as,
    clientOf(c),
    oauth.None(),
    params,
    redirectUri(),
    pending.verifier,
    http(c),
  );
  const tokens = await oauth.processAuthorizationCodeResponse(as, clientOf(c), response, {
    expectedNonce: pending.nonce,
    requireIdToken: true,
  });
  keep(c, as, tokens, undefined);
}

/** The expiry a JWT claims (for timing the renewal only; the gateway checks it). */
function expiryOf(jwt: string): number | undefined {
  try {
    const payload = jwt.split(".")[1] ?? "";
    const exp: unknown = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/"))).exp;
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined; // not a JWT: an opaque access token
  }
}

/** Takes the tokens the provider issued (at sign-in, or a refresh that replaces `before`). */
function keep(
  c: OidcConfig,
  as: oauth.AuthorizationServer,
  tokens: oauth.TokenEndpointResponse,
  before: Session | undefined,
): void {
  const bearer = c.token === "id_token" ? tokens.id_token : tokens.access_token;
  if (!bearer) {
    throw failure(t("signInFailed", { reason: `no ${c.token}` }));
  }
  const session: Session = {
    expiresAt:
      c.token === "access_token" && tokens.expires_in !== undefined
        ? Date.now() + tokens.expires_in * 1000
        : expiryOf(bearer),
    refreshToken: tokens.refresh_token ?? before?.refreshToken,
    idToken: tokens.id_token ?? before?.idToken,
    endSession: as.end_session_endpoint,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  setToken(bearer);
  hideSessionNotice();
  renewBeforeExpiry(c, session);
}

function renewBeforeExpiry(c: OidcConfig, session: Session): void {
  clearTimeout(renewTimer);
  if (session.expiresAt === undefined) return;
  const left = session.expiresAt - Date.now();
  const wait = Math.min(left - Math.min(RENEW_LEAD_MS, left / 4), 2 ** 31 - 1);
  renewTimer = window.setTimeout(() => void renew(c), Math.max(0, wait));
}

/**
 * The next token from the refresh token (true). Failing that (or with no
 * refresh token), false: at page load the agent is sent to sign in again, back
 * to this case; while they work, a notice says when the sign-in ends and lets
 * them sign in again when they choose (a trip to the provider unasked would
 * give back the held case and lose what they are typing).
 */
async function renew(c: OidcConfig, atLoad = false): Promise<boolean> {
  const session = read<Session>(SESSION_KEY);
  if (!currentToken() || !session) return false; // signed out meanwhile
  if (session.refreshToken) {
    try {
      const as = await discover(c);
      const response = await oauth.refreshTokenGrantRequest(
        as,
        clientOf(c),
        oauth.None(),
        session.refreshToken,
        http(c),
      );
      const tokens = await oauth.processRefreshTokenResponse(as, clientOf(c), response);
      if (!currentToken()) return false; // signed out while it was on its way
      keep(c, as, tokens, session);
      return true;
    } catch (err) {
      console.warn("the sign-in could not be renewed with its refresh token", err);
      const unreachable = err instanceof TypeError || err instanceof DOMException;
      if (unreachable && (session.expiresAt ?? 0) - Date.now() > 2 * RETRY_MS) {
        renewTimer = window.setTimeout(() => void renew(c), RETRY_MS);
        return true;
      }
    }
  }
  if (!atLoad) {
    signInEndsAt = session.expiresAt ?? Date.now();
    renderSessionNotice();
    return false;
  }
  say(t("signInRedirecting"));
  await signInAtProvider(c, location.hash).catch((err: unknown) => {
    console.warn("the sign-in could not be renewed", err);
  });
  return false;
}

/** When the sign-in that could not be renewed ends (the notice shows while set). */
let signInEndsAt: number | undefined;

/** Shows (in the page's language) or hides the notice that the sign-in ends. */
export function renderSessionNotice(): void {
  const notice = $("session-notice");
  notice.hidden = signInEndsAt === undefined;
  if (signInEndsAt === undefined) return;
  const time = new Date(signInEndsAt).toLocaleTimeString(locale, {
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  });
  $("session-notice-text").textContent = t("signInEnds", { time });
}

function hideSessionNotice(): void {
  signInEndsAt = undefined;
  renderSessionNotice();
}

/** Forgets the provider's tokens: signing out, or the gateway refused the token. */
export function forgetSignIn(): void {
  clearTimeout(renewTimer);
  hideSessionNotice();
  sessionStorage.removeItem(SESSION_KEY);
}

/**
 * The provider's sign-out page to send the browser to, if it has one (its
 * end_session_endpoint), coming back here; read before `forgetSignIn`.
 */
export function providerSignOut(): string | undefined {
  const session = read<Session>(SESSION_KEY);
  if (!config || !session?.endSession) return undefined;
  const url = new URL(session.endSession);
  url.searchParams.set("client_id", config.clientId);
  url.searchParams.set("post_logout_redirect_uri", redirectUri());
  if (session.idToken) url.searchParams.set("id_token_hint", session.idToken);
  return url.href;
}

/**
 * At page load: reads config.json and offers its sign-in (the provider's, or
 * the development form without one; neither while config.json cannot be
 * reached: `SettingsUnreachable`, to be tried again); back from the provider,
 * completes the sign-in. Resolves true when the agent is signed in.
 */
export async function startSignIn(): Promise<boolean> {
  try {
    config = (await loadConfig()).oidc;
  } catch (err) {
    if (!(err instanceof ConfigError)) {
      throw new SettingsUnreachable(t("unreachable"), Code.Unavailable, undefined, undefined, err);
    }
    $("dev-sign-in").hidden = false;
    const reason = err instanceof Error ? err.message : String(err);
    throw failure(t("configInvalid", { reason }));
  }
  $("dev-sign-in").hidden = config !== undefined;
  $("provider-sign-in").hidden = config === undefined;
  if (!config) return currentToken() !== undefined;
  const c = config;
  readRolesWith(c);
  const button = $<HTMLButtonElement>("provider-sign-in-button");
  button.addEventListener("click", () => {
    void busy(button, () =>
      signInAtProvider(c, location.hash).catch((e) => Promise.reject(explained(e))),
    );
  });
  const again = $<HTMLButtonElement>("session-sign-in");
  again.addEventListener("click", () => {
    void busy(again, () =>
      signInAtProvider(c, location.hash, () => leavingToSignInAgain?.()).catch((e) =>
        Promise.reject(explained(e)),
      ),
    );
  });
  const answer = new URLSearchParams(location.search);
  if (answer.has("code") || answer.has("error")) {
    await completeSignIn(c, answer).catch((err: unknown) => Promise.reject(explained(err)));
    return true;
  }
  const session = read<Session>(SESSION_KEY);
  if (!currentToken() || !session) return currentToken() !== undefined;
  if ((session.expiresAt ?? Infinity) <= Date.now()) {
    return renew(c, true); // the tab slept past the token's expiry, or was reopened
  }
  renewBeforeExpiry(c, session);
  return true;
}

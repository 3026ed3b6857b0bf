/**
 * The signed-in agent and the API clients. The bearer token comes from the
 * development sign-in (local stacks) or from the platform's OpenID Connect
 * provider (`oidc.ts`); it lives in sessionStorage, so it leaves with the tab.
 */

import {
  AppealService,
  CaseQueueService,
  Code,
  ConnectError,
  createClient,
  connectTransport,
  devSignIn as signInForDevelopment,
  EvidenceService,
  HelpCenterService,
  grpcWebTransport,
  ReportService,
  TicketService,
} from "@casemesh/client";

import { rolesIn } from "./config";
import { locale } from "./ui";

const TOKEN_KEY = "casemesh.console.token";

let token: string | undefined = sessionStorage.getItem(TOKEN_KEY) ?? undefined;

export const currentToken = () => token;

export function setToken(value: string | undefined): void {
  token = value;
  if (value) {
    sessionStorage.setItem(TOKEN_KEY, value);
  } else {
    sessionStorage.removeItem(TOKEN_KEY);
  }
}

const useGrpcWeb = new URLSearchParams(location.search).get("transport") === "grpc-web";
export const transportName = useGrpcWeb ? "gRPC-Web" : "Connect";
const transport = useGrpcWeb
  ? grpcWebTransport(location.origin, currentToken, () => locale)
  : connectTransport(location.origin, currentToken, () => locale);

export const queue = createClient(CaseQueueService, transport);
export const tickets = createClient(TicketService, transport);
export const reports = createClient(ReportService, transport);
export const appeals = createClient(AppealService, transport);
export const evidence = createClient(EvidenceService, transport);
export const help = createClient(HelpCenterService, transport);

interface Claims {
  sub: string;
  roles: string[];
}

/** The token's claims, for "signed in as" and the agent role; never trusted for anything else. */
export function claims(): Claims {
  try {
    const part = (token ?? "").split(".")[1] ?? "";
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const parsed: unknown = JSON.parse(
      new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))),
    );
    if (typeof parsed !== "object" || !parsed) {
      return { sub: "", roles: [] };
    }
    const sub = "sub" in parsed ? String(parsed.sub) : "";
    return { sub, roles: rolesIn(parsed) };
  } catch {
    return { sub: "", roles: [] };
  }
}

/** Local stacks only: the gateway's development sign-in mints a token with the given roles. */
export async function devSignIn(subject: string, roles: string[]): Promise<string> {
  return signInForDevelopment(location.origin, subject, roles);
}
